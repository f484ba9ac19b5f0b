"""TaskSet's image datasets by TaskSet's names, cut into TaskSet's four splits.

TaskSet (google-research ``task_set/datasets.py``) read these through TFDS; here each name
maps to a loader over torchvision or over the dataset's own files in ``data_dir``:

========================== ======================================================================
name                       source (under ``data_dir``)
========================== ======================================================================
mnist, fashion_mnist       torchvision ``MNIST/raw``, ``FashionMNIST/raw`` (idx files; downloadable)
cifar10, cifar100          ``cifar-10-batches-py``, ``cifar-100-python`` pickles (downloadable)
food101_32x32, _64x64      torchvision ``food-101/`` (downloadable), resized
sun397_32x32               torchvision ``SUN397/`` (downloadable), resized
coil100_32x32              ``coil100/**/obj<N>__<angle>.png`` (COIL-100 archive), resized
deep_weeds_32x32           ``deep_weeds/labels.csv`` + ``deep_weeds/images/*.jpg``, resized
colorectal_histology_32x32 ``colorectal_histology/**/<NN>_<CLASS>/*.tif`` (Kather 2016), resized
imagenet_resized/32x32     ``imagenet_resized/32x32/train_data_batch_<i>.npz`` + ``val_data.npz``
imagenet_resized/16x16     the same under ``imagenet_resized/16x16`` (downsampled-ImageNet npz)
========================== ======================================================================

Images are uint8 ``[N, C, H, W]``, labels int64. Resizing (TaskSet: OpenCV bicubic) is
torch's bicubic (a = -0.75, half-pixel centres, no antialiasing: OpenCV's INTER_CUBIC
kernel), done once and cached as ``.npy`` under ``data_dir/tasklab_cache/``; cached and
npz-converted arrays are memory-mapped, so a dataset larger than the memory budget is read
batch by batch (:func:`taskset_lab.tasks.streaming.choose_task_data`), never whole.

Splits follow ``get_image_datasets``: a source with train/validation/test gives
valid_inner = the first ``num_per_valid`` training examples, valid_outer = validation;
train/test (or train/validation) gives valid_inner and valid_outer = the first two blocks
of ``num_per_valid`` training examples and test = the held-out split; train-only gives
valid_inner, valid_outer and test as the first three blocks. ``num_train`` keeps the first
``num_train`` of what is left for training. TFDS stores examples in a fixed shuffled order;
each source split here is put in a fixed shuffled order (seed 0) before it is cut, so the
blocks are random samples too (not TFDS's exact examples).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from taskset_lab.errors import DataError
from taskset_lab.files import atomic_path

SPLIT_ORDER_SEED = 0  # the fixed shuffle of every source split (a dataset's splits never vary)


@dataclass(frozen=True)
class TasksetImageDataset:
    """One of TaskSet's image datasets: image shape, classes, default validation size, and where
    its files live (``expected``: what the missing-data message asks for)."""

    name: str
    channels: int
    size: int
    num_classes: int
    num_per_valid: int  # TaskSet's families: 5000, 800 (coil100), 2000 (deep_weeds)
    expected: str
    downloadable: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


def _spec(name: str, c: int, s: int, k: int, valid: int, expected: str, dl: bool = False) -> TasksetImageDataset:
    return TasksetImageDataset(name, c, s, k, valid, expected, dl)


DATASETS: dict[str, TasksetImageDataset] = {d.name: d for d in [
    _spec("mnist", 1, 28, 10, 5000, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", True),
    _spec("fashion_mnist", 1, 28, 10, 5000, "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", True),
    _spec("cifar10", 3, 32, 10, 5000, "cifar-10-batches-py/{data_batch_1..5,test_batch}", True),
    _spec("cifar100", 3, 32, 100, 5000, "cifar-100-python/{train,test}", True),
    _spec("food101_32x32", 3, 32, 101, 5000, "food-101/{meta,images}", True),
    _spec("food101_64x64", 3, 64, 101, 3000, "food-101/{meta,images}", True),
    _spec("sun397_32x32", 3, 32, 397, 5000, "SUN397/{ClassName.txt,<letter>/<class>/sun_*.jpg}", True),
    _spec("coil100_32x32", 3, 32, 100, 800, "coil100/obj<N>__<angle>.png (the COIL-100 archive)"),
    _spec("deep_weeds_32x32", 3, 32, 9, 2000, "deep_weeds/labels.csv and deep_weeds/images/*.jpg"),
    _spec("colorectal_histology_32x32", 3, 32, 8, 700,
          "colorectal_histology/<NN>_<CLASS>/*.tif (Kather_texture_2016_image_tiles_5000)"),
    _spec("imagenet_resized/32x32", 3, 32, 1000, 5000,
          "imagenet_resized/32x32/{train_data_batch_1..10,val_data}.npz (downsampled ImageNet)"),
    _spec("imagenet_resized/16x16", 3, 16, 1000, 5000,
          "imagenet_resized/16x16/{train_data_batch_1..10,val_data}.npz (downsampled ImageNet)"),
]}

#: a source split: images (uint8 [N, C, H, W], an array or a memory map) and int64 labels
Arrays = tuple[np.ndarray, np.ndarray]


class DatasetMissing(Exception):
    """Raised by a loader when the files are not there (turned into a DataError by the caller)."""

    def __init__(self, where: Path):
        self.where = where
        super().__init__(str(where))


def default_data_dir() -> Path:
    from taskset_lab.data import default_data_dir as base

    return base()


def dataset_spec(name: str) -> TasksetImageDataset:
    if name not in DATASETS:
        raise DataError(f"unknown TaskSet image dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def missing_message(name: str, where: Path | str) -> str:
    """The one-line error for an absent dataset: what, where we looked, how to provide it."""
    spec = DATASETS[name]
    how = [f"put {spec.expected} under misc.data_dir=<dir>"]
    if spec.downloadable:
        how.append("set misc.download=true (torchvision downloads it)")
    how.append("or run on the scikit-learn digits stand-in with misc.offline_data=substitute")
    return f"dataset '{name}' not found (looked in {where}); " + ", ".join(how)


# ------------------------------------------------------------------ the four splits


def fixed_order(n: int) -> np.ndarray:
    """The fixed shuffled order every source split is read in (TFDS stores a shuffled order)."""
    return np.random.default_rng(SPLIT_ORDER_SEED).permutation(n)


def cut_splits(sources: dict[str, Arrays], num_per_valid: int, num_train: int | None
               ) -> dict[str, tuple[Arrays, np.ndarray]]:
    """TaskSet's four splits as ``{split: (source arrays, example indices)}`` (see module doc)."""
    order = {k: fixed_order(len(v[1])) for k, v in sources.items()}
    n = int(num_per_valid)
    keys = set(sources)
    if keys == {"train", "validation", "test"}:
        tr = order["train"]
        out = {"valid_inner": ("train", tr[:n]), "train": ("train", tr[n:]),
               "valid_outer": ("validation", order["validation"]), "test": ("test", order["test"])}
    elif keys in ({"train", "test"}, {"train", "validation"}):
        held = "test" if "test" in keys else "validation"
        tr = order["train"]
        out = {"valid_inner": ("train", tr[:n]), "valid_outer": ("train", tr[n:2 * n]),
               "train": ("train", tr[2 * n:]), "test": (held, order[held])}
    elif keys == {"train"}:
        tr = order["train"]
        out = {"valid_inner": ("train", tr[:n]), "valid_outer": ("train", tr[n:2 * n]),
               "test": ("train", tr[2 * n:3 * n]), "train": ("train", tr[3 * n:])}
    else:
        raise DataError(f"cannot make TaskSet's splits from source splits {sorted(keys)}")
    if num_train:
        src, idx = out["train"]
        out["train"] = (src, idx[: int(num_train)])
    empty = [s for s, (_, idx) in out.items() if len(idx) == 0]
    if empty:
        sizes = {k: len(v[1]) for k, v in sources.items()}
        raise DataError(f"source splits {sizes} are too small for {num_per_valid} validation examples "
                        f"per split (empty: {', '.join(empty)})")
    return {s: (sources[src], idx) for s, (src, idx) in out.items()}


