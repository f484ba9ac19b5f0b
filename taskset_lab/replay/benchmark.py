"""Replaying strategies on held-out tasks: HPARAM_LIST's folds, several seeds, anytime curves.

For every task, strategy and seed one replay (:func:`taskset_lab.replay.simulate.run_replay`)
gives the anytime value (:func:`~taskset_lab.replay.simulate.anytime`) on a grid of budgets.
The learned list is learned per fold on the training tasks' full-fidelity select values
(:func:`taskset_lab.hparam_list.greedy.learn_greedy_list`, the whole ordering of the C
configs) and replayed on the fold's held-out tasks; the folds are HPARAM_LIST's
(:func:`~taskset_lab.hparam_list.evaluate.cv_folds` with the same seed, and
:func:`~taskset_lab.hparam_list.evaluate.lofo_folds`). Strategies that do not use the
training tasks are replayed once per task and averaged over each fold's held-out tasks, as
HPARAM_LIST does.

Budgets are in full-trial units: budget ``b`` is ``b * T`` step units of the virtual clock
(``T`` the steps of a full run). ``value`` at budget ``b`` is the mean over held-out tasks
(and seeds) of the anytime normalized report loss; ``summary`` is its mean/std/min/max over
folds. The ``random_exact`` rows are HPARAM_LIST's exact random-search expectation at
integer budgets, the yardstick the replayed ``random`` rows must match.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import reduce
from typing import Sequence

import numpy as np
import pandas as pd

from taskset_lab.hparam_list.baselines import ConfigSpace, random_search_expectation
from taskset_lab.hparam_list.evaluate import cv_folds, lofo_folds, summarize
from taskset_lab.hparam_list.greedy import learn_greedy_list
from taskset_lab.replay.fidelity import FidelityValues
from taskset_lab.replay.simulate import anytime, recorded_configs, run_replay
from taskset_lab.replay.strategies import LIST_STRATEGIES, STRATEGIES, MultiFidelity, scheduler_factory

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["scheme", "fold", "method", "budget", "value", "n_tasks", "held_out_family"]
CLOCKS = ("steps", "seconds")


@dataclass
class ReplaySettings:
    """What a replay benchmark runs (all plain values; see the module docstring)."""

    strategies: Sequence[str] = ("random", "list", "asha", "list_asha")
    seeds: int = 3
    budget: float = 10.0
    budgets: Sequence[float] = (1, 3, 10)
    clock: str = "steps"
    n_workers: int = 1
    folds: int = 5
    seed: int = 0
    leave_one_family_out: bool = True
    grace_period: int | None = None
    reduction_factor: float = 3.0
    brackets: int = 3
    list_asha_entries: int = 10

    def problems(self, total_steps: int | None = None) -> list[tuple[str, str]]:
        """``(field, problem)`` for every invalid setting (empty when all are fine)."""
        out = []
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            out.append(("strategies", f"unknown strategies {unknown or list(self.strategies)}; known: "
                                      f"{', '.join(STRATEGIES)}"))
        if not (isinstance(self.budget, (int, float)) and math.isfinite(self.budget) and self.budget >= 1):
            out.append(("budget", f"must be at least 1 (full trials' worth of training), got {self.budget!r}"))
        bad = [b for b in self.budgets if not (isinstance(b, (int, float)) and 0 < b <= float(self.budget))]
        if bad or not self.budgets:
            out.append(("budgets", f"must be budgets in (0, budget={self.budget}] full trials, "
                                   f"got {list(self.budgets)}"))
        if self.clock not in CLOCKS:
            out.append(("clock", f"must be one of {CLOCKS}, got {self.clock!r}"))
        for name in ("seeds", "n_workers", "brackets", "list_asha_entries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                out.append((name, f"must be a positive integer, got {value!r}"))
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            out.append(("folds", f"must be an integer >= 2, got {self.folds!r}"))
        if not (isinstance(self.reduction_factor, (int, float)) and self.reduction_factor > 1):
            out.append(("reduction_factor", f"must be > 1, got {self.reduction_factor!r}"))
        if self.grace_period is not None and (not isinstance(self.grace_period, int) or self.grace_period < 1
                                              or (total_steps is not None and self.grace_period > total_steps)):
            out.append(("grace_period", f"must be a step in [1, {total_steps or 'total_steps'}], got "
                                        f"{self.grace_period!r}"))
        return out


@dataclass
class ReplayResult:
    """Tidy results: per fold (``curves``), their summary over folds, the table at ``budgets``,
    each task's curves (mean over seeds) and the list of every fold."""

    curves: pd.DataFrame
    summary: pd.DataFrame
    table: pd.DataFrame
    task_curves: pd.DataFrame
    lists: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    grid: np.ndarray = field(default_factory=lambda: np.empty(0))


