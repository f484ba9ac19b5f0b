"""The base LightningDataModule of the MTL datasets.

Every dataset here is *single-input*: each sample carries the labels of every task, and a
training batch gives every task its targets on the same inputs (``(x, {task_id: y})``). So one
forward pass of the shared backbone serves all tasks, every step computes every task's loss,
and the per-task gradients that AdaTask, PCGrad and GradNorm need are gradients of the same
shared activations. (Mixing tasks across samples would make each task's batch smaller and its
gradient noisier by the number of tasks, with no dataset here needing it.)
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from taskset_lab.mtl.kinds import MTLTaskSpec

SPLITS = ("train", "val", "test")


class TensorMTLDataset(Dataset):
    """In-memory inputs and one target tensor per task."""

    def __init__(self, x: Tensor, targets: dict[int, Tensor]):
        if any(len(y) != len(x) for y in targets.values()):
            raise ValueError("every task needs one target per input")
        self.x, self.targets = x, targets

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[int, Tensor]]:
        return self.x[i], {t: y[i] for t, y in self.targets.items()}


class MTLDataModule(pl.LightningDataModule):
    """Subclasses fill ``self.tasks`` (id -> spec, ids 1…N), ``self.input_shape`` and, in
    ``build()``, one dataset per split."""

    tasks: dict[int, MTLTaskSpec]
    input_shape: tuple[int, ...]

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 256, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.seed = int(num_workers), int(seed)
        self._data: dict[str, Dataset] | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def build(self) -> dict[str, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._data is None:
            self._data = self.build()

    def split(self, split: str) -> Dataset:
        self.setup()
        assert self._data is not None
        return self._data[split]

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        data = self.split("train")
        return DataLoader(data, batch_size=min(self.batch_size, len(data)), shuffle=True, drop_last=True,
                          generator=gen, num_workers=self.num_workers)

    def eval_dataloader(self, split: str) -> DataLoader:
        return DataLoader(self.split(split), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers)

    def describe(self) -> dict[str, Any]:
        return {"dataset": self.name, "input_shape": list(self.input_shape),
                "tasks": {t: {"name": s.name, "kind": s.kind, "out_dim": s.out_dim} for t, s in self.tasks.items()},
                "sizes": {s: len(self.split(s)) for s in SPLITS}}


