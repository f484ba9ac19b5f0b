"""How big a collection must be: the list's advantage as a function of configs and horizon.

The same held-out evaluation as :func:`taskset_lab.hparam_list.evaluate.evaluate_matrices`
(cross-validation over tasks, the same folds), run again on a *restricted* collection:

* ``configs = N``: only configs ``0..N-1`` of the collection (nadamw_grid's first N draws),
  as if only those had been collected;
* ``horizon = H``: only the curves' evaluations at steps ``<= H``, as if the runs had been
  stopped at step H (the learning-rate schedules are still those of the full horizon: the
  truncated runs are the full runs' beginnings, not shorter runs).

Each restriction is normalized again from its own curves (the best loss of a task is the best
among the configs collected), then the list is learned and scored per fold. A row per
(horizon, configs, k): the list's and random search's held-out normalized loss after k trials,
and the random-search trials needed to match the list (``speedup_table``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from taskset_lab.hparam_list.evaluate import evaluate_matrices
from taskset_lab.hparam_list.normalize import REPORT, SELECT, loss_matrix, normalized_losses

SCALING_COLUMNS = ["horizon", "configs", "tasks", "k", "list", "random", "random_trials", "random_trials_label",
                   "speedup"]


def restrict_curves(curves: pd.DataFrame, runs: pd.DataFrame, configs: int | None = None,
                    horizon: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The curves and runs of configs ``0..configs-1`` with evaluations at steps ``<= horizon``
    (``None``: no restriction). A run that diverged after ``horizon`` is ``ok`` up to there."""
    c, r = curves, runs
    if configs is not None:
        c, r = c[c["config_id"] < int(configs)], r[r["config_id"] < int(configs)]
    if horizon is not None:
        c = c[c["step"] <= int(horizon)]
        if "diverged_step" in r.columns and "status" in r.columns:
            later = (r["status"] == "diverged") & (r["diverged_step"] > int(horizon))
            if later.any():
                r = r.copy()
                r.loc[later, ["status", "diverged_step"]] = ["ok", -1]
    return c, r


def scaling_table(curves: pd.DataFrame, runs: pd.DataFrame, optimizer: str,
                  configs: Sequence[int] = (32, 100, 300, 1000), horizons: Sequence[int | None] = (None,),
                  ks: Sequence[int] = (1, 3, 10), folds: int = 5, seed: int = 0,
                  select_split: str = "valid_inner", report_split: str = "test", reduce: str = "best",
                  cap: float = 1.5) -> pd.DataFrame:
    """The list vs random search on each restriction of the collection (module docstring).

    ``configs`` beyond the collection's size and ``ks`` beyond a restriction's configs are left
    out; ``horizons`` entries of ``None`` mean the full horizon (reported as its last step).
    """
    available = int(curves["config_id"].max()) + 1 if len(curves) else 0
    full_horizon = int(curves["step"].max()) if len(curves) else 0
    rows: list[dict] = []
    for horizon in horizons:
        h = full_horizon if horizon is None else min(int(horizon), full_horizon)
        for n in sorted({min(int(n), available) for n in configs}):
            c, r = restrict_curves(curves, runs, configs=n, horizon=h)
            norm = normalized_losses(c, r, select_split=select_split, report_split=report_split,
                                     reduce=reduce, cap=cap, optimizer=optimizer)
            _, _, sel = loss_matrix(norm, SELECT)
            _, _, rep = loss_matrix(norm, REPORT)
            use_ks = [int(k) for k in ks if int(k) <= n]
            if not use_ks:
                continue
            ev = evaluate_matrices(sel, rep, None, length=max(use_ks), folds=folds, seed=seed,
                                   leave_one_family_out=False, speedup_ks=use_ks)
            part = ev.summary[ev.summary["scheme"] == "cv"].set_index(["method", "k"])["mean"]
            sp = ev.speedup[ev.speedup["scheme"] == "cv"].set_index("k")  # from the same cv means
            for k in use_ks:
                rows.append({"horizon": h, "configs": n, "tasks": int(sel.shape[0]), "k": k,
                             "list": float(part[("list", k)]), "random": float(part[("random", k)]),
                             "random_trials": float(sp.loc[k, "random_trials"]),
                             "random_trials_label": str(sp.loc[k, "random_trials_label"]),
                             "speedup": float(sp.loc[k, "speedup"])})
    return pd.DataFrame(rows, columns=SCALING_COLUMNS)


def format_scaling(table: pd.DataFrame) -> str:
    """Random-search trials to match the list at k, one line per (horizon, configs)."""
    if not len(table):
        return "(no scaling rows)"
    ks = sorted(table["k"].unique())
    head = ["horizon", "configs"] + [f"list@{k}" for k in ks] + [f"rand≡list@{k}" for k in ks]
    body = []
    for (h, n), part in table.groupby(["horizon", "configs"], sort=True):
        p = part.set_index("k")
        body.append([str(h), str(n)]
                    + [f"{p.loc[k, 'list']:.4f}" if k in p.index else "-" for k in ks]
                    + [str(p.loc[k, "random_trials_label"]) if k in p.index else "-" for k in ks])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head, *body]]
    title = ("the list's advantage by collection size: held-out loss of list@k and the random-search "
             "trials that match it (cv folds)")
    return "\n".join([title, lines[0], "-" * len(lines[0]), *lines[1:]])


def scaling_settings(value: object) -> tuple[list[int], list[int | None]]:
    """``hparam_list.scaling`` as ``(configs, horizons)``; raises ValueError on a bad value."""
    if value is None:
        return [], []
    if not isinstance(value, Mapping):
        raise ValueError(f"scaling must be a mapping with configs and horizons, got {value!r}")
    configs = list(value.get("configs") or [])
    horizons = list(value.get("horizons") or [None])
    for n in configs:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"scaling.configs must be positive integers, got {n!r}")
    for h in horizons:
        if h is not None and (not isinstance(h, int) or isinstance(h, bool) or h < 1):
            raise ValueError(f"scaling.horizons must be positive integers or null (the full horizon), got {h!r}")
    return [int(n) for n in configs], [None if h is None else int(h) for h in horizons]
