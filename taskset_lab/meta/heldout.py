"""The held-out evaluation of a learned optimizer: against Adam at lr 1e-3 and against
learning-rate-tuned Adam, at given horizons, through :func:`taskset_lab.evaluate.evaluate_optimizer`.

Per (task, horizon): the learned optimizer and every Adam learning rate are trained for the
same seeds; ``ours_final`` and ``adam1e-3_final`` are the seed-mean training losses at the
last evaluation (a diverged run counts as +∞), ``win_vs_adam1e-3`` whether ours is lower,
``tuned_adam_final`` the best seed-mean final training loss over the grid, and ``speedup``
the median over seeds of learned_optimization's speedup over tuned Adam (< 1: slower than
tuned Adam, 0: never reached). Per (group, horizon) the summary gives the win rate against
Adam-1e-3, the win rate against tuned Adam and the IQM speedup with its 95% stratified-bootstrap
interval.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from taskset_lab.evaluate.score import adam_baseline, evaluate_optimizer
from taskset_lab.optim.learned import LearnedCheckpoint, LearnedOptimizer
from taskset_lab.tasks.base import Task

#: Adam's learning rates for the tuned baseline here (learned_optimization's grid between 1e-4 and 3e-2)
HELDOUT_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def _final(curves: np.ndarray) -> np.ndarray:
    """Seed-mean final training loss per learning rate (NaN/diverged as +∞): ``[lrs]``."""
    last = np.where(np.isfinite(curves[..., -1]), curves[..., -1], np.inf)
    return last.mean(axis=-1)


def heldout_evaluation(checkpoint: LearnedCheckpoint, groups: Mapping[str, Sequence[Task]], horizons: Sequence[int],
                       evals_per_run: int = 10, seeds: Sequence[int] = (0, 1), lrs: Sequence[float] = HELDOUT_LRS,
                       eval_batches: int = 2, reps: int = 1000,
                       progress: Any = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per (group, task, horizon) and one summary per (group, horizon); see the module
    docstring. ``progress`` (optional) is called with a line per finished task."""
    if 1e-3 not in [float(x) for x in lrs]:
        raise ValueError("the learning-rate grid must hold 1e-3 (the Adam-1e-3 reference)")
    rows, summaries = [], []
    factory = lambda ps: LearnedOptimizer(ps, checkpoint=checkpoint)  # noqa: E731
    for horizon in horizons:
        eval_every = max(1, int(horizon) // int(evals_per_run))
        for group, tasks in groups.items():
            per_seed, baselines = [], {}
            for task in tasks:
                base = adam_baseline(task, int(horizon), eval_every, tuple(lrs), tuple(seeds), eval_batches,
                                     torch.float32)
                baselines[task.name] = base
                frame, _ = evaluate_optimizer(factory, [task], int(horizon), eval_every, seeds=tuple(seeds),
                                              lrs=tuple(lrs), baselines=baselines, eval_batches=eval_batches, reps=10)
                per_seed.append(frame)
                finals = _final(base.curves["train"])
                i = [float(x) for x in lrs].index(1e-3)
                ours = float(np.where(frame["diverged"] | ~np.isfinite(frame["final_train"]), np.inf,
                                      frame["final_train"]).mean())
                row = {"group": group, "task": task.name, "horizon": int(horizon), "ours_final": ours,
                       "adam1e-3_final": float(finals[i]), "tuned_adam_final": float(finals.min()),
                       "tuned_adam_lr": float(lrs[int(np.argmin(finals))]),
                       "win_vs_adam1e-3": bool(ours < finals[i]), "win_vs_tuned_adam": bool(ours < finals.min()),
                       "speedup": float(frame["speedup"].median()), "diverged_seeds": int(frame["diverged"].sum())}
                rows.append(row)
                if progress is not None:
                    progress(f"held-out {group} T={horizon} {task.name}: ours {ours:.4g}, Adam-1e-3 "
                             f"{finals[i]:.4g}, tuned Adam {finals.min():.4g} (lr {row['tuned_adam_lr']:g})")
            summaries.append(_summary(group, int(horizon), pd.concat(per_seed), [r for r in rows if r["group"] == group
                                                                                and r["horizon"] == horizon], reps))
    return pd.DataFrame(rows), summaries


def _summary(group: str, horizon: int, frame: pd.DataFrame, rows: list[dict[str, Any]], reps: int) -> dict[str, Any]:
    from taskset_lab.evaluate.metrics import interval_estimates

    speedups = frame.pivot(index="task", columns="seed", values="speedup").to_numpy(dtype=float)
    iqm = interval_estimates(np.nan_to_num(speedups, nan=0.0), reps=reps)["iqm"]
    return {"group": group, "horizon": horizon, "tasks": len(rows),
            "win_rate_vs_adam1e-3": float(np.mean([r["win_vs_adam1e-3"] for r in rows])),
            "win_rate_vs_tuned_adam": float(np.mean([r["win_vs_tuned_adam"] for r in rows])),
            "iqm_speedup": iqm[0], "iqm_speedup_ci": [iqm[1], iqm[2]],
            "median_ratio_to_tuned": float(np.median([r["ours_final"] / r["tuned_adam_final"]
                                                      if r["tuned_adam_final"] > 0 else math.nan for r in rows]))}


__all__ = ["HELDOUT_LRS", "heldout_evaluation"]
