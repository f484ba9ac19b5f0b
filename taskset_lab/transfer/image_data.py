"""Image classification data for TRANSFER as a LightningDataModule.

Three sources, one interface (``train`` / ``valid`` / ``test`` loaders of ``(x, y)``):

* ``digits``: scikit-learn's 8x8 digits (ships with the package) resized to ``image_size``
  and repeated to 3 channels, so torchvision's ImageNet-shaped models take them; offline.
* ``imagefolder``: ImageNet's layout, ``<root>/train/<class>/*`` and ``<root>/val/<class>/*``.
  ``val`` is the test split (the ImageNet convention); a fixed random ``valid_size`` images
  of ``train`` are held out for choosing hyperparameters and never trained on.
* ``torchvision``: a dataset of ``taskset_lab.data`` (mnist, cifar10, …) read from ``data_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from taskset_lab.errors import ConfigError, DataError

SOURCES = ("digits", "imagefolder", "torchvision")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def images_to_model_input(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """Float ``[N, 3, S, S]`` normalized as torchvision's models expect, from ``[N, C, H, W]``
    images (uint8, or floats in [0, 1]) with 1 or 3 channels."""
    x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return _normalize(x.clamp(0.0, 1.0))


class ImageDataModule(pl.LightningDataModule):
    """Classification batches for a torchvision model; see the module docstring for sources."""

    def __init__(self, source: str = "digits", dataset: str | None = None, root: str | None = None,
                 data_dir: str | None = None, download: bool = False, image_size: int = 32,
                 batch_size: int = 64, eval_batch_size: int | None = None, num_workers: int = 0,
                 valid_size: int = 10000, max_eval_examples: int | None = None, seed: int = 0):
        super().__init__()
        if source not in SOURCES:
            raise ConfigError("data.source", f"must be one of {', '.join(SOURCES)}, got {source!r}")
        if source == "imagefolder" and not root:
            raise ConfigError("data.root", "an ImageFolder source needs root=<folder with train/ and val/>")
        if source == "torchvision" and not dataset:
            raise ConfigError("data.dataset", "a torchvision source needs dataset=<name> (e.g. cifar10)")
        self.source, self.dataset, self.root = source, dataset, root
        self.data_dir, self.download = data_dir, bool(download)
        self.image_size, self.batch_size = int(image_size), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers, self.valid_size = int(num_workers), int(valid_size)
        self.max_eval_examples = None if max_eval_examples is None else int(max_eval_examples)
        self.seed = int(seed)
        self.splits: dict[str, Dataset] = {}
        self.num_classes: int | None = None

    # -- loading ----------------------------------------------------------------------------
    def check_available(self) -> None:
        """Raise :class:`DataError` now if an ImageFolder root lacks ``train/`` or ``val/``
        (cheap: no files are read), so a multi-process run fails once, before it spawns."""
        if self.source == "imagefolder":
            root = Path(str(self.root)).expanduser()
            for part in ("train", "val"):
                if not (root / part).is_dir():
                    raise DataError(f"ImageFolder root {root} needs {part}/<class>/<images> (ImageNet layout); "
                                    f"{root / part} is missing")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.source == "imagefolder":
            self.splits = self._imagefolder()
        else:
            self.splits = self._tensors()
        if self.max_eval_examples is not None:
            for split in ("valid", "test"):
                n = min(len(self.splits[split]), self.max_eval_examples)
                self.splits[split] = Subset(self.splits[split], range(n))

    def _tensors(self) -> dict[str, Dataset]:
        from taskset_lab.data import load_dataset

        name = "digits" if self.source == "digits" else str(self.dataset)
        raw = load_dataset(name, self.data_dir, self.download)
        self.num_classes = int(raw["train"][1].max()) + 1
        pairs = {"train": raw["train"], "valid": raw["valid_inner"], "test": raw["test"]}
        return {s: TensorDataset(images_to_model_input(x, self.image_size), y) for s, (x, y) in pairs.items()}

    def _imagefolder(self) -> dict[str, Dataset]:
        from torchvision import datasets, transforms

        root = Path(str(self.root)).expanduser()
        for part in ("train", "val"):
            if not (root / part).is_dir():
                raise DataError(f"ImageFolder root {root} needs {part}/<class>/<images> (ImageNet layout); "
                                f"{root / part} is missing")
        size = self.image_size
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
                                       transforms.ToTensor(), normalize])
        eval_tf = transforms.Compose([transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size),
                                      transforms.ToTensor(), normalize])
        try:
            train_aug = datasets.ImageFolder(str(root / "train"), transform=train_tf)
            train_eval = datasets.ImageFolder(str(root / "train"), transform=eval_tf)
            test = datasets.ImageFolder(str(root / "val"), transform=eval_tf)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"ImageFolder root {root}: {exc}") from None
        if train_aug.classes != test.classes:
            raise DataError(f"ImageFolder root {root}: train/ and val/ have different class folders")
        self.num_classes = len(train_aug.classes)
        n = len(train_aug)
        n_valid = min(self.valid_size, n // 10)
        if n_valid < 1:
            raise DataError(f"ImageFolder root {root}: {n} training images are too few to hold out a valid split")
        perm = np.random.default_rng(self.seed).permutation(n)
        return {"train": Subset(train_aug, perm[n_valid:].tolist()),
                "valid": Subset(train_eval, sorted(perm[:n_valid].tolist())), "test": test}

    # -- loaders ----------------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        generator = torch.Generator().manual_seed(self.seed) if train else None
        return DataLoader(self.splits[split], batch_size=self.batch_size if train else self.eval_batch_size,
                          shuffle=train, drop_last=train, generator=generator, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> list[DataLoader]:
        """[valid, test]: both evaluated at every evaluation step (the curve has both)."""
        return [self._loader("valid", False), self._loader("test", False)]

    def describe(self) -> dict[str, Any]:
        self.setup()
        return {"source": self.source, "num_classes": self.num_classes,
                **{f"{s}_examples": len(d) for s, d in self.splits.items()}}
