"""MultiMNIST / MultiFashion (Sabour et al. 2017; Sener & Koltun 2018) built from the MNIST or
Fashion-MNIST files that torchvision reads (``<data_dir>/MNIST/raw/…-idx?-ubyte``).

Each image overlays two digits: one at the top left and one at the bottom right of a 36x36
canvas (8 pixels apart), resized to 28x28. Task 1 = the top-left class, task 2 = the
bottom-right class. The partner of each image is drawn once from ``pair_seed``. The last
``val_fraction`` of the training files is the validation split; the test files the test split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from taskset_lab.errors import DataError
from taskset_lab.mtl.datasets.base import MTLDataModule, TensorMTLDataset
from taskset_lab.mtl.kinds import MTLTaskSpec

SOURCES = {"mnist": "MNIST", "fashion": "FashionMNIST"}
SHIFT = 8


def overlay_pairs(images: torch.Tensor, first: torch.Tensor, second: torch.Tensor, size: int = 28) -> torch.Tensor:
    """[N,28,28] uint8 images -> [M,1,size,size] floats in [0,1]: ``first`` top left,
    ``second`` bottom right, pixelwise maximum where they overlap."""
    x = images.float().div(255.0)
    h, w = x.shape[-2:]
    canvas = torch.zeros(len(first), h + SHIFT, w + SHIFT)
    canvas[:, :h, :w] = x[first]
    canvas[:, SHIFT:, SHIFT:] = torch.maximum(canvas[:, SHIFT:, SHIFT:], x[second])
    return F.interpolate(canvas.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)


class MultiMNIST(MTLDataModule):
    def __init__(self, data_dir: str = "data", source: str = "mnist", download: bool = False,
                 val_fraction: float = 0.1, max_train: int | None = None, max_test: int | None = None,
                 pair_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if source not in SOURCES:
            raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError("val_fraction must be in (0, 1)")
        self.data_dir, self.source, self.download = str(data_dir), source, bool(download)
        self.val_fraction, self.max_train, self.max_test, self.pair_seed = val_fraction, max_train, max_test, pair_seed
        self.tasks = {1: MTLTaskSpec("top_left", "classification", 10),
                      2: MTLTaskSpec("bottom_right", "classification", 10)}
        self.input_shape = (1, 28, 28)

    @property
    def name(self) -> str:
        return "MultiMNIST" if self.source == "mnist" else "MultiFashion"

    def _raw(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import datasets

        cls = getattr(datasets, SOURCES[self.source])
        try:
            ds = cls(root=self.data_dir, train=train, download=self.download)
        except RuntimeError as exc:
            raise DataError(f"{SOURCES[self.source]} files not found under {self.data_dir}/{SOURCES[self.source]}/raw "
                            f"(set misc.data_dir, or download=true once with network): {exc}") from None
        return ds.data, ds.targets

    def build(self) -> dict[str, Dataset]:
        rng = np.random.default_rng(self.pair_seed)
        out = {}
        x, y = self._raw(train=True)
        if self.max_train is not None:
            x, y = x[: self.max_train], y[: self.max_train]
        n_val = max(1, int(len(y) * self.val_fraction))
        parts = {"train": (x[:-n_val], y[:-n_val]), "val": (x[-n_val:], y[-n_val:])}
        tx, ty = self._raw(train=False)
        if self.max_test is not None:
            tx, ty = tx[: self.max_test], ty[: self.max_test]
        parts["test"] = (tx, ty)
        for split, (images, labels) in parts.items():
            first = torch.arange(len(labels))
            second = torch.from_numpy(rng.permutation(len(labels)))
            out[split] = TensorMTLDataset(overlay_pairs(images, first, second),
                                          {1: labels[first].long(), 2: labels[second].long()})
        return out