class IndexedImages(Dataset):
    """Examples ``indices`` of arrays (possibly memory-mapped): item ``i`` is ``(x[idx[i]], y[idx[i]])``;
    :meth:`get_batch` reads a batch with one sorted gather (sequential reads on a memory map)."""

    def __init__(self, arrays: Arrays, indices: np.ndarray):
        self.x, self.y = arrays
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(len(self.indices))

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        j = int(self.indices[i])
        return torch.from_numpy(np.array(self.x[j])), torch.tensor(int(self.y[j]))

    def get_batch(self, items: Sequence[int]) -> tuple[Tensor, Tensor]:
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")
        x = np.empty((len(rows),) + tuple(self.x.shape[1:]), dtype=self.x.dtype)
        x[order] = self.x[rows[order]]
        y = np.asarray(self.y)[rows].astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(y)


def taskset_image_splits(name: str, data_dir: str | Path | None = None, download: bool = False,
                         num_per_valid: int | None = None, num_train: int | None = None
                         ) -> dict[str, tuple[Tensor, Tensor] | Dataset]:
    """TaskSet's four splits of dataset ``name``: ``(x uint8 [N,C,H,W], y int64)`` tensors for
    in-memory sources, :class:`IndexedImages` over memory maps for cached/converted ones.

    Raises a one-line :class:`DataError` (see :func:`missing_message`) when the data is absent.
    """
    spec = dataset_spec(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    try:
        sources = load_sources(name, root.resolve(), bool(download))
    except DatasetMissing as missing:
        raise DataError(missing_message(name, missing.where)) from None
    cut = cut_splits(sources, spec.num_per_valid if num_per_valid is None else num_per_valid, num_train)
    out: dict[str, tuple[Tensor, Tensor] | Dataset] = {}
    for split, (arrays, idx) in cut.items():
        if isinstance(arrays[0], np.memmap):
            out[split] = IndexedImages(arrays, idx)
        else:
            out[split] = (torch.from_numpy(np.ascontiguousarray(arrays[0][idx])),
                          torch.from_numpy(np.asarray(arrays[1])[idx].astype(np.int64)))
    return out


# ------------------------------------------------------------------ loaders


def load_sources(name: str, root: Path, download: bool = False) -> dict[str, Arrays]:
    """The dataset's source splits (``train``/``validation``/``test``) as arrays (cached per process)."""
    return _load_sources(name, str(root), bool(download))


@functools.lru_cache(maxsize=4)
def _load_sources(name: str, root_str: str, download: bool) -> dict[str, Arrays]:
    root = Path(root_str)
    spec = DATASETS[name]
    if name in ("mnist", "fashion_mnist"):
        return _mnist(name, root, download)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, root, download)
    builders: dict[str, Callable[[], dict[str, Arrays]]] = {
        "food101": lambda: _food101_files(root, download),
        "sun397": lambda: _sun397_files(root, download),
        "coil100": lambda: _coil100_files(root),
        "deep_weeds": lambda: _deep_weeds_files(root),
        "colorectal_histology": lambda: _colorectal_files(root),
    }
    if name.startswith("imagenet_resized/"):
        return _imagenet_npz(name, root)
    base = name.rsplit("_", 1)[0]
    return cached_resized(name, root, spec.size, builders[base])


