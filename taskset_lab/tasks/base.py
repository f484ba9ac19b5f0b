"""The Task interface (DESIGN.md §3).

A task is one optimization problem: a module built from a seed, a loss, and data splits.
It is fully described by a JSON-serializable config and named by a stable hash of it.

Batches are a function of ``(split, step)`` only (see :class:`TaskData`), so a config
trained alone and the same config trained inside a population see identical batches.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

SPLITS: tuple[str, ...] = ("train", "valid_inner", "valid_outer", "test")

Batch = tuple[Tensor, ...]


def task_name(config: dict[str, Any]) -> str:
    """Stable, readable name of a task config: ``<family>_<8 hex of sha1(canonical JSON)>``."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    return f"{config['family']}_{digest}"


class TaskData(ABC):
    """Where a task's batches come from. Deterministic in ``(seed, split, step)``."""

    @abstractmethod
    def batch(self, split: str, step: int) -> Batch:
        """The training/eval batch of ``split`` at ``step`` (same call, same batch)."""

    @abstractmethod
    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TaskData":
        """A copy on ``device`` with floating tensors cast to ``dtype`` (when given)."""

    def eval_batches(self, split: str, num_batches: int) -> list[Batch]:
        """A fixed set of batches used for every evaluation of ``split``."""
        # Negative steps never occur in training, so eval batches never repeat train ones.
        return [self.batch(split, -1 - i) for i in range(num_batches)]


def _cast(t: Tensor, device: torch.device | str, dtype: torch.dtype | None) -> Tensor:
    if dtype is not None and t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device)


class TensorData(TaskData):
    """Splits held as tensors on the device; batches sampled by index on the device.

    Indices for a block of ``block`` consecutive steps are drawn in one ``randint`` call from
    a generator seeded by ``(seed, split, block index)``; a batch is a row of that block.
    No host synchronisation is needed per step, and any step can be recomputed alone
    (which makes resume exact).
    """

    BLOCK = 256

    def __init__(self, splits: dict[str, Batch], batch_size: int, seed: int = 0):
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise ValueError(f"TensorData needs splits {SPLITS}; missing {missing}")
        sizes = {s: splits[s][0].shape[0] for s in SPLITS}
        if min(sizes.values()) < 1:
            raise ValueError(f"empty split in {sizes}")
        self.splits = splits
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._blocks: dict[tuple[str, int], Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.splits["train"][0].device

    def _indices(self, split: str, step: int) -> Tensor:
        block, row = divmod(step, self.BLOCK)
        key = (split, block)
        idx = self._blocks.get(key)
        if idx is None:
            n = self.splits[split][0].shape[0]
            gen = torch.Generator(device=self.device)
            gen.manual_seed(_mix(self.seed, SPLITS.index(split), block))
            idx = torch.randint(n, (self.BLOCK, self.batch_size), generator=gen, device=self.device)
            if len(self._blocks) > 64:
                self._blocks.clear()
            self._blocks[key] = idx
        return idx[row]

    def batch(self, split: str, step: int) -> Batch:
        idx = self._indices(split, step)
        return tuple(t[idx] for t in self.splits[split])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TensorData":
        splits = {s: tuple(_cast(t, device, dtype) for t in ts) for s, ts in self.splits.items()}
        return TensorData(splits, self.batch_size, self.seed)


class NoiseData(TaskData):
    """Batches of Gaussian noise for synthetic tasks (quadratics, 2-D functions).

    ``scale == 0`` gives zeros: the loss is then deterministic.
    """

    def __init__(self, shape: Sequence[int], scale: float = 0.0, seed: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.shape = tuple(int(s) for s in shape)
        self.scale = float(scale)
        self.seed = int(seed)
        self._device = torch.device(device)
        self._dtype = dtype

    def batch(self, split: str, step: int) -> Batch:
        if self.scale == 0.0:
            return (torch.zeros(self.shape, device=self._device, dtype=self._dtype),)
        gen = torch.Generator(device=self._device)
        gen.manual_seed(_mix(self.seed, SPLITS.index(split), step))
        noise = torch.randn(self.shape, generator=gen, device=self._device, dtype=self._dtype)
        return (noise * self.scale,)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "NoiseData":
        return NoiseData(self.shape, self.scale, self.seed, device, dtype or self._dtype)


def _mix(*values: int) -> int:
    """Combine integers into one 63-bit generator seed (stable across runs and machines)."""
    h = hashlib.blake2b(",".join(str(v) for v in values).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class Task(ABC):
    """One optimization problem. Subclasses implement :meth:`make_module` and :meth:`loss`.

    ``forward_loss(model, batch)`` is the only way the engines evaluate a task: ``model`` is
    either the ``nn.Module`` itself or a functional stand-in (``torch.func.functional_call``
    over stacked parameters), so one loss definition serves single and population training.
    """

    def __init__(self, config: dict[str, Any], data: TaskData):
        self.config = dict(config)
        self.data = data

    @property
    def name(self) -> str:
        return task_name(self.config)

    @property
    def family(self) -> str:
        return str(self.config["family"])

    @abstractmethod
    def make_module(self) -> nn.Module:
        """Build the module with freshly initialised parameters (uses the global RNG)."""

    def init_module(self, seed: int) -> nn.Module:
        """Build the module with parameters initialised from ``seed`` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.make_module()

    def model_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        """What the module is called with; by default the first tensor of the batch."""
        return (batch[0],)

    @abstractmethod
    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Scalar loss from the module's output and the batch."""

    def forward_loss(self, model: Callable[..., Tensor], batch: Batch) -> Tensor:
        return self.loss(model(*self.model_inputs(batch)), batch)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Task":
        """This task with its data moved (the module is built later, on the caller's side)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.data = self.data.to(device, dtype)
        return clone

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"
