"""CURVES in W&B (``logger=wandb``): one run per shard (docs/design.md §Dashboards).

The run (job type CURVES, grouped with the other shards of a multirun) holds

* config: the flat composed config and the typed collection spec (``collection.<field>``);
* history: per task of the shard, in collection order, the progress (tasks, runs and
  config-steps done) and throughput (config-steps/s from the runs' recorded seconds);
* ``curves/tasks``: a table per task: family, configs, replicas, runs, diverged fraction,
  best loss per split (min over configs and steps of the finite values), median loss at step 0,
  seconds;
* ``curves/curves``: the curves of each task as a long table (task, config_id, replica, step,
  the four splits), at most ``max_configs`` configs per task (evenly spaced config ids) and
  ``max_rows`` rows in all; ``curves/plot/<task>``: a line plot per config of the train loss
  for the first ``max_plots`` tasks;
* summary: the collection's summary numbers (``curves_summary.json``);
* artifact ``curve_store_manifest``: the store's ``manifest.json`` (with this shard's
  ``config*.yaml`` and ``curves_summary*.json``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taskset_lab.pipelines import dashboards as dash
from taskset_lab.tasks.base import SPLITS

MAX_CONFIGS = 16
MAX_ROWS = 50_000
MAX_PLOTS = 20


def collection_config(cfg: Any, spec: Any, n_tasks: int) -> dict[str, Any]:
    """The run config: the flat composed config plus ``collection.<field>`` from the spec."""
    config = dash.flat_config(cfg)
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        config[f"collection.{field.name}"] = value if dash.is_scalar(value) else str(value)
    config["collection.tasks"] = n_tasks
    return config


def shard_frames(store: Path, summary: dict[str, Any], task_names: list[str], items: list[Any]
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves rows of this shard's work items (read back from the store)."""
    from taskset_lab.curves.store import read_curves, read_runs

    mine = {(it.task, cid, it.replica) for it in items for cid in it.config_ids}
    tasks = sorted({it.task for it in items})
    runs = read_runs(store, tasks=tasks, optimizers=[summary["optimizer"]])
    curves = read_curves(store, tasks=tasks, optimizers=[summary["optimizer"]])

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        keys = zip(frame["task"], frame["config_id"].astype(int), frame["replica"].astype(int))
        return frame[[k in mine for k in keys]]

    order = {name: i for i, name in enumerate(task_names)}
    runs = keep(runs).assign(_order=lambda f: f["task"].map(order)).sort_values(["_order", "config_id", "replica"])
    return runs.drop(columns="_order"), keep(curves)


def task_table(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per task: family, configs, replicas, runs, diverged fraction, best loss per split,
    median loss at step 0, seconds (in collection order)."""
    rows = []
    for task, part in runs.groupby("task", sort=False):
        cur = curves[curves["task"] == task]
        row: dict[str, Any] = {"task": task, "family": str(part["task_family"].iloc[0]),
                               "configs": int(part["config_id"].nunique()),
                               "replicas": int(part["replica"].nunique()), "runs": int(len(part)),
                               "diverged_fraction": float((part["status"] == "diverged").mean())}
        for s in SPLITS:
            values = cur[s].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            row[f"best_{s}"] = float(finite.min()) if finite.size else math.nan
        first = cur[cur["step"] == cur["step"].min()]["train"].to_numpy(dtype=float) if len(cur) else np.array([])
        row["initial_train"] = float(np.nanmedian(first)) if np.isfinite(first).any() else math.nan
        row["seconds"] = float(part["seconds"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def sampled_configs(config_ids: np.ndarray, at_most: int) -> np.ndarray:
    """At most ``at_most`` of the sorted unique ``config_ids``, evenly spaced (first and last kept)."""
    ids = np.unique(config_ids)
    if len(ids) <= at_most:
        return ids
    return ids[np.unique(np.linspace(0, len(ids) - 1, at_most).round().astype(int))]


def sampled_curves(curves: pd.DataFrame, max_configs: int | None = None, max_rows: int | None = None) -> pd.DataFrame:
    """The long curves table, sampled: per task at most ``max_configs`` configs (default
    :data:`MAX_CONFIGS`; fewer when the table would pass ``max_rows`` rows, default :data:`MAX_ROWS`)."""
    max_configs = MAX_CONFIGS if max_configs is None else max_configs
    max_rows = MAX_ROWS if max_rows is None else max_rows
    if curves.empty:
        return pd.DataFrame(columns=["task", "config_id", "replica", "step", *SPLITS])
    per_config = curves.groupby(["task", "config_id"]).size().max()
    tasks = curves["task"].nunique()
    at_most = max(1, min(max_configs, max_rows // max(1, per_config * tasks)))
    parts = []
    for task, part in curves.groupby("task", sort=False):
        keep = sampled_configs(part["config_id"].to_numpy(), at_most)
        parts.append(part[part["config_id"].isin(keep)])
    out = pd.concat(parts)[["task", "config_id", "replica", "step", *SPLITS]]
    return out.sort_values(["task", "config_id", "replica", "step"]).reset_index(drop=True)


def progress_rows(runs: pd.DataFrame, total_steps: int) -> list[dict[str, float]]:
    """Per task in collection order: tasks, runs and config-steps done so far, seconds and
    config-steps/s (from the runs' recorded seconds)."""
    rows, done_runs, seconds = [], 0, 0.0
    for i, (_, part) in enumerate(runs.groupby("task", sort=False)):
        done_runs += len(part)
        seconds += float(part["seconds"].sum())
        steps = done_runs * total_steps
        rows.append({"progress/tasks_done": i + 1, "progress/runs_done": done_runs,
                     "progress/config_steps": steps, "progress/seconds": seconds,
                     "progress/config_steps_per_s": steps / seconds if seconds > 0 else math.nan,
                     "progress/task_diverged_fraction": float((part["status"] == "diverged").mean())})
    return rows


def log_collection(run: Any, store: Path, summary: dict[str, Any], task_names: list[str], items: list[Any],
                   total_steps: int, extra_files: list[Path]) -> None:
    """Everything the module docstring lists, onto ``run``; each failure one warning line."""
    if run is None:
        return
    try:
        runs, curves = shard_frames(store, summary, task_names, items)
        for row in progress_rows(runs, total_steps):
            run.log(row)
        dash.log_table(run, "curves/tasks", task_table(runs, curves))
        sampled = sampled_curves(curves)
        dash.log_table(run, "curves/curves", sampled)
        for task in list(dict.fromkeys(sampled["task"]))[:MAX_PLOTS]:
            part = sampled[(sampled["task"] == task) & (sampled["replica"] == sampled["replica"].min())]
            dash.line_plot(run, f"curves/plot/{task}", part, x="step", y="train", series="config_id",
                           title=f"{task}: train loss per config")
    except Exception as exc:  # noqa: BLE001 - the store is written already; W&B never loses it
        dash.warn_failed("logging the collection", exc)
    dash.set_summary(run, {f"curves/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
    from taskset_lab.curves.store import MANIFEST

    dash.log_artifact(run, f"manifest-{summary['optimizer']}-{store.name}", "curve_store_manifest",
                      [store / MANIFEST, *extra_files])