def task_costs(fv: FidelityValues, clock: str, seconds: np.ndarray | None, total_steps: int) -> np.ndarray:
    """``[T, C, F]`` time units from a trial's start to each recorded step (module doc of simulate)."""
    t, c, f = fv.select.shape
    steps = np.broadcast_to(fv.steps.astype(float)[None, None, :], (t, c, f))
    if clock == "steps":
        return steps.copy()
    if seconds is None or not np.isfinite(seconds).all() or (np.asarray(seconds) <= 0).any():
        raise ValueError("clock=seconds needs the measured seconds of every run (the store lacks some)")
    sec = np.asarray(seconds, dtype=float)  # [T, C]
    per_step = sec / float(total_steps)
    scale = float(total_steps) / sec.mean(axis=1, keepdims=True)  # an average full run costs T units
    return steps * (per_step * scale)[:, :, None]


def _grid(costs: np.ndarray, horizon: float) -> np.ndarray:
    """Time points to sample the anytime curves at: multiples of the steps' gcd up to ``horizon``."""
    steps = np.unique(np.round(costs[0, 0]).astype(int))
    g = reduce(math.gcd, [int(s) for s in steps if s > 0]) or 1
    return np.arange(g, horizon + 1e-9, g, dtype=float)


def replay_benchmark(fv: FidelityValues, hparams: pd.DataFrame, total_steps: int, settings: ReplaySettings,
                     seconds: np.ndarray | None = None, progress: bool = False) -> ReplayResult:
    """Run every strategy of ``settings`` on every task of ``fv`` (module docstring)."""
    problems = settings.problems(total_steps)
    if problems:
        raise ValueError("; ".join(f"{k}: {v}" for k, v in problems))
    t, c, _ = fv.select.shape
    space = ConfigSpace(hparams.loc[fv.config_ids])
    costs = task_costs(fv, settings.clock, seconds, total_steps)
    unit = float(total_steps)
    horizon = float(settings.budget) * unit
    grid = _grid(costs, horizon)
    grace = int(settings.grace_period or fv.steps[0])
    mf = MultiFidelity(max_t=int(fv.steps[-1]), grace_period=grace, reduction_factor=float(settings.reduction_factor),
                       brackets=int(settings.brackets))
    blackboxes = [recorded_configs(space, fv.select[i], fv.report[i], fv.steps, costs[i]) for i in range(t)]
    sel_full, rep_full = fv.select[..., -1], fv.report[..., -1]

    cache: dict[tuple, np.ndarray] = {}

    def curve(task: int, name: str, hlist: tuple[int, ...] = ()) -> np.ndarray:
        """Mean over seeds of the anytime curve of ``name`` on ``task`` at the grid."""
        key = (task, name, hlist)
        if key not in cache:
            runs = []
            for s in range(int(settings.seeds)):
                seed = int(settings.seed) * 1000 + s
                make = scheduler_factory(name, space, blackboxes[task].configuration_space, seed * 100_003 + task,
                                         mf, hparam_list=hlist, list_asha_entries=settings.list_asha_entries)
                rep = run_replay(blackboxes[task], make, horizon, n_workers=settings.n_workers, seed=seed)
                runs.append(anytime(rep.observations, grid))
            cache[key] = np.mean(runs, axis=0)
            if progress:
                log.info("replayed %s on %s (%d seeds)", name, fv.tasks[task], settings.seeds)
        return cache[key]

    splits = [("cv", i, held, None) for i, held in enumerate(cv_folds(t, settings.folds, settings.seed))]
    if settings.leave_one_family_out:
        splits += [("lofo", i, held, fam) for i, (fam, held) in enumerate(lofo_folds(fv.families))]
    k_exact = np.arange(1, min(c, int(math.floor(settings.budget))) + 1)
    exact = random_search_expectation(sel_full, k_exact, report=rep_full)  # [T, K]
    rows, task_rows = [], []
    lists: dict[tuple[str, int], list[int]] = {}
    budgets_grid = grid / unit
    for scheme, fold, held, fam in splits:
        train = np.setdiff1d(np.arange(t), held)
        hlist = tuple(learn_greedy_list(sel_full[train], c).indices)
        lists[(scheme, fold)] = list(hlist)
        for name in settings.strategies:
            per_task = np.stack([curve(int(i), name, hlist if name in LIST_STRATEGIES else ()) for i in held])
            mean = per_task.mean(axis=0)
            rows += [{"scheme": scheme, "fold": fold, "method": name, "budget": float(b), "value": float(v),
                      "n_tasks": int(held.size), "held_out_family": fam} for b, v in zip(budgets_grid, mean)]
            for i, cv in zip(held, per_task):
                task_rows += [{"scheme": scheme, "fold": fold, "task": fv.tasks[int(i)], "method": name,
                               "budget": float(b), "value": float(v)} for b, v in zip(budgets_grid, cv)]
        rows += [{"scheme": scheme, "fold": fold, "method": "random_exact", "budget": float(k), "value": float(v),
                  "n_tasks": int(held.size), "held_out_family": fam}
                 for k, v in zip(k_exact, exact[held].mean(axis=0))]
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    summary = summarize(curves.rename(columns={"budget": "k"})).rename(columns={"k": "budget"})
    table = budget_table(summary, settings.budgets)
    return ReplayResult(curves=curves, summary=summary, table=table, task_curves=pd.DataFrame(task_rows),
                        lists=lists, grid=budgets_grid)


