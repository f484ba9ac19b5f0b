"""Export a curve store to mf-prior-bench's ``taskset_tabular`` layout, and read it back the way
its loader does.

mf-prior-bench 1.10 (its ``TaskSetTabularBenchmark``) reads one Parquet table per
(task, optimizer), ``<datadir>/<task>-<optimizer>_<steps>_replica<replicas>.parquet`` (TaskSet's
own files are ``_10000_replica5``), indexed by ``(id, epoch)`` with the metric columns
``train_loss, valid1_loss, valid2_loss, test_loss, train_cost``, the info column ``step`` and
one column per hyperparameter, as written by its processing script (``process.py``): the
curves are the mean over replicas, ``epoch`` counts the evaluations from 1 (epoch 1 is step
0, the loss at initialization) and ``train_cost`` is the cost so far.

Installing mf-prior-bench here would replace numpy 2 and pandas 3 (it pins numpy < 2), so the
library is not a dependency: :func:`read_mf_prior_bench_table` follows its loader line by
line (``pd.read_parquet``, level 0 named ``id``, NaN to ``inf`` with ``na_with_inf``, and
``_remove_zero_step``), and a test reads the export back with it.

Mapping: ``valid1_loss`` = ``valid_inner``, ``valid2_loss`` = ``valid_outer``; ``train_cost`` =
the run's measured seconds times ``step / total_steps`` (the mean over replicas), or the step
where the store has no seconds; ``id`` = the store's config id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from taskset_lab.files import atomic_path
from taskset_lab.replay.arrays import store_arrays

METRICS = {"train": "train_loss", "valid_inner": "valid1_loss", "valid_outer": "valid2_loss", "test": "test_loss"}


def table_name(task: str, optimizer: str, total_steps: int, replicas: int) -> str:
    """The file name mf-prior-bench's loader builds for ``(task, optimizer)``."""
    return f"{task}-{optimizer}_{int(total_steps)}_replica{int(replicas)}.parquet"


def export_mf_prior_bench(store: str | os.PathLike, dest: str | os.PathLike, optimizer: str | None = None,
                          tasks: Sequence[str] | None = None) -> list[Path]:
    """Write one ``taskset_tabular`` table per task of the store into folder ``dest`` (each file
    atomically); returns the paths."""
    arrays = store_arrays(store, optimizer=optimizer, tasks=tasks, splits=list(METRICS))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    steps = arrays.steps
    c, s = len(arrays.config_ids), len(steps)
    hp = arrays.hparams.reset_index(drop=True)
    paths = []
    for i, task in enumerate(arrays.tasks):
        with np.errstate(invalid="ignore"):
            curves = arrays.losses[i].astype(np.float64).mean(axis=1)  # [C, S, 4]: mean over replicas
        seconds = np.nanmean(arrays.seconds[i], axis=1) if np.isfinite(arrays.seconds[i]).any() else None
        if seconds is not None and np.isfinite(seconds).all():
            cost = seconds[:, None] * steps[None, :] / float(max(arrays.total_steps, 1))
        else:
            cost = np.broadcast_to(steps[None, :].astype(float), (c, s))
        frame = pd.DataFrame({"id": np.repeat(arrays.config_ids, s), "epoch": np.tile(np.arange(1, s + 1), c)})
        for k, split in enumerate(METRICS):
            frame[METRICS[split]] = curves[:, :, k].ravel()
        frame["train_cost"] = np.asarray(cost, dtype=np.float64).ravel()
        frame["step"] = np.tile(steps, c)
        hp_rows = hp.loc[np.repeat(np.arange(c), s)].reset_index(drop=True)
        frame = pd.concat([frame, hp_rows], axis=1).set_index(["id", "epoch"])
        path = dest / table_name(task, arrays.optimizer, arrays.total_steps, len(arrays.replicas))
        with atomic_path(path, keep_suffix=True) as tmp:
            frame.to_parquet(tmp)
        paths.append(path)
    return paths


def read_mf_prior_bench_table(datadir: str | os.PathLike, task: str, optimizer: str, total_steps: int,
                              replicas: int, na_with_inf: bool = True, remove_zero_step: bool = False) -> pd.DataFrame:
    """A ``taskset_tabular`` table as mf-prior-bench's ``TaskSetTabularBenchmark.__init__`` loads it
    (and, with ``remove_zero_step``, its ``_remove_zero_step``)."""
    table_path = Path(datadir) / table_name(task, optimizer, total_steps, replicas)
    if not table_path.exists():
        raise FileNotFoundError(f"Could not find table {table_path}.")
    table = pd.read_parquet(table_path)
    table.index = table.index.set_names("id", level=0)
    if na_with_inf:
        table = table.fillna(np.inf)
    if remove_zero_step:
        unique_ids = table.index.get_level_values(0).unique()
        if sum(table["step"] == 0) == len(unique_ids):
            table = table.reset_index()
            table = table.drop(index=table.loc[table["step"] == 0].index)
            table["epoch"] = table["epoch"] - 1
            table = table.set_index(["id", "epoch"])
    return table
