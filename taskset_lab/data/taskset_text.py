"""TaskSet's text datasets from local files: bytes and ~8k-subword encodings, TaskSet's
split rule, and random fixed-length windows per example.

Dataset names are TaskSet's (tfds names): ``lm1b/{bytes,subwords8k}``,
``imdb_reviews/{bytes,subwords8k}``, ``tokenized_wikipedia/20190301.<lang>_{bytes,subwords8k}``,
``tokenized_amazon_reviews/<Category>_{bytes,subwords8k}``. Files are read from
``<data_dir>`` (default :func:`taskset_lab.data.default_data_dir`) in each corpus's own
published layout:

* **lm1b**: ``lm1b/1-billion-word-language-modeling-benchmark-r13output/`` (the
  ``…-r13output`` folder is optional) with ``training-monolingual.tokenized.shuffled/news.en-*``
  (train) and ``heldout-monolingual.tokenized.shuffled/news.en.heldout-*`` (test); one
  sentence per line, one example per sentence.
* **imdb_reviews**: ``imdb_reviews/aclImdb/{train,test}/{pos,neg}/*.txt`` (or ``aclImdb/``
  directly under the data dir); one review per file, label neg=0, pos=1 (tfds' order).
  Examples are ordered by a hash of their file path (tfds also shuffles by key), so the
  validation slices mix both labels.
* **wikipedia**: ``wikipedia/20190301.<lang>/**`` files of JSON lines, one article per line
  with a ``"text"`` field (WikiExtractor ``--json`` output, or a tfds ``wikipedia`` export).
  As TaskSet's ``tokenized_wikipedia``: the first 1M articles, one example per paragraph
  (``text.split("\\n")``, kept if longer than 5 characters after strip), train/test 70/30 by a
  hash of the article index (the hash function differs from TaskSet's).
* **amazon reviews**: ``amazon_reviews/amazon_reviews_us_<Category>.tsv[.gz]`` (the
  Amazon Customer Reviews dataset's TSV files); example = ``review_body``, label
  ``star_rating - 1``; train/test 70/30 by a hash of the example index.

Encodings (ids are what TaskSet's models see; 0 is padding everywhere):

* ``bytes``: tfds ``ByteTextEncoder``: id = UTF-8 byte + 1, so ids lie in 1..256;
* ``subwords8k``: tfds used ``SubwordTextEncoder`` vocabularies (target 2**13). Here a
  Hugging Face ``tokenizers`` byte-level BPE (lossless, no unknown token, like tfds'
  byte-fallback encoder) is trained to ``SUBWORD_VOCAB_SIZE`` ids (padding included) on up to
  the first 200k training texts (tfds' rule for the tokenized_* sets) and cached next to the
  data as ``<dataset folder>/subwords<size>.bpe.json`` (delete it to retrain); ids are the
  BPE ids + 1.

Splits (TaskSet's ``random_slice_text_data``): ``valid_inner`` = the first ``num_per_valid``
training examples, ``valid_outer`` the next ``num_per_valid``, ``train`` the rest (the first
``num_train`` of it when given), ``test`` = the test split. A corpus with no more than
``2 · num_per_valid`` training examples (the stand-in, test files) gives a tenth of them to
each validation split instead, so it keeps a train split. At most ``MAX_EXAMPLES`` examples are read per split (memory bound; LM1B's files are
already shuffled).

Offline stand-in (``offline_data="substitute"``): Python's ``pydoc_data`` topic texts, one
example per paragraph (``"\\n\\n"``), train/test 70/30 by paragraph-index hash; half the
paragraphs (by another hash) are upper-cased, and the classification label says which
(the stand-in has no sentiment; the label is visible in any window of the text).
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from taskset_lab.errors import DataError
from taskset_lab.files import atomic_path

PAD_ID = 0
BYTE_VOCAB_SIZE = 257  # tfds ByteTextEncoder: 256 bytes + padding
SUBWORD_VOCAB_SIZE = 8192  # ids including padding (tfds subwords8k: target 2**13)
TOKENIZER_TRAIN_TEXTS = 200_000
MAX_EXAMPLES = 1_000_000
WIKIPEDIA_MAX_ARTICLES = 1_000_000
TRAIN_FRACTION_TENTHS = 7  # 70/30 train/test by hash
STAND_IN = "pydoc"

RawSplit = tuple[list[str], list[int] | None]


# ------------------------------------------------------------------ names


def parse_name(name: str) -> tuple[str, str]:
    """``(source, encoding)`` of a TaskSet text dataset name, e.g.
    ``tokenized_amazon_reviews/Books_v1_02_bytes -> ("amazon_reviews/Books_v1_02", "bytes")``."""
    for enc in ("bytes", "subwords8k"):
        for prefix, source in (("lm1b/", "lm1b"), ("imdb_reviews/", "imdb_reviews")):
            if name == prefix + enc:
                return source, enc
        for prefix, source in (("tokenized_wikipedia/", "wikipedia/"), ("tokenized_amazon_reviews/",
                                                                       "amazon_reviews/")):
            if name.startswith(prefix) and name.endswith("_" + enc) and len(name) > len(prefix) + len(enc) + 1:
                return source + name[len(prefix):-len(enc) - 1], enc
    raise DataError(f"unknown TaskSet text dataset {name!r}")


def data_root(data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from taskset_lab.data import default_data_dir

    return default_data_dir()


# ------------------------------------------------------------------ encoded corpora


@dataclass(frozen=True)
class Corpus:
    """Variable-length examples as one flat id tensor: example ``i`` is
    ``tokens[offsets[i]:offsets[i + 1]]``; ``labels [N]`` for classification sets."""

    tokens: Tensor
    offsets: Tensor
    labels: Tensor | None = None

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def example(self, i: int) -> Tensor:
        return self.tokens[int(self.offsets[i]):int(self.offsets[i + 1])]

    def subset(self, start: int, stop: int) -> "Corpus":
        stop = min(stop, len(self))
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        labels = None if self.labels is None else self.labels[start:stop]
        return Corpus(self.tokens[a:b], self.offsets[start:stop + 1] - a, labels)

    def to(self, device: torch.device | str) -> "Corpus":
        labels = None if self.labels is None else self.labels.to(device)
        return Corpus(self.tokens.to(device), self.offsets.to(device), labels)


def _corpus(id_lists: Iterable[np.ndarray], labels: Sequence[int] | None) -> Corpus:
    arrays = list(id_lists)
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(arrays).astype(np.int16) if arrays else np.zeros(0, np.int16)
    lab = None if labels is None else torch.tensor(list(labels), dtype=torch.int64)
    return Corpus(torch.from_numpy(flat), torch.from_numpy(offsets), lab)


#: TaskSet's byte ids (tfds ByteTextEncoder): UTF-8 byte + 1, 0 kept for padding
BYTE_ID_OFFSET = 1


def encode_bytes(text: str, offset: int = BYTE_ID_OFFSET) -> np.ndarray:
    """Byte ids of ``text``: its UTF-8 bytes + ``offset``. TaskSet's (tfds ByteTextEncoder)
    with the default offset 1 (int16, 1..256, 0 free for padding); the raw bytes (uint8,
    0..255) with offset 0, as TRANSFER's byte-level language models read text."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return raw if offset == 0 else raw.astype(np.int16) + offset