def _mnist(name: str, root: Path, download: bool) -> dict[str, Arrays]:
    """MNIST-format idx files (optionally gzipped) read directly; torchvision only downloads."""
    folder = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def find(stem: str) -> Path | None:
        return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)

    if download and any(find(s) is None for pair in stems.values() for s in pair):
        import torchvision.datasets as tvd

        (tvd.MNIST if name == "mnist" else tvd.FashionMNIST)(str(root), train=True, download=True)
    out = {}
    for split, (images, labels) in stems.items():
        paths = find(images), find(labels)
        if paths[0] is None or paths[1] is None:
            raise DatasetMissing(folder)
        out[split] = (read_idx(paths[0])[:, None], read_idx(paths[1]).astype(np.int64))
    return out


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format: magic ``0 0 8 ndim``, big-endian dims, uint8 data)."""
    opener: Any = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not a uint8 idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _cifar(name: str, root: Path, download: bool) -> dict[str, Arrays]:
    """CIFAR's python pickles read directly (``{b"data": [N, 3072] uint8, b"labels" | b"fine_labels"}``)."""
    folder, files, key = (("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)],
                                                   "test": ["test_batch"]}, b"labels") if name == "cifar10" else
                          ("cifar-100-python", {"train": ["train"], "test": ["test"]}, b"fine_labels"))
    base = root / folder
    if not all((base / f).is_file() for fs in files.values() for f in fs) and download:
        import torchvision.datasets as tvd

        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        cls(str(root), train=True, download=True)
    out = {}
    for split, names in files.items():
        xs, ys = [], []
        for f in names:
            path = base / f
            if not path.is_file():
                raise DatasetMissing(base)
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="bytes")
            xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[key], dtype=np.int64))
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    return out


# -- image files, resized once and cached

ImageList = dict[str, tuple[list[Path], list[int]]]  # source split -> (files, labels)


