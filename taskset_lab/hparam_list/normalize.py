"""Normalized losses: put every task on one scale before learning or evaluating a list.

For each task and each of two splits (the *select* split that picks configs, and the
*report* split whose loss is reported), a run's loss is mapped to

    value = (loss - best) / (init - best), clipped to [0, cap]

* ``init`` (1 on the new scale) is the loss at initialization: the value at each run's
  first recorded step (step 0), whose median over all configs and replicas of the task is
  taken (all configs start from the same initialization, so these agree up to data noise).
* ``best`` (0 on the new scale) is the lowest per-run reduced loss any non-diverged run of
  the task reached on that split.

Per-run reduction (``reduce``):

* ``"best"``: the select split is reduced to its minimum over the curve's evaluations; the
  report split is read **at the step where the select split was lowest** (earliest such
  step on ties). The select split picks the step (early stopping on validation), the report
  split reports it, so test data never chooses anything.
* ``"final"``: both splits at the run's last recorded step.

Edge cases, all defined here:

* A run is *diverged* when its ``runs`` record says ``status == "diverged"`` or when its
  curve holds NaN/inf on the select or report split (the curve store writes NaN after a
  divergence). With ``diverged="cap"`` (default) a diverged run gets ``cap`` on both splits;
  with ``diverged="keep"`` its finite part still counts (only sensible with ``reduce="best"``).
* Any NaN/inf that survives (e.g. a report value that is NaN at the chosen step) gets ``cap``.
* A task where every run diverged has no ``best``: every value is ``cap``.
* A degenerate task, where no run got below init (``init - best <= tol``, e.g. a constant
  loss): runs within ``tol`` of ``best`` get 0, all others get ``cap`` (no 0/0).
* Replicas of a config are averaged *after* normalizing and clipping, so a config with one
  diverged replica out of two gets ``(cap + v) / 2``.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pandas as pd

SELECT = "select"
REPORT = "report"
_RUN_KEYS = ["task", "config_id", "replica"]


def _rel_tol(scale: np.ndarray) -> np.ndarray:
    return 1e-9 * np.maximum(1.0, np.abs(scale))


def _normalize(values: np.ndarray, task_codes: np.ndarray, init: np.ndarray, best: np.ndarray,
               cap: float) -> np.ndarray:
    """Map per-run losses to the normalized scale (see the module docstring)."""
    init_r, best_r = init[task_codes], best[task_codes]
    denom = init_r - best_r
    degenerate = ~(denom > _rel_tol(np.where(np.isfinite(init_r), init_r, 0.0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (values - best_r) / np.where(degenerate, 1.0, denom)
    near_best = values - best_r <= _rel_tol(np.where(np.isfinite(best_r), best_r, 0.0))
    out = np.where(degenerate, np.where(near_best, 0.0, cap), out)
    out = np.where(np.isfinite(out), out, cap)
    return np.clip(out, 0.0, cap)


def normalized_losses(curves: pd.DataFrame, runs: pd.DataFrame | None = None,
                      select_split: str = "valid_inner", report_split: str = "test",
                      reduce: Literal["best", "final"] = "best", cap: float = 1.5,
                      diverged: Literal["cap", "keep"] = "cap",
                      optimizer: str | None = None) -> pd.DataFrame:
    """Normalized select/report losses per (task, config), replicas averaged.

    Returns a long DataFrame with columns ``task, task_family, config_id, split, value,
    diverged`` where ``split`` is ``"select"`` or ``"report"`` and ``diverged`` is the
    fraction of the config's replicas that diverged. The split names, reduction and cap are
    kept in ``df.attrs["normalization"]``. ``curves`` must hold one optimizer family, or
    ``optimizer`` names the one to use.
    """
    if reduce not in ("best", "final"):
        raise ValueError(f"reduce must be 'best' or 'final', got {reduce!r}")
    if diverged not in ("cap", "keep"):
        raise ValueError(f"diverged must be 'cap' or 'keep', got {diverged!r}")
    if not (np.isfinite(cap) and cap > 0):
        raise ValueError(f"cap must be a positive finite number, got {cap!r}")
    needed = ["task", "config_id", "replica", "step", select_split, report_split]
    missing = [c for c in needed if c not in curves.columns]
    if missing:
        raise ValueError(f"curves lack columns {missing}")
    if optimizer is not None and "optimizer" in curves.columns:
        curves = curves[curves["optimizer"] == optimizer]
    if "optimizer" in curves.columns and curves["optimizer"].nunique() > 1:
        raise ValueError(f"curves hold several optimizers {sorted(curves['optimizer'].unique())}; "
                         "pass optimizer=... to pick one")
    if curves.empty:
        raise ValueError("no curves to normalize")

    cols = list(dict.fromkeys(needed + (["task_family"] if "task_family" in curves.columns else [])))
    df = curves[cols].sort_values(_RUN_KEYS + ["step"], kind="stable").reset_index(drop=True)
    run_codes = df.groupby(_RUN_KEYS, sort=False).ngroup().to_numpy()
    n_runs = int(run_codes.max()) + 1
    step = df["step"].to_numpy()
    sel = df[select_split].to_numpy(dtype=float)
    rep = df[report_split].to_numpy(dtype=float)
    sel_ok, rep_ok = np.isfinite(sel), np.isfinite(rep)

    # rows are sorted by run then step: the first row of each run is its init
    first = np.r_[True, run_codes[1:] != run_codes[:-1]]
    last = np.r_[run_codes[1:] != run_codes[:-1], True]
    if reduce == "best":
        key = np.where(sel_ok, sel, np.inf)
        order = np.lexsort((step, key, run_codes))
        codes_sorted = run_codes[order]
        pick = order[np.r_[True, codes_sorted[1:] != codes_sorted[:-1]]]
    else:
        pick = np.flatnonzero(last)

    runs_df = df.loc[first, _RUN_KEYS + (["task_family"] if "task_family" in df.columns else [])]
    runs_df = runs_df.reset_index(drop=True)
    runs_df["init_select"], runs_df["init_report"] = sel[first], rep[first]
    runs_df["select"], runs_df["report"] = sel[pick], rep[pick]
    bad_rows = np.bincount(run_codes, weights=(~sel_ok | ~rep_ok).astype(float), minlength=n_runs)
    div = bad_rows > 0
    if runs is not None and "status" in runs.columns:
        flagged = runs["status"] == "diverged"
        if optimizer is not None and "optimizer" in runs.columns:
            flagged &= runs["optimizer"] == optimizer
        marks = runs.loc[flagged, _RUN_KEYS].drop_duplicates().assign(_flag=True)
        if not marks.empty:
            marks = marks.astype({"config_id": runs_df["config_id"].dtype, "replica": runs_df["replica"].dtype})
            hit = runs_df[_RUN_KEYS].merge(marks, on=_RUN_KEYS, how="left")["_flag"]
            div |= hit.fillna(False).to_numpy(dtype=bool)
    runs_df["diverged"] = div

    task_codes, task_names = pd.factorize(runs_df["task"], sort=True)
    out_cols = {}
    for split in (SELECT, REPORT):
        values = runs_df[split].to_numpy(dtype=float)
        if diverged == "cap":
            values = np.where(div, np.nan, values)
        init_all = runs_df[f"init_{split}"].to_numpy(dtype=float)
        init = pd.Series(np.where(np.isfinite(init_all), init_all, np.nan)).groupby(task_codes).median()
        best = pd.Series(np.where(np.isfinite(values), values, np.nan)).groupby(task_codes).min()
        init = init.reindex(range(len(task_names))).to_numpy()
        best = best.reindex(range(len(task_names))).to_numpy()
        out_cols[split] = _normalize(values, task_codes, init, best, cap)

    group_cols = ["task", "config_id"]
    per_run = runs_df[group_cols].copy()
    per_run[SELECT], per_run[REPORT] = out_cols[SELECT], out_cols[REPORT]
    per_run["diverged"] = div.astype(float)
    agg = per_run.groupby(group_cols, sort=True).mean().reset_index()
    if "task_family" in runs_df.columns:
        fam = runs_df.groupby("task", sort=True)["task_family"].first()
        agg["task_family"] = agg["task"].map(fam)
    else:
        agg["task_family"] = agg["task"]
    long = agg.melt(id_vars=["task", "task_family", "config_id", "diverged"], value_vars=[SELECT, REPORT],
                    var_name="split", value_name="value")
    long = long[["task", "task_family", "config_id", "split", "value", "diverged"]]
    long = long.assign(_order=(long["split"] == REPORT).astype(int))
    long = long.sort_values(["_order", "task", "config_id"], kind="stable").drop(columns="_order")
    long = long.reset_index(drop=True)
    long["config_id"] = long["config_id"].astype(int)
    long.attrs["normalization"] = normalization_info(select_split, report_split, reduce, cap)
    return long


def normalization_info(select_split: str, report_split: str, reduce: str, cap: float) -> dict:
    """The normalization settings as a JSON-ready dict (as written into ``hparam_list.json``)."""
    return {"select_split": select_split, "report_split": report_split, "reduce": reduce, "cap": float(cap)}


def loss_matrix(norm_df: pd.DataFrame, split: str = SELECT,
                fill: float | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(tasks, config_ids, matrix[T, C])`` of one split of :func:`normalized_losses`' output.

    Tasks and config ids are sorted. A (task, config) pair with no value is filled with
    ``fill`` (default: the cap recorded in ``norm_df.attrs``); without either, it is an error.
    """
    if split not in (SELECT, REPORT):
        raise ValueError(f"split must be {SELECT!r} or {REPORT!r}, got {split!r}")
    part = norm_df[norm_df["split"] == split]
    if part.empty:
        raise ValueError(f"no {split!r} rows in the normalized losses")
    wide = part.pivot_table(index="task", columns="config_id", values="value", aggfunc="mean")
    wide = wide.sort_index().sort_index(axis=1)
    matrix = wide.to_numpy(dtype=float)
    if np.isnan(matrix).any():
        if fill is None:
            fill = norm_df.attrs.get("normalization", {}).get("cap")
        if fill is None:
            raise ValueError(f"{int(np.isnan(matrix).sum())} (task, config) pairs have no value; pass fill=")
        matrix = np.where(np.isnan(matrix), float(fill), matrix)
    return [str(t) for t in wide.index], wide.columns.to_numpy(dtype=int), matrix


def task_families(norm_df: pd.DataFrame, tasks: list[str]) -> list[str]:
    """The family of each task in ``tasks`` (same order)."""
    fam = norm_df.drop_duplicates("task").set_index("task")["task_family"]
    return [str(fam[t]) for t in tasks]


def hparams_frame(runs: pd.DataFrame, optimizer: str | None = None) -> pd.DataFrame:
    """One row per config id (sorted index ``config_id``), one column per hparam, from the runs' JSON."""
    if optimizer is not None and "optimizer" in runs.columns:
        runs = runs[runs["optimizer"] == optimizer]
    if "optimizer" in runs.columns and runs["optimizer"].nunique() > 1:
        raise ValueError("runs hold several optimizers; pass optimizer=...")
    first = runs.drop_duplicates("config_id").sort_values("config_id")
    rows = [json.loads(h) if isinstance(h, str) else dict(h) for h in first["hparams"]]
    frame = pd.DataFrame(rows, index=pd.Index(first["config_id"].astype(int).to_numpy(), name="config_id"))
    return frame