def decode_bytes(ids: Sequence[int] | Tensor | np.ndarray, offset: int = BYTE_ID_OFFSET) -> str:
    """Text of byte ids made by :func:`encode_bytes` with the same ``offset`` (with an offset,
    ids below it are padding and dropped)."""
    arr = np.asarray(ids.tolist() if isinstance(ids, Tensor) else ids, dtype=np.int64)
    return bytes((arr[arr >= offset] - offset).astype(np.uint8).tolist()).decode("utf-8", errors="replace")


def bytes_corpus(texts: Sequence[str], labels: Sequence[int] | None = None) -> Corpus:
    return _corpus((encode_bytes(t) for t in texts), labels)


def train_subword_tokenizer(texts: Sequence[str], vocab_size: int = SUBWORD_VOCAB_SIZE):
    """A byte-level BPE ``tokenizers.Tokenizer`` with ``vocab_size - 1`` tokens (id 0 is kept
    for padding), trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < BYTE_VOCAB_SIZE:
        raise ValueError(f"a byte-level subword vocabulary needs >= {BYTE_VOCAB_SIZE} ids, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def subword_tokenizer(texts: Sequence[str], cache: Path | None, vocab_size: int = SUBWORD_VOCAB_SIZE):
    """The cached tokenizer at ``cache`` if present, else one trained on ``texts`` and saved
    there (atomically; an unwritable folder only skips the cache)."""
    from tokenizers import Tokenizer

    if cache is not None and cache.is_file():
        return Tokenizer.from_file(str(cache))
    tok = train_subword_tokenizer(texts[:TOKENIZER_TRAIN_TEXTS], vocab_size)
    if cache is not None:
        try:
            with atomic_path(cache) as tmp:
                tok.save(str(tmp))
        except OSError:
            pass
    return tok


def encode_subwords(tok, text: str) -> np.ndarray:
    """Subword ids of ``text`` (BPE ids + 1; 0 is padding)."""
    return np.asarray(tok.encode(text).ids, dtype=np.int16) + 1


def decode_subwords(tok, ids: Sequence[int] | Tensor) -> str:
    arr = [int(i) - 1 for i in (ids.tolist() if isinstance(ids, Tensor) else ids) if int(i) > 0]
    return tok.decode(arr)


def subword_corpus(tok, texts: Sequence[str], labels: Sequence[int] | None = None) -> Corpus:
    encs = tok.encode_batch(list(texts)) if texts else []
    return _corpus((np.asarray(e.ids, dtype=np.int16) + 1 for e in encs), labels)


# ------------------------------------------------------------------ readers (raw text)


def _train_by_hash(key: str) -> bool:
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return h % 10 < TRAIN_FRACTION_TENTHS


def _missing(name: str, where: str, layout: str) -> DataError:
    return DataError(f"text dataset {name!r} not found: looked for {layout} under {where}; put the files "
                     f"there or set misc.data_dir=<folder holding them>, or run offline with "
                     f"misc.offline_data=substitute")


def _lines(paths: Sequence[Path], limit: int) -> list[str]:
    out: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    out.append(line)
                    if len(out) >= limit:
                        return out
    return out


def read_lm1b(root: Path, name: str = "lm1b") -> dict[str, RawSplit]:
    base = root / "lm1b"
    train = sorted(base.glob("**/training-monolingual.tokenized.shuffled/news.en-*"))
    test = sorted(base.glob("**/heldout-monolingual.tokenized.shuffled/news.en.heldout-*"))
    if not train or not test:
        raise _missing(name, str(base), "training-monolingual.tokenized.shuffled/news.en-* and "
                                        "heldout-monolingual.tokenized.shuffled/news.en.heldout-*")
    return {"train": (_lines(train, MAX_EXAMPLES), None), "test": (_lines(test, MAX_EXAMPLES), None)}


def read_imdb(root: Path, name: str = "imdb_reviews") -> dict[str, RawSplit]:
    for base in (root / "imdb_reviews" / "aclImdb", root / "aclImdb"):
        if (base / "train" / "pos").is_dir() and (base / "test" / "pos").is_dir():
            break
    else:
        raise _missing(name, str(root), "imdb_reviews/aclImdb/{train,test}/{pos,neg}/*.txt")
    out: dict[str, RawSplit] = {}
    for split in ("train", "test"):
        items = []
        for label, sub in ((0, "neg"), (1, "pos")):
            for path in (base / split / sub).glob("*.txt"):
                rel = f"{split}/{sub}/{path.name}"
                items.append((hashlib.blake2b(rel.encode(), digest_size=8).digest(), path, label))
        items.sort()
        items = items[:MAX_EXAMPLES]
        texts = [p.read_text(encoding="utf-8", errors="replace") for _, p, _ in items]
        out[split] = (texts, [lab for _, _, lab in items])
    return out


def _json_lines(paths: Sequence[Path]) -> Iterator[dict]:
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    yield json.loads(line)


def read_wikipedia(root: Path, source: str, name: str) -> dict[str, RawSplit]:
    version = source.split("/", 1)[1]  # 20190301.<lang>
    base = root / "wikipedia" / version
    paths = sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")) if base.is_dir() else []
    if not paths:
        raise _missing(name, str(base), "JSON-lines article files (one {\"text\": ...} per line)")
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for index, article in enumerate(_json_lines(paths)):
        if index >= WIKIPEDIA_MAX_ARTICLES:
            break
        split = "train" if _train_by_hash(f"{version}:{index}") else "test"
        if len(splits[split]) >= MAX_EXAMPLES:
            continue
        splits[split].extend(p for p in str(article.get("text", "")).split("\n") if len(p.strip()) > 5)
    return {s: (t[:MAX_EXAMPLES], None) for s, t in splits.items()}


def read_amazon(root: Path, source: str, name: str) -> dict[str, RawSplit]:
    category = source.split("/", 1)[1]
    base = root / "amazon_reviews"
    candidates = [base / f"amazon_reviews_us_{category}.tsv", base / f"amazon_reviews_us_{category}.tsv.gz"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise _missing(name, str(base), f"amazon_reviews_us_{category}.tsv[.gz]")
    opener = gzip.open if path.suffix == ".gz" else open
    out: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or "review_body" not in header or "star_rating" not in header:
            raise DataError(f"{path}: not an Amazon reviews TSV (needs review_body and star_rating columns)")
        body, stars = header.index("review_body"), header.index("star_rating")
        for index, row in enumerate(reader):
            if len(row) <= max(body, stars):
                continue
            texts, labels = out["train" if _train_by_hash(f"{category}:{index}") else "test"]
            if len(texts) < MAX_EXAMPLES:
                texts.append(row[body])
                labels.append(int(row[stars]) - 1)
    return {s: (t, lab) for s, (t, lab) in out.items()}


def stand_in_label(index: int) -> int:
    """The pydoc stand-in's label of paragraph ``index``: 1 for the half (by hash) shown in upper case."""
    return hashlib.blake2b(f"pydoc-case:{index}".encode(), digest_size=8).digest()[0] & 1


