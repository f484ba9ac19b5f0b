"""HPARAM_LIST's input checks: nothing adjusted silently, nothing learned from no data.

* :func:`store_is_complete`, :func:`store_task_specs`: what a store's manifest promises and
  holds (the config side, refusing contradicting overrides, is
  :mod:`taskset_lab.pipelines.hparam_list_config`).
* :func:`check_store_optimizer` and :func:`check_curves`: a store of another optimizer, or
  one with no finite run, is refused; each task whose runs are all NaN is warned about in
  the log and in ``data_warnings.txt``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taskset_lab.errors import DataError

log = logging.getLogger(__name__)

WARNINGS_FILE = "data_warnings.txt"


def store_parts(store: Path, manifest: dict[str, Any]) -> tuple[set[str], set[str]] | None:
    """(the parts the store's manifest promises — tasks x config chunks x replicas —, those
    written), or None where the manifest does not name its tasks."""
    from taskset_lab.curves.store import list_parts, part_name

    names = [t.get("name") for t in manifest.get("tasks") or [] if isinstance(t, dict)]
    if not names or not all(names):
        return None
    chunks = -(-int(manifest["num_configs"]) // int(manifest["chunk_size"]))
    expected = {part_name(n, str(manifest["optimizer"]), c, r) for n in names for c in range(chunks)
                for r in range(int(manifest.get("replicas", 1)))}
    return expected, expected & set(list_parts(store))


def store_is_complete(store: str | Path, manifest: dict[str, Any] | None) -> bool:
    """Whether every part the store's manifest promises has been written."""
    parts = store_parts(Path(store), manifest) if manifest else None
    return parts is not None and parts[0] == parts[1]


def store_task_specs(manifest: dict[str, Any] | None) -> list[Any] | None:
    """The tasks a store was collected on, as task specs, from its manifest (None where the
    manifest does not record them in full)."""
    from taskset_lab.tasks.task_set import TaskSpec

    entries = (manifest or {}).get("tasks") or []
    if not entries or not all(isinstance(t, dict) and t.get("name") and t.get("family")
                              and isinstance(t.get("config"), (dict, type(None))) for t in entries):
        return None
    return [TaskSpec(str(t["name"]), str(t["family"]), t["config"]) for t in entries]


def check_store_optimizer(store: Path, optimizer: str) -> None:
    """A store holding only other optimizers' curves is refused, naming what it holds."""
    from taskset_lab.curves.store import list_parts, parse_part_name, read_manifest

    manifest = read_manifest(store) if store.is_dir() else None
    held = ({manifest["optimizer"]} if manifest and "optimizer" in manifest
            else {p[1] for p in map(parse_part_name, list_parts(store)) if p is not None})
    if held and optimizer not in held:
        raise DataError(f"curve store {store} holds curves of {', '.join(sorted(held))}, not {optimizer}; "
                        f"set search_space={sorted(held)[0]} or pass only curves_dir=")


def tasks_without_progress(curves: pd.DataFrame, split: str, rel_tol: float = 1e-3) -> list[str]:
    """Tasks on which no run beats initialization: the lowest finite ``split`` loss after the
    first step is not below the median first-step loss by ``rel_tol`` of its size."""
    if split not in curves.columns or curves.empty:
        return []
    stuck = []
    for task, part in curves.groupby("task", sort=True):
        first = part["step"].min()
        init = float(part.loc[part["step"] == first, split].median())
        later = part.loc[part["step"] > first, split].to_numpy(dtype=float)
        later = later[np.isfinite(later)]
        if math.isfinite(init) and (later.size == 0 or later.min() >= init - rel_tol * max(abs(init), 1e-12)):
            stuck.append(str(task))
    return stuck


def check_curves(curves: pd.DataFrame, runs: pd.DataFrame, store: Path, select_split: str, report_split: str,
                 output_dir: Path | None = None) -> list[str]:
    """Warn per task where every run diverged or is NaN from the start; refuse a store where
    that holds for every task (nothing to learn from).

    Returns the warnings (also logged, and written to ``output_dir/data_warnings.txt``).
    """
    if curves.empty:
        raise DataError(f"curve store {store} holds no curves for this optimizer")
    keys = ["task", "config_id", "replica"]
    splits = [s for s in dict.fromkeys((select_split, report_split)) if s in curves.columns]
    finite = np.isfinite(curves[splits].to_numpy(dtype=float)).all(axis=1)
    first = curves.assign(_finite=finite).sort_values("step", kind="stable").groupby(keys)["_finite"].first()
    ok = first
    if "status" in runs.columns and len(runs):
        healthy = runs.set_index(keys)["status"].ne("diverged")
        ok = first & healthy.reindex(first.index, fill_value=True)
    per_task = ok.groupby(level="task").any()
    warnings = [f"task {task}: every run diverged or is NaN from the start ({'/'.join(splits)}); every config "
                f"gets the cap there" for task, good in per_task.items() if not good]
    stuck = tasks_without_progress(curves, report_split)
    warnings += [f"task {task}: no run gets its {report_split} loss below the initial value; it is noise in "
                 f"every evaluation (an unlearnable task or too short a horizon)" for task in stuck
                 if per_task.get(task, True)]
    for w in warnings:
        log.warning(w)
    if not per_task.any():
        raise DataError(f"curve store {store}: every run of every task ({len(per_task)}) diverged or is NaN; "
                        f"nothing to learn a list from")
    if output_dir is not None:
        path = Path(output_dir) / WARNINGS_FILE
        if warnings:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(warnings) + "\n")
        elif path.exists():
            path.unlink()
    return warnings