def resize_images(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """uint8 HWC images (any size; grey or RGB(A)) -> uint8 ``[N, 3, size, size]``, bicubic like
    OpenCV's INTER_CUBIC (a = -0.75, no antialiasing), rounded and saturated."""
    out = np.empty((len(images), 3, size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        arr = arr[..., :3]
        t = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None].to(torch.float64)
        if t.shape[-2:] != (size, size):
            t = torch.nn.functional.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)
        out[i] = t[0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def cache_dir(root: Path, name: str) -> Path:
    return root / "tasklab_cache" / name.replace("/", "_")


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.save would append ".npy" to a name
        np.save(fh, array)


def _load_cached(folder: Path) -> dict[str, Arrays] | None:
    splits = sorted(p.name[:-6] for p in folder.glob("*_x.npy")) if folder.is_dir() else []
    if not splits or not all((folder / f"{s}_y.npy").is_file() for s in splits):
        return None
    return {s: (np.load(folder / f"{s}_x.npy", mmap_mode="r"), np.load(folder / f"{s}_y.npy", mmap_mode="r"))
            for s in splits}


def cached_resized(name: str, root: Path, size: int, list_files: Callable[[], ImageList],
                   chunk: int = 1024) -> dict[str, Arrays]:
    """Source splits of an image-file dataset, decoded and resized once into ``.npy`` caches
    (written chunk by chunk into a memory map, then renamed), then memory-mapped."""
    folder = cache_dir(root, name)
    cached = _load_cached(folder)
    if cached is not None:
        return cached
    for split, (files, labels) in list_files().items():
        _atomic_save(folder / f"{split}_y.npy", np.asarray(labels, dtype=np.int64))
        tmp = folder / f".{split}_x.npy.partial"
        x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
        for lo in range(0, len(files), chunk):
            x[lo:lo + chunk] = resize_images([_read_image(f) for f in files[lo:lo + chunk]], size)
        x.flush()
        del x
        os.replace(tmp, folder / f"{split}_x.npy")
    cached = _load_cached(folder)
    assert cached is not None
    return cached


def _food101_files(root: Path, download: bool) -> ImageList:
    """torchvision's Food-101 layout read directly: ``food-101/meta/{train,test}.json`` map each
    class to ``<class>/<id>`` paths of ``food-101/images/<class>/<id>.jpg``; labels by sorted class."""
    base = root / "food-101"
    if download and not (base / "meta" / "train.json").is_file():
        import torchvision.datasets as tvd

        tvd.Food101(str(root), split="train", download=True)
    out = {}
    for split in ("train", "test"):
        meta = base / "meta" / f"{split}.json"
        if not meta.is_file():
            raise DatasetMissing(base)
        entries = json.loads(meta.read_text())
        classes = {c: i for i, c in enumerate(sorted(entries))}
        files, labels = [], []
        for cls, rels in entries.items():
            files += [base / "images" / f"{rel}.jpg" for rel in rels]
            labels += [classes[cls]] * len(rels)
        out[split] = (files, labels)
    return out


def _sun397_files(root: Path, download: bool) -> ImageList:
    """torchvision's SUN397 layout read directly (``SUN397/ClassName.txt`` lines ``/a/abbey``,
    images ``SUN397/a/abbey/sun_*.jpg``). It has no official split; TFDS's ``sun397/tfds`` is a
    70/10/20 train/validation/test split: a fixed shuffle (seed 0) of the sorted files is cut so."""
    base = root / "SUN397"
    if download and not (base / "ClassName.txt").is_file():
        import torchvision.datasets as tvd

        tvd.SUN397(str(root), download=True)
    if not (base / "ClassName.txt").is_file():
        raise DatasetMissing(base)
    lines = [line for line in (base / "ClassName.txt").read_text().splitlines() if line.strip()]
    classes = {line[3:].strip(): i for i, line in enumerate(lines)}
    pairs = sorted((str(p), classes["/".join(p.relative_to(base).parts[1:-1])]) for p in base.rglob("sun_*.jpg"))
    perm = fixed_order(len(pairs))
    n_train, n_valid = int(0.7 * len(pairs)), int(0.1 * len(pairs))
    parts = {"train": perm[:n_train], "validation": perm[n_train:n_train + n_valid],
             "test": perm[n_train + n_valid:]}
    return {s: ([Path(pairs[i][0]) for i in sorted(idx)], [pairs[i][1] for i in sorted(idx)])
            for s, idx in parts.items()}


_COIL = re.compile(r"^obj(\d+)__(\d+)\.png$")


def _coil100_files(root: Path) -> ImageList:
    base = root / "coil100"
    files = sorted((p for p in base.rglob("obj*__*.png") if _COIL.match(p.name)),
                   key=lambda p: tuple(int(v) for v in _COIL.match(p.name).groups())) if base.is_dir() else []
    if not files:
        raise DatasetMissing(base)
    return {"train": (files, [int(_COIL.match(p.name).group(1)) - 1 for p in files])}


DEEP_WEEDS_CLASSES = 9


def _deep_weeds_files(root: Path) -> ImageList:
    import csv

    base = root / "deep_weeds"
    table = base / "labels.csv"
    if not table.is_file():
        raise DatasetMissing(base)
    files, labels = [], []
    with open(table, newline="") as fh:
        for row in csv.DictReader(fh):
            files.append(base / "images" / row["Filename"])
            labels.append(int(row["Label"]))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"dataset 'deep_weeds_32x32': {len(missing)} images listed in {table} are missing, "
                        f"e.g. {missing[0]}")
    return {"train": (files, labels)}


def _colorectal_files(root: Path) -> ImageList:
    base = root / "colorectal_histology"
    dirs = sorted({p.parent for p in base.rglob("*.tif")}, key=lambda d: d.name) if base.is_dir() else []
    if not dirs:
        raise DatasetMissing(base)
    files, labels = [], []
    for label, d in enumerate(dirs):
        for f in sorted(d.glob("*.tif")):
            files.append(f)
            labels.append(label)
    return {"train": (files, labels)}


# -- downsampled ImageNet npz


def _imagenet_npz(name: str, root: Path) -> dict[str, Arrays]:
    """Downsampled-ImageNet npz files (``data`` [N, 3*S*S] uint8 channel-major, ``labels`` 1..1000)
    converted once into memory-mappable ``.npy`` caches (train 1.28M images: never held whole)."""
    size = DATASETS[name].size
    folder = cache_dir(root, name)
    cached = _load_cached(folder)
    if cached is not None:
        return cached
    base = root / name
    train = sorted(base.rglob("train_data_batch_*.npz"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    val = sorted(base.rglob("val_data.npz"))
    if not train or not val:
        raise DatasetMissing(base)
    for split, files in (("train", train), ("validation", val[:1])):
        total = 0
        for f in files:
            with np.load(f) as z:
                total += len(z["labels"])
        tmp = folder / f".{split}_x.npy.partial"
        folder.mkdir(parents=True, exist_ok=True)
        x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total, 3, size, size))
        ys, at = [], 0
        for f in files:
            with np.load(f) as z:
                data = np.asarray(z["data"], dtype=np.uint8).reshape(-1, 3, size, size)
                x[at:at + len(data)] = data
                at += len(data)
                ys.append(np.asarray(z["labels"], dtype=np.int64) - 1)
        x.flush()
        del x
        _atomic_save(folder / f"{split}_y.npy", np.concatenate(ys))
        os.replace(tmp, folder / f"{split}_x.npy")
    cached = _load_cached(folder)
    assert cached is not None
    return cached


# ------------------------------------------------------------------ the offline stand-in


def digits_stand_in(shape: Sequence[int], num_train: int | None = None,
                    num_classes: int = 10) -> dict[str, tuple[Tensor, Tensor]]:
    """scikit-learn's digits resized (bilinear) to ``shape = (C, H, W)`` and repeated over the
    channels, as uint8 like the real datasets, in the digits' own four splits; ``num_train``
    keeps the first ``num_train`` training examples as for real data. Labels are the digit
    modulo ``num_classes`` (for datasets with fewer than 10 classes)."""
    return dict(_digits_stand_in(tuple(int(v) for v in shape), num_train, int(num_classes)))


@functools.lru_cache(maxsize=16)
def _digits_stand_in(shape: tuple[int, ...], num_train: int | None, num_classes: int
                     ) -> dict[str, tuple[Tensor, Tensor]]:
    from taskset_lab.data.embedded import load_digits

    c, h, w = (int(v) for v in shape)
    out = {}
    for split, (x, y) in load_digits().items():
        img = torch.nn.functional.interpolate(x.double(), size=(h, w), mode="bilinear", align_corners=False)
        img = (img * 255.0).round().clamp(0, 255).to(torch.uint8).expand(-1, c, -1, -1).contiguous()
        if split == "train" and num_train:
            img, y = img[: int(num_train)], y[: int(num_train)]
        out[split] = (img, y % int(num_classes))
    return out


__all__ = ["DATASETS", "IndexedImages", "TasksetImageDataset", "cut_splits", "dataset_spec", "digits_stand_in",
           "load_sources", "missing_message", "resize_images", "taskset_image_splits"]