def read_stand_in() -> dict[str, RawSplit]:
    """The pydoc stand-in: paragraphs of the topic texts; label 1 = the paragraph is upper-cased.

    The label must be a function of the text that any window a task reads can show (text
    classifiers read ``patch_length`` tokens, as few as a dozen bytes): half the paragraphs,
    chosen by hash, are upper-cased and labelled 1. (A label by topic, which a window cannot
    reveal, left every classifier at its initial loss.)"""
    from pydoc_data.topics import topics

    out: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    index = 0
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            if len(para.strip()) > 5:
                texts, labels = out["train" if _train_by_hash(f"pydoc:{index}") else "test"]
                label = stand_in_label(index)
                texts.append(para.upper() if label else para)
                labels.append(label)
                index += 1
    return dict(out)


def read_source(source: str, name: str, data_dir: str | Path | None) -> dict[str, RawSplit]:
    """Raw ``{"train", "test"}`` texts (and labels) of a source; DataError when absent."""
    root = data_root(data_dir)
    if source == "lm1b":
        return read_lm1b(root, name)
    if source == "imdb_reviews":
        return read_imdb(root, name)
    if source.startswith("wikipedia/"):
        return read_wikipedia(root, source, name)
    if source.startswith("amazon_reviews/"):
        return read_amazon(root, source, name)
    raise DataError(f"unknown text source {source!r}")


