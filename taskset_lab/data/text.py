"""Character-level text: a fixed vocabulary, text sources, and next-character windows.

Vocabulary: the 100 printable ASCII characters, then one ``<unk>`` id for anything else.
A text is encoded once into a stream of ids; the stream is cut into four contiguous chunks
(train / valid_inner / valid_outer / test), and each chunk into non-overlapping windows of
``seq_len + 1`` characters: inputs are the first ``seq_len``, targets the last ``seq_len``.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from taskset_lab.data.embedded import pydoc_text, split_sizes
from taskset_lab.errors import DataError

VOCAB = string.printable
UNK_ID = len(VOCAB)
VOCAB_SIZE = len(VOCAB) + 1
TEXT_FRACTIONS = (0.8, 0.05, 0.05, 0.1)
MAX_CHARS = 20_000_000  # cap on characters read from a text source (memory bound)

_TABLE = np.full(128, UNK_ID, dtype=np.uint8)
_TABLE[[ord(c) for c in VOCAB]] = np.arange(len(VOCAB), dtype=np.uint8)


def encode(text: str) -> Tensor:
    """Character ids (uint8) of ``text``; characters outside ``VOCAB`` map to ``UNK_ID``."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.where(codes < 128, _TABLE[np.minimum(codes, 127)], UNK_ID).astype(np.uint8)
    return torch.from_numpy(ids)


def decode(ids: Tensor) -> str:
    """Text of character ids (``UNK_ID`` becomes ``"?"``)."""
    chars = VOCAB + "?"
    return "".join(chars[i] for i in ids.tolist())


def read_text(name: str, data_dir: str | Path | None = None, max_chars: int = MAX_CHARS) -> str:
    """Raw text of a source: ``"pydoc"`` (embedded), ``"file:<path>"``, or a name found in
    ``data_dir`` as ``<name>.txt`` or a folder ``<name>/`` (all its files, sorted)."""
    if name == "pydoc":
        return pydoc_text()[:max_chars]
    if name.startswith("file:"):
        path = Path(name[len("file:"):]).expanduser()
        if not path.is_file():
            raise DataError(f"text file not found: {path}")
        return _read_files([path], max_chars)
    if data_dir is None:
        raise DataError(f"text dataset {name!r} is read from data_dir, but no data_dir was given")
    root = Path(data_dir).expanduser()
    file, folder = root / f"{name}.txt", root / name
    if file.is_file():
        return _read_files([file], max_chars)
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        if files:
            return _read_files(files, max_chars)
    raise DataError(f"text dataset {name!r} not found: looked for {file} and files under {folder}")


def _read_files(paths: list[Path], max_chars: int) -> str:
    parts, total = [], 0
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            part = f.read(max_chars - total)
        parts.append(part)
        total += len(part)
        if total >= max_chars:
            break
    return "".join(parts)


@functools.lru_cache(maxsize=8)
def _stream(name: str, data_dir: str | None, max_chars: int) -> Tensor:
    return encode(read_text(name, data_dir, max_chars))


def windows(stream: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping ``(inputs, targets)`` windows, both int64 ``[N, seq_len]``."""
    n = (len(stream) - 1) // seq_len
    if n < 1:
        raise DataError(f"a text chunk of {len(stream)} characters is too short for seq_len={seq_len}")
    ids = stream[: n * seq_len + 1].to(torch.int64)
    return ids[:-1].view(n, seq_len), ids[1:].view(n, seq_len)


def load_text(name: str = "pydoc", seq_len: int = 64, data_dir: str | Path | None = None,
              max_chars: int = MAX_CHARS) -> dict[str, tuple[Tensor, Tensor]]:
    """``{split: (inputs, targets)}`` of next-character windows from contiguous chunks."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    stream = _stream(name, None if data_dir is None else str(data_dir), int(max_chars))
    try:
        sizes = split_sizes(len(stream), TEXT_FRACTIONS)
    except ValueError as exc:
        raise DataError(f"text {name!r}: {exc}") from exc
    bounds = np.cumsum([0, *sizes])
    names = ("train", "valid_inner", "valid_outer", "test")
    return {s: windows(stream[a:b], seq_len) for s, a, b in zip(names, bounds[:-1], bounds[1:])}
