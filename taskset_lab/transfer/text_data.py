"""Language-model data for TRANSFER: byte-level windows from text files, as a LightningDataModule.

Tokens are the UTF-8 bytes of the text (vocabulary 256, no tokenizer to train or ship).
Sources:

* ``lm1b``: the One Billion Word benchmark as distributed, under ``root``::

      training-monolingual.tokenized.shuffled/news.en-000NN-of-00100     (train)
      heldout-monolingual.tokenized.shuffled/news.en.heldout-000NN-of-00050

  The benchmark's test set is held-out file 00000; held-out file 00001 is the validation
  split here (``valid_files``/``test_files`` change that).
* ``files``: any text files, given as glob patterns per split (``train``/``valid``/``test``).
* ``pydoc``: Python's ``pydoc_data`` topics text (ships with Python), cut 80/10/10.

Training files are memory-mapped, not read: a training batch is ``batch_size`` windows of
``seq_len + 1`` bytes at random offsets (file chosen in proportion to its size), drawn from
a generator seeded by (seed, process rank, loader worker). Evaluation uses the first
``eval_batches`` batches of consecutive windows of each split, the same for every trial.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from taskset_lab.errors import ConfigError, DataError

SOURCES = ("lm1b", "files", "pydoc")
TOKENIZERS = ("bytes",)
VOCAB_SIZE = 256
LM1B_TRAIN = "training-monolingual.tokenized.shuffled/news.en-*-of-00100"
LM1B_VALID = "heldout-monolingual.tokenized.shuffled/news.en.heldout-00001-of-00050"
LM1B_TEST = "heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050"
PYDOC_FRACTIONS = (0.8, 0.1, 0.1)


def encode_bytes(text: str) -> np.ndarray:
    """uint8 token ids of ``text``: its raw UTF-8 bytes (the data layer's encoder, offset 0)."""
    from taskset_lab.data.taskset_text import encode_bytes as byte_ids

    return byte_ids(text, offset=0)


def decode_bytes(ids: Sequence[int] | torch.Tensor) -> str:
    """Text of raw byte ids (every id is a byte; none is padding)."""
    from taskset_lab.data.taskset_text import decode_bytes as byte_text

    return byte_text(ids, offset=0)


def expand_patterns(patterns: str | Sequence[str], root: str | Path | None, what: str) -> list[Path]:
    """Sorted files matching glob ``patterns`` (relative ones under ``root``); DataError if none."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files: list[Path] = []
    for pattern in patterns:
        full = Path(pattern).expanduser()
        if not full.is_absolute() and root is not None:
            full = Path(root).expanduser() / full
        files.extend(Path(p) for p in sorted(glob.glob(str(full))) if Path(p).is_file())
    files = [f for f in files if f.stat().st_size > 0]
    if not files:
        raise DataError(f"no non-empty text files for the {what} split match {list(patterns)}"
                        + (f" under {root}" if root is not None else ""))
    return files


class RandomWindows(IterableDataset):
    """Endless ``(inputs, targets)`` byte windows at random offsets of memory-mapped arrays."""

    def __init__(self, arrays: list[np.ndarray], seq_len: int, batch_size: int, seed: int, rank: int = 0):
        self.arrays = [a for a in arrays if len(a) > seq_len + 1]
        if not self.arrays:
            raise DataError(f"every training text is shorter than seq_len + 1 = {seq_len + 1} bytes")
        self.seq_len, self.batch_size, self.seed, self.rank = seq_len, batch_size, seed, rank
        sizes = np.array([len(a) - seq_len - 1 for a in self.arrays], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([self.seed, self.rank, worker])
        span = self.seq_len + 1
        while True:
            which = rng.choice(len(self.arrays), size=self.batch_size, p=self.weights)
            rows = []
            for i in which:
                array = self.arrays[i]
                start = int(rng.integers(0, len(array) - span + 1))
                rows.append(np.asarray(array[start:start + span]))
            ids = torch.from_numpy(np.stack(rows).astype(np.int64))
            yield ids[:, :-1], ids[:, 1:]


class FixedWindows(Dataset):
    """Consecutive non-overlapping windows of one byte stream (evaluation)."""

    def __init__(self, stream: np.ndarray, seq_len: int):
        n = (len(stream) - 1) // seq_len
        if n < 1:
            raise DataError(f"an evaluation text of {len(stream)} bytes is too short for seq_len={seq_len}")
        ids = torch.from_numpy(np.asarray(stream[: n * seq_len + 1]).astype(np.int64))
        self.inputs, self.targets = ids[:-1].view(n, seq_len), ids[1:].view(n, seq_len)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.targets[i]


def _head(arrays: list[np.ndarray], n: int) -> np.ndarray:
    """The first ``n`` bytes of the concatenation of ``arrays`` (reads only those)."""
    parts, total = [], 0
    for a in arrays:
        part = np.asarray(a[: n - total])
        parts.append(part)
        total += len(part)
        if total >= n:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def _memmap(path: Path) -> np.ndarray:
    return np.memmap(path, dtype=np.uint8, mode="r")


class TextDataModule(pl.LightningDataModule):
    """Byte-level LM windows; see the module docstring."""

    def __init__(self, source: str = "pydoc", root: str | None = None,
                 train: str | Sequence[str] | None = None, valid: str | Sequence[str] | None = None,
                 test: str | Sequence[str] | None = None, tokenizer: str = "bytes", seq_len: int = 128,
                 batch_size: int = 32, eval_batch_size: int | None = None, eval_batches: int = 8,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        if source not in SOURCES:
            raise ConfigError("data.source", f"must be one of {', '.join(SOURCES)}, got {source!r}")
        if tokenizer not in TOKENIZERS:
            raise ConfigError("data.tokenizer", f"must be one of {', '.join(TOKENIZERS)} "
                                                f"(subword tokenizers are not built in), got {tokenizer!r}")
        if source == "lm1b" and not root:
            raise ConfigError("data.root", "the lm1b source needs root=<folder holding "
                                           "training-monolingual.tokenized.shuffled/>")
        if source == "files" and not (train and valid and test):
            raise ConfigError("data.train", "the files source needs train, valid and test glob patterns")
        if int(seq_len) < 1 or int(batch_size) < 1 or int(eval_batches) < 1:
            raise ConfigError("data.seq_len", "seq_len, batch_size and eval_batches must be positive")
        self.source, self.root = source, root
        self.patterns = {"train": train or LM1B_TRAIN, "valid": valid or LM1B_VALID, "test": test or LM1B_TEST}
        self.seq_len, self.batch_size = int(seq_len), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.eval_batches, self.num_workers, self.seed = int(eval_batches), int(num_workers), int(seed)
        self.vocab_size = VOCAB_SIZE
        self.train_arrays: list[np.ndarray] = []
        self.eval_sets: dict[str, FixedWindows] = {}
        self.files: dict[str, list[str]] = {}

    def check_available(self) -> None:
        """Raise :class:`DataError` now if the files are absent (cheap: globs only), so a
        multi-process run fails once, before it spawns its workers."""
        if self.source != "pydoc":
            root = self.root if self.source == "lm1b" else None
            for split, patterns in self.patterns.items():
                expand_patterns(patterns, root, split)

    def setup(self, stage: str | None = None) -> None:
        if self.train_arrays:
            return
        eval_bytes = self.eval_batches * self.eval_batch_size * self.seq_len + 1
        if self.source == "pydoc":
            from taskset_lab.data import pydoc_text

            stream = encode_bytes(pydoc_text())
            a, b = (int(len(stream) * f) for f in np.cumsum(PYDOC_FRACTIONS[:2]))
            self.train_arrays = [stream[:a]]
            heads = {"valid": stream[a:b][:eval_bytes], "test": stream[b:][:eval_bytes]}
            self.files = {s: ["pydoc_data.topics"] for s in ("train", "valid", "test")}
        else:
            root = self.root if self.source == "lm1b" else None
            paths = {s: expand_patterns(p, root, s) for s, p in self.patterns.items()}
            self.files = {s: [str(p) for p in ps] for s, ps in paths.items()}
            self.train_arrays = [_memmap(p) for p in paths["train"]]
            heads = {s: _head([_memmap(p) for p in paths[s]], eval_bytes) for s in ("valid", "test")}
        self.eval_sets = {s: FixedWindows(h, self.seq_len) for s, h in heads.items()}

    def _rank(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_rank) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        self.setup()
        windows = RandomWindows(self.train_arrays, self.seq_len, self.batch_size, self.seed, self._rank())
        return DataLoader(windows, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> list[DataLoader]:
        """[valid, test] fixed windows."""
        self.setup()
        return [DataLoader(self.eval_sets[s], batch_size=self.eval_batch_size, shuffle=False)
                for s in ("valid", "test")]

    def describe(self) -> dict[str, Any]:
        self.setup()
        return {"source": self.source, "train_bytes": int(sum(len(a) for a in self.train_arrays)),
                "train_files": len(self.files["train"]),
                **{f"{s}_windows": len(d) for s, d in self.eval_sets.items()}}