# ------------------------------------------------------------------ the dataset as corpora


@functools.lru_cache(maxsize=8)
def _encoded(source: str, encoding: str, root: str, substitute: bool, vocab_size: int,
             name: str) -> dict[str, Corpus]:
    raw = read_stand_in() if substitute else read_source(source, name, root)
    if encoding == "bytes":
        return {s: bytes_corpus(*raw[s]) for s in ("train", "test")}
    folder = stand_in_cache_dir() if substitute else Path(root) / _source_folder(source)
    tok = subword_tokenizer(raw["train"][0], folder / f"subwords{vocab_size}.bpe.json", vocab_size)
    return {s: subword_corpus(tok, *raw[s]) for s in ("train", "test")}


def stand_in_cache_dir() -> Path:
    """Where the stand-in's trained tokenizers are kept: ``$TASKLAB_CACHE_DIR/pydoc`` (default
    ``~/.cache/taskset_lab/pydoc``). They derive from text that ships with Python, not from a
    user's data, so they never go into the data folder (by default under the current folder)."""
    return Path(os.environ.get("TASKLAB_CACHE_DIR", "~/.cache/taskset_lab")).expanduser() / STAND_IN


def _source_folder(source: str) -> str:
    if source.startswith("wikipedia/"):
        return "wikipedia/" + source.split("/", 1)[1]
    if source.startswith("amazon_reviews/"):
        return "amazon_reviews"
    return source


