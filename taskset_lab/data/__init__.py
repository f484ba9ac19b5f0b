"""Dataset sources: embedded (no network), torchvision images, and text.

``load_dataset`` gives image classification splits ``{split: (x, y)}`` with ``x`` of shape
``[N, C, H, W]`` (float32 in [0, 1] for embedded data, uint8 for torchvision sources) and
``y`` int64 labels; ``load_text`` gives next-character windows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from taskset_lab.data.embedded import load_digits, pydoc_text, split_indices, split_sizes
from taskset_lab.data.image import SOURCES as TORCHVISION_SOURCES
from taskset_lab.data.image import dataset_to_tensors, load_torchvision
from taskset_lab.data.text import UNK_ID, VOCAB, VOCAB_SIZE, decode, encode, load_text, read_text
from taskset_lab.errors import DataError


@dataclass(frozen=True)
class ImageSpec:
    channels: int
    size: int  # images are size x size
    num_classes: int
    embedded: bool = False


IMAGE_DATASETS: dict[str, ImageSpec] = {
    "digits": ImageSpec(1, 8, 10, embedded=True),
    "mnist": ImageSpec(1, 28, 10),
    "fashion_mnist": ImageSpec(1, 28, 10),
    "cifar10": ImageSpec(3, 32, 10),
    "cifar100": ImageSpec(3, 32, 100),
    "svhn": ImageSpec(3, 32, 10),
}
EMBEDDED_IMAGE_DATASETS: tuple[str, ...] = tuple(k for k, v in IMAGE_DATASETS.items() if v.embedded)


def default_data_dir() -> Path:
    """``$TASKLAB_DATA_DIR`` or ``~/.cache/taskset_lab/data``."""
    return Path(os.environ.get("TASKLAB_DATA_DIR", "~/.cache/taskset_lab/data")).expanduser()


def load_dataset(name: str, data_dir: str | Path | None = None,
                 download: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
    """The four splits (train / valid_inner / valid_outer / test) of an image dataset."""
    if name == "digits":
        return load_digits()
    if name in TORCHVISION_SOURCES:
        return load_torchvision(name, data_dir if data_dir is not None else default_data_dir(), download)
    raise DataError(f"unknown image dataset {name!r}; known: {', '.join(IMAGE_DATASETS)}")


__all__ = [
    "EMBEDDED_IMAGE_DATASETS", "IMAGE_DATASETS", "ImageSpec", "TORCHVISION_SOURCES", "UNK_ID", "VOCAB",
    "VOCAB_SIZE", "dataset_to_tensors", "decode", "default_data_dir", "encode", "load_dataset",
    "load_digits", "load_text", "load_torchvision", "pydoc_text", "read_text", "split_indices",
    "split_sizes",
]
