"""CityScapes in the preprocessed 2-task layout of the MTAN / AdaTask code (Liu et al. 2019):

    <root>/train/image/<i>.npy    [H, W, 3] float RGB
    <root>/train/label_7/<i>.npy  [H, W] 7-class labels, -1 = no class
    <root>/train/depth/<i>.npy    [H, W, 1] depth, 0 = no measurement
    <root>/val/…                  the same

Task 1 = semantic segmentation (7 classes), task 2 = depth. As in that code the ``val``
folder is the evaluation set; it serves as both ``val`` and ``test`` here (there is no
separate test set in the preprocessed files). Files are read lazily, one sample at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from taskset_lab.errors import DataError
from taskset_lab.mtl.datasets.base import MTLDataModule
from taskset_lab.mtl.kinds import MTLTaskSpec

FOLDERS = ("image", "label_7", "depth")


class CityScapesFiles(Dataset):
    def __init__(self, folder: Path, limit: int | None = None):
        for sub in FOLDERS:
            if not (folder / sub).is_dir():
                raise DataError(f"CityScapes folder {folder / sub} is missing (expected the MTAN .npy layout: "
                                f"{'/'.join(FOLDERS)} under train/ and val/)")
        n = len(list((folder / "image").glob("*.npy")))
        if n == 0:
            raise DataError(f"no .npy images in {folder / 'image'}")
        missing = [i for i in range(n) if not (folder / "image" / f"{i}.npy").is_file()]
        if missing:
            raise DataError(f"{folder / 'image'} holds {n} files but not 0.npy…{n - 1}.npy (missing {missing[0]}.npy)")
        self.folder, self.n = folder, n if limit is None else min(n, int(limit))

    def __len__(self) -> int:
        return self.n

    def _load(self, sub: str, i: int) -> np.ndarray:
        path = self.folder / sub / f"{i}.npy"
        try:
            return np.load(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        image = torch.from_numpy(np.moveaxis(self._load("image", i), -1, 0).astype(np.float32))
        label = torch.from_numpy(self._load("label_7", i).astype(np.float32))
        depth = torch.from_numpy(np.moveaxis(self._load("depth", i), -1, 0).astype(np.float32))
        if label.shape != image.shape[1:] or depth.shape[1:] != image.shape[1:]:
            raise DataError(f"sample {i} in {self.folder}: image {tuple(image.shape)}, label {tuple(label.shape)} "
                            f"and depth {tuple(depth.shape)} sizes differ")
        return image, {1: label.long(), 2: depth}


class CityScapes(MTLDataModule):
    def __init__(self, root: str = "data/cityscapes", height: int = 128, width: int = 256,
                 max_train: int | None = None, max_eval: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(str(root))
        self.max_train, self.max_eval = max_train, max_eval
        self.tasks = {1: MTLTaskSpec("segmentation", "segmentation", 7), 2: MTLTaskSpec("depth", "depth", 1)}
        self.input_shape = (3, int(height), int(width))

    def build(self) -> dict[str, Dataset]:
        if not self.root.is_dir():
            raise DataError(f"CityScapes root {self.root} does not exist (set mtl_dataset.root)")
        train = CityScapesFiles(self.root / "train", self.max_train)
        evaluation = CityScapesFiles(self.root / "val", self.max_eval)
        shape = tuple(train[0][0].shape)
        if shape != self.input_shape:
            raise DataError(f"CityScapes images are {shape}, the config says {self.input_shape} "
                            f"(set mtl_dataset.height/width)")
        return {"train": train, "val": evaluation, "test": evaluation}