def load_text_dataset(name: str, data_dir: str | Path | None = None, offline_data: str = "error",
                      num_per_valid: int = 3000, num_train: int | None = None,
                      source_override: str | None = None,
                      vocab_size: int | None = None) -> tuple[dict[str, Corpus], str | None]:
    """``({split: Corpus}, substitute)`` for TaskSet dataset ``name`` (``substitute`` is
    ``"pydoc"`` when the stand-in was used, else None). ``source_override`` loads another
    dataset's files under this name's encoding (TaskSet's text-classification quirk)."""
    source, encoding = parse_name(source_override or name)
    root = data_root(data_dir)
    vocab = int(vocab_size or SUBWORD_VOCAB_SIZE)
    substitute = None
    try:
        full = _encoded(source, encoding, str(root), False, vocab, source_override or name)
    except DataError:
        if offline_data != "substitute":
            raise
        full = _encoded(STAND_IN, encoding, str(root), True, vocab, STAND_IN)  # one cache entry
        substitute = STAND_IN
    train = full["train"]
    n_valid = int(num_per_valid) if 2 * int(num_per_valid) < len(train) else len(train) // 10
    rest = train.subset(2 * n_valid, len(train))
    if num_train is not None:
        rest = rest.subset(0, int(num_train))
    splits = {"train": rest, "valid_inner": train.subset(0, n_valid),
              "valid_outer": train.subset(n_valid, 2 * n_valid), "test": full["test"]}
    empty = [s for s, c in splits.items() if len(c) < 1]
    if empty:
        raise DataError(f"text dataset {name!r}: too few examples for the splits {empty} "
                        f"({len(train)} training and {len(full['test'])} test examples)")
    return splits, substitute


# ------------------------------------------------------------------ windows as task data


def config_seed(config: dict) -> int:
    """The data seed of a task config (which examples and windows its batches hold): a hash
    of its canonical JSON, so equal configs see equal batches."""
    return seed_of(json.dumps(config, sort_keys=True, separators=(",", ":")))


def seed_of(*values: object) -> int:
    """A 63-bit seed from a hash of ``values`` (stable across processes and platforms)."""
    h = hashlib.blake2b(",".join(map(str, values)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)
