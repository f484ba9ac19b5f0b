"""Image classification datasets from torchvision, held whole as uint8 tensors.

Images stay uint8 ``[N, C, H, W]`` (4x less memory and gather bandwidth than float);
models turn them into floats in [0, 1] (see ``taskset_lab.tasks.images.ImageInput``).
The official train split gives train / valid_inner / valid_outer (a fixed shuffle), the
official test split gives test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from taskset_lab.data.embedded import SPLIT_SEED, Splits, split_indices
from taskset_lab.errors import DataError

MAX_VALID = 5000  # examples per validation split (fewer for small training sets)


@dataclass(frozen=True)
class TorchvisionSource:
    cls_name: str
    split_kwarg: str  # "train" (bool) or "split" ("train"/"test")
    layout: str  # layout of ``dataset.data``: "nhw", "nhwc" or "nchw"
    label_attr: str = "targets"


SOURCES: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource("MNIST", "train", "nhw"),
    "fashion_mnist": TorchvisionSource("FashionMNIST", "train", "nhw"),
    "cifar10": TorchvisionSource("CIFAR10", "train", "nhwc"),
    "cifar100": TorchvisionSource("CIFAR100", "train", "nhwc"),
    "svhn": TorchvisionSource("SVHN", "split", "nchw", "labels"),
}

_CACHE: dict[tuple[str, str], Splits] = {}


def to_nchw(images: Any, layout: str) -> Tensor:
    """uint8 ``[N, C, H, W]`` from an array/tensor stored as ``nhw``, ``nhwc`` or ``nchw``."""
    x = torch.as_tensor(np.asarray(images))
    if layout == "nhw":
        return x.unsqueeze(1).contiguous()
    if layout == "nhwc":
        return x.permute(0, 3, 1, 2).contiguous()
    if layout == "nchw":
        return x.contiguous()
    raise ValueError(f"unknown image layout {layout!r}")


def dataset_to_tensors(dataset: Any, layout: str | None = None,
                       label_attr: str = "targets") -> tuple[Tensor, Tensor]:
    """All of a torchvision dataset as ``(uint8 [N,C,H,W], int64 [N])``.

    Uses the dataset's in-memory ``data`` array when ``layout`` is given (fast); otherwise
    reads every item (PIL images, e.g. ``FakeData``), ignoring any transform.
    """
    if layout is not None:
        x = to_nchw(dataset.data, layout)
        y = torch.as_tensor(np.asarray(getattr(dataset, label_attr)), dtype=torch.int64)
        return x, y
    images, labels = [], []
    for i in range(len(dataset)):
        img, label = _raw_item(dataset, i)
        arr = np.asarray(img, dtype=np.uint8)
        images.append(arr[..., None] if arr.ndim == 2 else arr)
        labels.append(int(label))
    return to_nchw(np.stack(images), "nhwc"), torch.tensor(labels, dtype=torch.int64)


def _raw_item(dataset: Any, i: int) -> tuple[Any, Any]:
    transform, target_transform = dataset.transform, dataset.target_transform
    dataset.transform = dataset.target_transform = None
    try:
        return dataset[i]
    finally:
        dataset.transform, dataset.target_transform = transform, target_transform


def split_train(x: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor) -> Splits:
    """train / valid_inner / valid_outer from the train split (fixed shuffle), test as is."""
    n_valid = min(MAX_VALID, len(y) // 10)
    if n_valid < 1:
        raise DataError(f"training split of {len(y)} examples is too small to hold out validation sets")
    valid_inner, valid_outer, train = split_indices(len(y), [n_valid, n_valid, len(y) - 2 * n_valid],
                                                    SPLIT_SEED)
    return {"train": (x[train], y[train]), "valid_inner": (x[valid_inner], y[valid_inner]),
            "valid_outer": (x[valid_outer], y[valid_outer]), "test": (x_test, y_test)}


def _unreadable(name: str, root: Path, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:160] or type(exc).__name__
    return (f"dataset '{name}' under {root} is unreadable ({type(exc).__name__}: {detail}); delete its files "
            f"and fetch them again (misc.download=true), or point misc.data_dir at a good copy")


def load_torchvision(name: str, data_dir: str | Path, download: bool = False) -> Splits:
    """The four splits of a torchvision dataset under ``data_dir`` (cached per process)."""
    if name not in SOURCES:
        raise DataError(f"unknown torchvision dataset {name!r}; known: {', '.join(sorted(SOURCES))}")
    root = Path(data_dir).expanduser().resolve()
    key = (name, str(root))
    if key not in _CACHE:
        import torchvision.datasets as tvd

        src = SOURCES[name]
        cls = getattr(tvd, src.cls_name)
        parts = []
        for train in (True, False):
            arg = train if src.split_kwarg == "train" else ("train" if train else "test")
            try:
                ds = cls(str(root), **{src.split_kwarg: arg}, download=download)
            except RuntimeError as exc:
                if "not found" not in str(exc).lower():
                    raise DataError(_unreadable(name, root, exc)) from exc
                hint = "" if download else ("; set misc.download=true to fetch it, misc.data_dir=<folder> to "
                                            "point elsewhere, or misc.offline_data=substitute to run on a stand-in")
                raise DataError(f"dataset '{name}' not found under {root} ({exc}){hint}") from exc
            except (OSError, ValueError, EOFError, AssertionError) as exc:  # truncated or garbage files
                raise DataError(_unreadable(name, root, exc)) from exc
            parts.append(dataset_to_tensors(ds, src.layout, src.label_attr))
        (x, y), (x_test, y_test) = parts
        _CACHE[key] = split_train(x, y, x_test, y_test)
    return _CACHE[key]