def budget_table(summary: pd.DataFrame, budgets: Sequence[float]) -> pd.DataFrame:
    """Mean (over folds) value of each (scheme, method) at each budget: the anytime value at the
    last grid point at or before the budget (``random_exact``: at that many whole trials)."""
    out = []
    for (scheme, method), part in summary.groupby(["scheme", "method"], sort=False):
        part = part.sort_values("budget")
        b = part["budget"].to_numpy()
        for budget in budgets:
            idx = np.searchsorted(b, float(budget) + 1e-9, side="right") - 1
            value = float(part["mean"].to_numpy()[idx]) if idx >= 0 else float("nan")
            std = float(part["std"].to_numpy()[idx]) if idx >= 0 else float("nan")
            out.append({"scheme": scheme, "method": method, "budget": float(budget), "mean": value, "std": std})
    return pd.DataFrame(out, columns=["scheme", "method", "budget", "mean", "std"])


def format_table(table: pd.DataFrame) -> str:
    """The table at fixed budgets as text: one block per scheme, a row per method."""
    lines = []
    for scheme, part in table.groupby("scheme", sort=False):
        budgets = sorted(part["budget"].unique())
        lines.append(f"{scheme}: mean normalized test loss of the incumbent (lower is better) at a budget of "
                     f"N full trials' training")
        head = f"{'method':<14}" + "".join(f"{'N=' + format(b, 'g'):>16}" for b in budgets)
        lines += [head, "-" * len(head)]
        for method, rows in part.groupby("method", sort=False):
            vals = rows.set_index("budget")
            cells = []
            for b in budgets:
                m, s = vals.loc[b, "mean"], vals.loc[b, "std"]
                cells.append(f"{'-':>16}" if not np.isfinite(m) else f"{m:>9.3f} ± {s:<4.2f}")
            lines.append(f"{method:<14}" + "".join(f"{x:>16}" for x in cells))
        lines.append("")
    return "\n".join(lines).rstrip()
