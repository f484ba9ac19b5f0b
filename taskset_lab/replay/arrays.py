"""A curve store as dense arrays: the shape every tabular HPO benchmark shares.

:func:`store_arrays` reads one optimizer's curves from a store (optionally some tasks and
splits) into ``losses[task, config, replica, step, split]`` with the configs' hparams, the
steps recorded and the measured seconds per run. Every task must hold the same configs,
replicas and steps (a store written by one collection does); a hole is a :class:`DataError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from taskset_lab.errors import DataError
from taskset_lab.tasks.base import SPLITS


@dataclass
class StoreArrays:
    """One optimizer's curves as arrays (see the module docstring).

    ``losses``: float32/float64 ``[T, C, R, S, len(splits)]`` (NaN after a divergence, as stored);
    ``seconds``: ``[T, C, R]`` measured seconds of each run (NaN where not recorded);
    ``hparams``: one row per config (index ``config_id``, sorted); ``runs``: the runs table.
    """

    optimizer: str
    tasks: list[str]
    families: list[str]
    config_ids: np.ndarray
    replicas: np.ndarray
    steps: np.ndarray
    splits: list[str]
    losses: np.ndarray
    seconds: np.ndarray
    hparams: pd.DataFrame
    runs: pd.DataFrame = field(repr=False)
    curves: pd.DataFrame = field(repr=False)
    total_steps: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.losses.shape)


def _store_optimizers(store: str | os.PathLike) -> list[str]:
    from taskset_lab.curves.store import list_parts, parse_part_name

    return sorted({p[1] for p in (parse_part_name(n) for n in list_parts(store)) if p is not None})


def store_arrays(store: str | os.PathLike, optimizer: str | None = None, tasks: Sequence[str] | None = None,
                 splits: Sequence[str] | None = None) -> StoreArrays:
    """Read ``optimizer``'s curves (default: the store's only optimizer) as :class:`StoreArrays`."""
    from taskset_lab.curves.store import read_curves, read_runs
    from taskset_lab.hparam_list.normalize import hparams_frame

    splits = list(SPLITS) if splits is None else [splits] if isinstance(splits, str) else list(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise DataError(f"unknown splits {bad or splits}; the store has {', '.join(SPLITS)}")
    optimizers = _store_optimizers(store)
    if optimizer is None:
        if len(optimizers) != 1:
            raise DataError(f"curve store {store} holds optimizers {optimizers}; name one")
        optimizer = optimizers[0]
    elif optimizer not in optimizers:
        raise DataError(f"curve store {store} has no curves of optimizer {optimizer!r} (it has {optimizers})")
    try:
        curves = read_curves(store, optimizers=[optimizer], tasks=tasks, splits=splits)
    except ValueError as exc:  # a split column the store's files lack
        raise DataError(f"curve store {store} lacks a split the replay needs ({', '.join(splits)}): "
                        f"{str(exc).splitlines()[0]}") from None
    runs = read_runs(store, optimizers=[optimizer], tasks=tasks)
    if curves.empty:
        raise DataError(f"curve store {store} has no curves of {optimizer} for tasks {list(tasks or [])}")
    if tasks is not None:
        missing = sorted(set(tasks) - set(curves["task"]))
        if missing:
            raise DataError(f"curve store {store} has no curves of {optimizer} for tasks {missing}")
    task_names = sorted(curves["task"].unique())
    config_ids = np.sort(curves["config_id"].unique()).astype(int)
    replicas = np.sort(curves["replica"].unique()).astype(int)
    steps = np.sort(curves["step"].unique()).astype(int)
    t, c, r, s = len(task_names), len(config_ids), len(replicas), len(steps)
    expected = t * c * r * s
    if len(curves) != expected:
        counts = curves.groupby("task").size()
        short = [name for name in task_names if counts.get(name, 0) != c * r * s]
        raise DataError(f"curve store {store}: {optimizer}'s curves are not one full table of {t} tasks x {c} "
                        f"configs x {r} replicas x {s} steps ({len(curves)} rows where {expected} are needed; "
                        f"tasks with holes: {short[:5]})")
    ti = pd.Index(task_names).get_indexer(curves["task"])
    ci = pd.Index(config_ids).get_indexer(curves["config_id"].astype(int))
    ri = pd.Index(replicas).get_indexer(curves["replica"].astype(int))
    si = pd.Index(steps).get_indexer(curves["step"].astype(int))
    dtype = np.result_type(*[curves[sp].dtype for sp in splits])
    losses = np.full((t, c, r, s, len(splits)), np.nan, dtype=dtype)
    seen = np.zeros((t, c, r, s), dtype=bool)
    seen[ti, ci, ri, si] = True
    if not seen.all():
        raise DataError(f"curve store {store}: {optimizer}'s curves repeat some (task, config, replica, step) rows")
    for k, sp in enumerate(splits):
        losses[ti, ci, ri, si, k] = curves[sp].to_numpy()
    seconds = np.full((t, c, r), np.nan)
    if "seconds" in runs.columns and not runs.empty:
        rt = pd.Index(task_names).get_indexer(runs["task"])
        rc = pd.Index(config_ids).get_indexer(runs["config_id"].astype(int))
        rr = pd.Index(replicas).get_indexer(runs["replica"].astype(int))
        ok = (rt >= 0) & (rc >= 0) & (rr >= 0)
        seconds[rt[ok], rc[ok], rr[ok]] = pd.to_numeric(runs["seconds"], errors="coerce").to_numpy()[ok]
    fam = curves.drop_duplicates("task").set_index("task")["task_family"]
    hparams = hparams_frame(runs, optimizer=optimizer)
    per_task = runs.drop_duplicates(["task", "config_id"]).groupby("config_id")["hparams"].nunique()
    if (per_task > 1).any():
        raise DataError(f"curve store {store}: config ids {per_task[per_task > 1].index.tolist()[:5]} have other "
                        f"hparams on other tasks; a tabular benchmark needs the same configs on every task")
    hparams = hparams.reindex(config_ids)
    total = int(runs["total_steps"].max()) if "total_steps" in runs.columns and not runs.empty else int(steps[-1])
    return StoreArrays(optimizer=str(optimizer), tasks=[str(x) for x in task_names],
                       families=[str(fam[x]) for x in task_names], config_ids=config_ids, replicas=replicas,
                       steps=steps, splits=splits, losses=losses, seconds=seconds, hparams=hparams, runs=runs,
                       curves=curves, total_steps=total)


def hparams_json(hparams: pd.DataFrame) -> list[dict]:
    """The hparams table as JSON-ready dicts (numpy scalars made plain)."""
    return json.loads(hparams.reset_index().to_json(orient="records"))
