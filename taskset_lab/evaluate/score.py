"""Score one optimizer on tasks against learning-rate-tuned Adam: the Python entry for one's
own loop (the EVALUATE pipeline builds on it).

Per task, the baseline is TaskSet's adam1p (TF Adam, β1 = 0.9, β2 = 0.999, ε = 1e-8) at each
learning rate of a log-spaced grid, for several seeds (replicas), trained together on the
population engine; its training curves give the task's :class:`AdamEnvelope` and the
target (tuned Adam's best seed-mean training loss within the budget). The optimizer under
test runs one config at a time (``engine.train_single``: any ``torch.optim`` factory, or a
family and its hyperparameters) for the same seeds, and each run is scored:

* ``speedup``: the envelope's speedup at the last step, of the run's training curve smoothed
  as the envelope's are (EMA 0.95); a diverged run is a miss and scores 0, never a good score;
* ``steps_to_target``: the first evaluation step whose training loss reaches the target
  (∞ for a miss);
* ``final_train`` / ``final_test``: the losses at the last evaluation; ``best_test``: the test
  loss at the evaluation with the best ``valid_inner`` loss (the select split);
* ``diverged``: whether the run diverged (the engine's rule).

:func:`evaluate_optimizer` returns one row per (task, seed) and the aggregates of the speedups
(mean, median, IQM with 95% stratified-bootstrap intervals, the fraction of tasks where the
median speedup beats tuned Adam) and AlgoPerf's profile score of steps to target against
tuned Adam.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from taskset_lab.engine.driver import train_population
from taskset_lab.engine.single import OptimizerSpec, train_single
from taskset_lab.evaluate.metrics import AdamEnvelope, ema, interval_estimates, performance_profiles, profile_score
from taskset_lab.evaluate.metrics import steps_to_target as first_step_at
from taskset_lab.optim.hparam_list import LOPT_BASELINE_LRS
from taskset_lab.tasks.base import Task

#: the baseline's learning rates: learned_optimization's (1e-7, 3e-7, 1e-6, …, 0.3, 1), the
#: EVALUATE pipeline's built-in ``adam_lr_grid``
ADAM_LRS: tuple[float, ...] = LOPT_BASELINE_LRS
#: the baseline family (TF Adam with only the learning rate free)
BASELINE_FAMILY = "adam1p"


@dataclass(frozen=True)
class AdamBaseline:
    """Learning-rate-tuned Adam on one task: ``curves[split]`` is ``[learning rates, seeds,
    evaluations]`` at ``steps``; ``envelope`` and ``target`` come from the training curves."""

    task: str
    steps: np.ndarray
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    curves: Mapping[str, np.ndarray]
    envelope: AdamEnvelope
    target: float


def adam_baseline(task: Task, total_steps: int, eval_every: int, lrs: Sequence[float] = ADAM_LRS,
                  seeds: Sequence[int] = (0, 1, 2), eval_batches: int = 4,
                  dtype: torch.dtype = torch.float32) -> AdamBaseline:
    """Adam at every learning rate of ``lrs`` for every seed of ``seeds`` on ``task`` (one
    population per seed, the engine's eager step)."""
    if not lrs or not seeds:
        raise ValueError("the Adam baseline needs at least one learning rate and one seed")
    configs = [{"lr": float(lr)} for lr in lrs]
    runs = [train_population(task, BASELINE_FAMILY, configs, total_steps, eval_every, eval_batches=eval_batches,
                             replica=int(seed), dtype=dtype, compile=False) for seed in seeds]
    curves = {split: np.stack([r.losses[split].double().numpy() for r in runs], axis=1)
              for split in runs[0].losses}  # [lrs, seeds, evaluations]
    return baseline_from_curves(task.name, np.asarray(runs[0].steps, dtype=float), lrs, seeds, curves)


def baseline_from_curves(task: str, steps: np.ndarray, lrs: Sequence[float], seeds: Sequence[int],
                         curves: Mapping[str, np.ndarray]) -> AdamBaseline:
    """The baseline of ``task`` from Adam's curves (``curves[split]``: ``[learning rates, seeds,
    evaluations]`` at ``steps``), computed here or read from a baseline store."""
    baseline = AdamBaseline(task, np.asarray(steps, dtype=float), tuple(float(lr) for lr in lrs),
                            tuple(int(s) for s in seeds), dict(curves),
                            AdamEnvelope.from_curves(steps, curves["train"]), math.nan)
    target = float(best_mean_curve(baseline).min())
    if not math.isfinite(target):
        raise ValueError(f"{task}: every learning rate of the Adam baseline diverged: no target")
    return dataclasses.replace(baseline, target=target)


def score_run(losses: Mapping[str, np.ndarray], steps: np.ndarray, diverged: bool, baseline: AdamBaseline
              ) -> dict[str, Any]:
    """The scores of one run's curves (``losses[split]`` over ``steps``) against ``baseline``."""
    train, test, select = (np.asarray(losses[s], dtype=float) for s in ("train", "test", "valid_inner"))
    finite = np.isfinite(select)
    best_test = float(test[np.flatnonzero(finite)[np.argmin(select[finite])]]) if finite.any() else math.nan
    speedup = 0.0 if diverged or not np.isfinite(train[-1]) else \
        float(baseline.envelope.speedup(ema(train)[-1], float(steps[-1])))
    return {"final_train": float(train[-1]), "final_test": float(test[-1]), "best_test": best_test,
            "speedup": speedup, "steps_to_target": first_step_at(steps, train, baseline.target),
            "diverged": bool(diverged)}


def score_optimizer(task: Task, optimizer: OptimizerSpec, baseline: AdamBaseline, total_steps: int,
                    eval_every: int, eval_batches: int = 4, dtype: torch.dtype = torch.float32
                    ) -> list[dict[str, Any]]:
    """One scored row per seed of ``baseline``: ``optimizer`` trained one config at a time."""
    rows = []
    for seed in baseline.seeds:
        result = train_single(task, optimizer, total_steps, eval_every, eval_batches=eval_batches, replica=seed,
                              dtype=dtype)
        if not np.array_equal(np.asarray(result.steps, dtype=float), baseline.steps):
            raise ValueError(f"{task.name}: the run's evaluation steps differ from the baseline's "
                             "(another total_steps or eval_every)")
        losses = {split: v[0].double().numpy() for split, v in result.losses.items()}
        rows.append({"task": task.name, "seed": seed,
                     **score_run(losses, baseline.steps, bool(result.diverged[0]), baseline)})
    return rows


def evaluate_optimizer(optimizer: OptimizerSpec, tasks: Sequence[Task], total_steps: int, eval_every: int,
                       seeds: Sequence[int] = (0, 1, 2), lrs: Sequence[float] = ADAM_LRS,
                       baselines: Mapping[str, AdamBaseline] | None = None, eval_batches: int = 4,
                       dtype: torch.dtype = torch.float32, reps: int = 2000
                       ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score ``optimizer`` on ``tasks`` against tuned Adam (computed unless ``baselines`` holds
    the task's). Returns the per-(task, seed) frame and the aggregates."""
    if not tasks:
        raise ValueError("evaluate_optimizer needs at least one task")
    baselines = dict(baselines or {})
    rows = []
    for task in tasks:
        if task.name not in baselines:
            baselines[task.name] = adam_baseline(task, total_steps, eval_every, lrs, seeds, eval_batches, dtype)
        rows += score_optimizer(task, optimizer, baselines[task.name], total_steps, eval_every, eval_batches, dtype)
    frame = pd.DataFrame(rows)
    return frame, aggregate(frame, baselines, reps=reps)


def best_mean_curve(baseline: AdamBaseline) -> np.ndarray:
    """The best seed-mean training loss over learning rates at each evaluation (NaN curves left out)."""
    mean = baseline.curves["train"].mean(axis=1)
    return np.where(np.isnan(mean), np.inf, mean).min(axis=0)


def aggregate(frame: pd.DataFrame, baselines: Mapping[str, AdamBaseline], reps: int = 2000) -> dict[str, Any]:
    """The aggregates of a per-(task, seed) frame (see the module docstring)."""
    speedups = frame.pivot(index="task", columns="seed", values="speedup").to_numpy(dtype=float)
    per_task = frame.groupby("task", sort=False)
    median_speedup = per_task["speedup"].median()
    ours = per_task["steps_to_target"].median().to_numpy(dtype=float)
    # tuned Adam reaches its own target at the first step its best seed-mean curve does
    adam = np.array([first_step_at(baselines[t].steps, best_mean_curve(baselines[t]), baselines[t].target)
                     for t in median_speedup.index])
    times = np.where(np.vstack([ours, adam]) == 0, 1.0, np.vstack([ours, adam]))  # reached at step 0: one step
    taus, rho = performance_profiles(times)
    return {"tasks": int(speedups.shape[0]), "seeds": int(speedups.shape[1]),
            "speedup": interval_estimates(speedups, reps=reps),
            "win_rate_vs_tuned_adam": float((median_speedup > 1.0).mean()),
            "diverged_fraction": float(frame["diverged"].mean()),
            "profile_score": float(profile_score(taus, rho)[0]),
            "profile_score_tuned_adam": float(profile_score(taus, rho)[1])}
