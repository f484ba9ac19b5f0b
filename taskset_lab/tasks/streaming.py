"""Streaming task data: splits read through ``torch.utils.data.Dataset`` s, batches loaded ahead.

The device-resident :class:`~taskset_lab.tasks.base.TensorData` is the default; a dataset
too large for the memory budget is read batch by batch instead (:func:`choose_task_data`).
Streaming changes where the examples come from, not which ones: the batch of ``(split,
step)`` holds the examples at :func:`~taskset_lab.tasks.base.block_indices` — the indices
TensorData uses — so a config's curve is the same on either path and resume stays exact.

A background prefetcher keeps the next ``prefetch`` training batches in flight on a thread
pool (reading a memory-mapped file or decoding images releases the GIL), so the engine does
not wait on disk. Prefetching changes only when a batch is read, never what it holds: every
batch is a pure function of ``(seed, split, step)``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.base import INDEX_BLOCK, SPLITS, Batch, TaskData, TensorData, block_indices

#: the budget :func:`choose_task_data` uses when none is given (device-resident up to 2 GiB);
#: the environment variable ``TASKLAB_MEMORY_BUDGET`` (bytes) overrides it
DEFAULT_MEMORY_BUDGET = 2 << 30


def default_memory_budget() -> int:
    """Bytes of task data kept device-resident: ``$TASKLAB_MEMORY_BUDGET`` or 2 GiB."""
    value = os.environ.get("TASKLAB_MEMORY_BUDGET", "")
    try:
        return int(float(value)) if value else DEFAULT_MEMORY_BUDGET
    except ValueError:
        raise ConfigError("TASKLAB_MEMORY_BUDGET", f"must be a number of bytes, got {value!r}") from None


class TensorSplitDataset(Dataset):
    """A split held as tensors ``(x, y, ...)`` seen as a Dataset (item ``i``: ``x[i], y[i], ...``)."""

    def __init__(self, tensors: Sequence[Tensor]):
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        return tuple(t[i] for t in self.tensors)

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


class NpyDataset(Dataset):
    """Arrays in ``.npy`` files, memory-mapped (pages are read from disk when a batch needs them).

    Item ``i`` is ``(arrays[0][i], arrays[1][i], ...)``; :meth:`get_batch` reads a whole
    batch with one fancy-indexing gather per array.
    """

    def __init__(self, paths: Sequence[str]):
        self.paths = [str(p) for p in paths]
        self.arrays = [np.load(p, mmap_mode="r") for p in self.paths]
        sizes = {a.shape[0] for a in self.arrays}
        if len(sizes) != 1:
            raise ValueError(f"arrays of {self.paths} have different lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        return tuple(torch.as_tensor(np.array(a[i])) for a in self.arrays)

    def get_batch(self, indices: Sequence[int]) -> tuple[Tensor, ...]:
        idx = np.asarray(indices, dtype=np.int64)
        return tuple(torch.from_numpy(np.ascontiguousarray(a[idx])) for a in self.arrays)


def read_batch(dataset: Dataset, indices: Sequence[int]) -> Batch:
    """The examples ``indices`` of ``dataset`` as a batch: one tensor per item field.

    A dataset with ``get_batch(indices) -> (x, y, ...)`` is read in one call (a batched
    read); one with torch's ``__getitems__`` (a list of items) or only ``__getitem__`` is
    read item by item and stacked (python ints become int64, as ``torch.tensor`` makes them).
    """
    indices = [int(i) for i in indices]
    get_batch = getattr(dataset, "get_batch", None)
    if get_batch is not None:
        return tuple(get_batch(indices))
    getitems = getattr(dataset, "__getitems__", None)
    items = list(getitems(indices)) if getitems is not None else [dataset[i] for i in indices]
    fields = [item if isinstance(item, (tuple, list)) else (item,) for item in items]
    return tuple(_stack([f[j] for f in fields]) for j in range(len(fields[0])))


def _stack(values: list[Any]) -> Tensor:
    if isinstance(values[0], Tensor):
        return torch.stack(values)
    if isinstance(values[0], np.ndarray):
        return torch.from_numpy(np.stack(values))
    return torch.tensor(values)


def dataset_nbytes(dataset: Dataset) -> int:
    """Bytes the whole dataset takes as tensors, estimated from its first item."""
    first = read_batch(dataset, [0])
    return len(dataset) * sum(t.element_size() * t[0].numel() for t in first)


def _as_dataset(split: Sequence[Tensor] | Dataset) -> Dataset:
    return split if isinstance(split, Dataset) else TensorSplitDataset(split)


class StreamingData(TaskData):
    """Splits read through a Dataset per split; batches loaded ahead on a thread pool.

    ``index_device`` is the device the batch indices are drawn on; it follows :meth:`to`
    (like TensorData's, whose generator lives where its tensors do), so streaming data and
    device-resident data on the same device give the same batches.
    """

    def __init__(self, datasets: Mapping[str, Dataset], batch_size: int, seed: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                 prefetch: int = 4, workers: int = 2, index_device: torch.device | str | None = None):
        missing = [s for s in SPLITS if s not in datasets]
        if missing:
            raise ValueError(f"StreamingData needs splits {SPLITS}; missing {missing}")
        sizes = {s: len(datasets[s]) for s in SPLITS}
        if min(sizes.values()) < 1:
            raise ValueError(f"empty split in {sizes}")
        if prefetch < 0 or workers < 1:
            raise ValueError(f"prefetch must be >= 0 and workers >= 1, got {prefetch}, {workers}")
        self.datasets = dict(datasets)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.dtype = dtype
        self.prefetch = int(prefetch)
        self.workers = int(workers)
        self.index_device = torch.device(index_device if index_device is not None else device)
        self._lock = threading.Lock()
        self._blocks: OrderedDict[tuple[str, int], Tensor] = OrderedDict()
        self._inflight: dict[tuple[str, int], Future] = {}
        self._pool: ThreadPoolExecutor | None = None

    # -- which examples -------------------------------------------------------------------
    def indices(self, split: str, step: int) -> Tensor:
        """The example indices (CPU int64) of the batch of ``(split, step)``."""
        block, row = divmod(step, INDEX_BLOCK)
        key = (split, block)
        with self._lock:
            idx = self._blocks.get(key)
        if idx is None:
            idx = block_indices(self.seed, split, block, len(self.datasets[split]), self.batch_size,
                                self.index_device).cpu()
            with self._lock:
                self._blocks[key] = idx
                while len(self._blocks) > 16:
                    self._blocks.popitem(last=False)
        return idx[row]

    # -- reading --------------------------------------------------------------------------
    def load(self, split: str, step: int) -> Batch:
        """Read the batch of ``(split, step)`` from the dataset now (no prefetching)."""
        cpu = read_batch(self.datasets[split], self.indices(split, step).tolist())
        pin = self.device.type == "cuda"
        out = []
        for t in cpu:
            if self.dtype is not None and t.is_floating_point():
                t = t.to(self.dtype)
            out.append(t.pin_memory().to(self.device, non_blocking=True) if pin else t.to(self.device))
        return tuple(out)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:  # started on first use: a copy that is never read holds no threads
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tasklab-stream")
        return self._pool

    def _submit(self, key: tuple[str, int]) -> None:
        if key not in self._inflight:
            self._inflight[key] = self._executor().submit(self.load, *key)

    def batch(self, split: str, step: int) -> Batch:
        """The batch of ``(split, step)``; for a training step the next ``prefetch`` steps'
        batches start loading in the background."""
        key = (split, step)
        future = self._inflight.pop(key, None)
        if step >= 0 and self.prefetch:
            # forget batches the caller skipped over (a restart at another step)
            for old in [k for k in self._inflight if k[0] == split and not step < k[1] <= step + self.prefetch]:
                self._inflight.pop(old).cancel()
            for ahead in range(step + 1, step + 1 + self.prefetch):
                self._submit((split, ahead))
        return future.result() if future is not None else self.load(split, step)

    def eval_batches(self, split: str, num_batches: int) -> list[Batch]:
        """The fixed evaluation batches of ``split`` (read in parallel on the pool)."""
        futures = [self._executor().submit(self.load, split, -1 - i) for i in range(num_batches)]
        return [f.result() for f in futures]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "StreamingData":
        return StreamingData(self.datasets, self.batch_size, self.seed, device, dtype or self.dtype,
                             self.prefetch, self.workers)

    def close(self) -> None:
        """Stop the prefetcher (batches in flight are dropped)."""
        for f in self._inflight.values():
            f.cancel()
        self._inflight.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def choose_task_data(splits: Mapping[str, Sequence[Tensor] | Dataset], batch_size: int, seed: int = 0,
                     memory_budget_bytes: int | None = None, **streaming: Any) -> TaskData:
    """Device-resident :class:`TensorData` when the splits fit ``memory_budget_bytes`` (the
    default path), :class:`StreamingData` otherwise.

    ``splits`` maps each split to tensors ``(x, y, ...)`` or to a Dataset; Datasets that
    fit are read whole into tensors. ``streaming`` goes to StreamingData (``prefetch``,
    ``workers``).
    """
    budget = default_memory_budget() if memory_budget_bytes is None else int(memory_budget_bytes)
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise ValueError(f"task data needs splits {SPLITS}; missing {missing}")
    datasets = {s: _as_dataset(splits[s]) for s in SPLITS}
    total = sum(_split_nbytes(splits[s], datasets[s]) for s in SPLITS)
    if total <= budget:
        tensors = {s: tuple(splits[s]) if not isinstance(splits[s], Dataset)
                   else read_batch(datasets[s], range(len(datasets[s]))) for s in SPLITS}
        return TensorData(tensors, batch_size, seed)
    return StreamingData(datasets, batch_size, seed, **streaming)


def _split_nbytes(split: Sequence[Tensor] | Dataset, dataset: Dataset) -> int:
    if isinstance(split, Dataset):
        return dataset_nbytes(dataset)
    return sum(t.element_size() * t.numel() for t in split)
