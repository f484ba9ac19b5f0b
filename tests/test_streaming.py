"""Streaming task data: the same batches (and curves) as the device-resident path, from a
Dataset per split, read ahead on a thread pool; a memory-mapped .npy dataset as the real use."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from taskset_lab.engine import train_population
from taskset_lab.errors import ConfigError
from taskset_lab.tasks.base import INDEX_BLOCK, SPLITS, TensorData
from taskset_lab.tasks.registry import build_task, sample_task_config
from taskset_lab.tasks.streaming import (
    NpyDataset,
    StreamingData,
    TensorSplitDataset,
    choose_task_data,
    dataset_nbytes,
)


def random_splits(seed: int = 0) -> dict[str, tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(seed)
    return {s: (torch.randint(0, 256, (50 + 7 * i, 1, 4, 4), dtype=torch.uint8, generator=gen),
                torch.randn(50 + 7 * i, 3, generator=gen),
                torch.randint(0, 10, (50 + 7 * i,), generator=gen))
            for i, s in enumerate(SPLITS)}


def same(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b))


class ItemDataset(Dataset):
    """A plain map-style Dataset (no batched read): items ``(ndarray, ndarray, int)``, read
    after a random delay, recording which thread read them."""

    def __init__(self, tensors, delay: float = 0.0):
        self.arrays = [t.numpy() for t in tensors]
        self.delay = delay
        self.threads: list[str] = []

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, i: int):
        if self.delay:
            time.sleep(random.random() * self.delay)
        self.threads.append(threading.current_thread().name)
        x, v, y = (a[i] for a in self.arrays)
        return x, v, int(y)


def test_forced_streaming_gives_the_device_resident_batches():
    splits = random_splits()
    resident = TensorData(splits, batch_size=6, seed=11)
    streamed = choose_task_data(splits, batch_size=6, seed=11, memory_budget_bytes=0, prefetch=5)
    assert isinstance(streamed, StreamingData) and isinstance(choose_task_data(splits, 6, 11), TensorData)
    # past a block boundary, in order, then a restart at an earlier step and a jump ahead
    steps = [*range(2 * INDEX_BLOCK + 10), 3, 4, 5, 1000, 1001, 7]
    for split in SPLITS:
        for step in steps:
            assert same(streamed.batch(split, step), resident.batch(split, step)), (split, step)
        assert all(same(a, b) for a, b in zip(streamed.eval_batches(split, 3), resident.eval_batches(split, 3)))
    # another seed gives other batches (the check above is not vacuous)
    assert not same(choose_task_data(splits, 6, 12, memory_budget_bytes=0).batch("train", 0),
                    resident.batch("train", 0))
    streamed.close()


def test_prefetching_reads_ahead_on_pool_threads_and_timing_does_not_change_batches():
    splits = random_splits(1)
    datasets = {s: ItemDataset(splits[s], delay=0.002) for s in SPLITS}
    streamed = StreamingData(datasets, batch_size=4, seed=3, prefetch=3, workers=3)
    resident = TensorData(splits, batch_size=4, seed=3)
    for step in range(40):
        got = streamed.batch("train", step)
        assert sorted(k[1] for k in streamed._inflight if k[0] == "train") == [step + 1, step + 2, step + 3]
        # python ints come back as int64 labels, numpy float32 stays float32: TensorData's dtypes
        assert same(got, resident.batch("train", step)), step
    threads = datasets["train"].threads
    # step 0 is read by the caller; every later training batch was read ahead on the pool
    assert sum(t.startswith("tasklab-stream") for t in threads) >= 39 * 4
    streamed.close()


def test_dataset_that_fits_becomes_tensor_data_and_budget_decides(monkeypatch):
    splits = random_splits(2)
    datasets = {s: ItemDataset(splits[s]) for s in SPLITS}
    nbytes = sum(dataset_nbytes(d) for d in datasets.values())
    expected = sum(t.element_size() * t.numel() for ts in splits.values() for t in ts)
    assert nbytes == expected
    fits = choose_task_data(datasets, 5, 4, memory_budget_bytes=nbytes)
    streams = choose_task_data(datasets, 5, 4, memory_budget_bytes=nbytes - 1)
    assert isinstance(fits, TensorData) and isinstance(streams, StreamingData)
    monkeypatch.setenv("TASKLAB_MEMORY_BUDGET", str(nbytes - 1))  # the default budget's override
    assert isinstance(choose_task_data(datasets, 5, 4), StreamingData)
    monkeypatch.setenv("TASKLAB_MEMORY_BUDGET", "lots")
    with pytest.raises(ConfigError, match="TASKLAB_MEMORY_BUDGET"):
        choose_task_data(datasets, 5, 4)
    for step in (0, 1, 300, -1):
        assert same(fits.batch("valid_outer", step), streams.batch("valid_outer", step))
    streams.close()


def test_memory_mapped_npy_dataset(tmp_path):
    splits = random_splits(3)
    datasets = {}
    for s, tensors in splits.items():
        paths = []
        for j, t in enumerate(tensors):
            paths.append(tmp_path / f"{s}_{j}.npy")
            np.save(paths[-1], t.numpy())
        datasets[s] = NpyDataset(paths)
        assert isinstance(datasets[s].arrays[0], np.memmap)
    streamed = StreamingData(datasets, batch_size=7, seed=5, dtype=torch.float64)
    resident = TensorData(splits, batch_size=7, seed=5).to("cpu", torch.float64)
    for step in range(0, 600, 3):
        got = streamed.batch("test", step)
        assert got[1].dtype == torch.float64 and got[0].dtype == torch.uint8
        assert same(got, resident.batch("test", step))
    with pytest.raises(ValueError, match="different lengths"):
        NpyDataset([tmp_path / "train_0.npy", tmp_path / "test_0.npy"])
    streamed.close()


def _curves(task, data):
    task = task.to("cpu")
    task.data = data
    from taskset_lab.optim import get_optimizer_family

    family = get_optimizer_family("adam8p")
    hparams = [family.sample(s) for s in (0, 1)]
    return train_population(task, family, hparams, total_steps=12, eval_every=6, eval_batches=1)


def test_population_curve_is_the_same_when_the_data_streams(tmp_path):
    config = sample_task_config("lab_mlp", 0, {"hidden": [16], "batch_size": 32})
    task = build_task(config)
    splits = task.data.splits
    npy = {}
    for s, tensors in splits.items():
        paths = []
        for j, t in enumerate(tensors):
            paths.append(tmp_path / f"{s}_{j}.npy")
            np.save(paths[-1], t.numpy())
        npy[s] = NpyDataset(paths)
    resident = _curves(task, task.data)
    streamed_data = choose_task_data(splits, task.data.batch_size, task.data.seed, memory_budget_bytes=0)
    streamed = _curves(task, streamed_data)
    from_disk = _curves(task, StreamingData(npy, task.data.batch_size, task.data.seed))
    assert resident.steps == streamed.steps == from_disk.steps == [0, 6, 12]
    for s in SPLITS:
        assert torch.isfinite(resident.losses[s]).all()
        assert torch.equal(resident.losses[s], streamed.losses[s]), s
        assert torch.equal(resident.losses[s], from_disk.losses[s]), s
    # the curves moved (training happened), so equality compares real trajectories
    assert not torch.equal(resident.losses["train"][:, 0], resident.losses["train"][:, -1])
