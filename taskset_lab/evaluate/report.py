"""Scoring EVALUATE's entries from their curves: the per-(task, seed) frame and the leaderboard.

Per entry, task and seed (``score_curves``):

* each study picks, among its ``trials`` configs, the one with the lowest ``valid_inner``
  loss at any evaluation (the select split; a run that diverged never wins), and that run
  is scored by :func:`taskset_lab.evaluate.score.score_run`: speedup over tuned Adam, steps to
  target (tuned Adam's best seed-mean training loss), final train/test losses, the test loss at
  the best select evaluation (``best_test``), diverged;
* ``normalized_test``: ``best_test`` on the baseline's scale, ``(L - best) / (init - best)``
  with ``init`` the median test loss at step 0 and ``best`` tuned Adam's lowest seed-mean test
  loss on its grid: 1 is no progress, 0 is tuned Adam's best, below 0 is better than it; a
  diverged or non-finite run gets :data:`NORMALIZED_CAP`;
* with several studies (external tuning), each number is the median over studies and
  ``diverged`` the fraction of studies whose pick diverged.

The leaderboard (``leaderboard``) aggregates per entry: speedup and normalized loss as mean,
median and IQM with 95% stratified-bootstrap intervals (:mod:`taskset_lab.evaluate.metrics`),
the win rate against tuned Adam (tasks whose median speedup is above 1), the diverged
fraction, the mean seed spread (standard deviation of ``best_test`` over seeds, per task), and
AlgoPerf's performance-profile score over the entries and tuned Adam together (time = the
median steps to target over seeds; a miss is ∞).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from taskset_lab.evaluate.metrics import interval_estimates, performance_profiles, profile_score
from taskset_lab.evaluate.metrics import steps_to_target as first_step_at
from taskset_lab.evaluate.score import AdamBaseline, best_mean_curve, score_run

#: a diverged or non-finite run's normalized loss (HPARAM_LIST's cap)
NORMALIZED_CAP = 1.5
#: the leaderboard's row for the reference itself (in the profile only)
TUNED_ADAM = "tuned_adam"


def normalization_scale(baseline: AdamBaseline) -> tuple[float, float]:
    """(init, best) of a task's test loss on the baseline's scale (see the module docstring)."""
    test = np.asarray(baseline.curves["test"], dtype=float)
    init = float(np.nanmedian(test[:, :, 0]))
    mean = test.mean(axis=1)
    best = float(np.nanmin(np.where(np.isnan(mean), np.inf, mean)))
    return init, best


def normalized(loss: float, scale: tuple[float, float], diverged: bool) -> float:
    """``loss`` on the baseline's scale; :data:`NORMALIZED_CAP` for a diverged or non-finite run."""
    init, best = scale
    if diverged or not math.isfinite(loss) or not math.isfinite(best) or not init > best:
        return NORMALIZED_CAP
    return float(min((loss - best) / (init - best), NORMALIZED_CAP))


def pick_configs(valid_inner: np.ndarray, trials: int, studies: int, diverged: np.ndarray | None = None
                 ) -> np.ndarray:
    """``[studies, seeds]`` config indices: per study and seed, the config of the study's
    ``trials`` whose lowest select loss is lowest. A run that diverged never wins (its finite
    evaluations before the divergence included: a tuner keeps the run it would deploy), nor does
    NaN; when every run diverged, the study's first is the (missed) pick."""
    best = np.where(np.isnan(valid_inner), np.inf, valid_inner).min(axis=-1)  # [configs, seeds]
    if diverged is not None:
        best = np.where(np.asarray(diverged, dtype=bool), np.inf, best)
    picks = np.empty((studies, best.shape[1]), dtype=int)
    for s in range(studies):
        block = best[s * trials:(s + 1) * trials]
        picks[s] = s * trials + np.argmin(block, axis=0)
    return picks


_NUMERIC = ("speedup", "steps_to_target", "final_train", "final_test", "best_test", "normalized_test")


def score_curves(entry: str, task: str, family: str, losses: Mapping[str, np.ndarray], steps: np.ndarray,
                 diverged: np.ndarray, baseline: AdamBaseline, trials: int = 1, studies: int = 1,
                 split: str = "all") -> list[dict[str, Any]]:
    """One row per seed of ``entry`` on ``task`` (``losses[split]``: ``[configs, seeds,
    evaluations]``; ``diverged``: ``[configs, seeds]``); see the module docstring."""
    steps = np.asarray(steps, dtype=float)
    if not np.array_equal(steps, baseline.steps):
        raise ValueError(f"{task}: {entry} was evaluated at other steps than the baseline "
                         "(another total_steps or eval_every)")
    if losses["valid_inner"].shape[0] < trials * studies:
        raise ValueError(f"{entry} on {task}: {losses['valid_inner'].shape[0]} configs for "
                         f"{studies} studies of {trials} trials")
    scale = normalization_scale(baseline)
    picks = pick_configs(losses["valid_inner"][:trials * studies], trials, studies, diverged[:trials * studies])
    rows = []
    for seed in range(picks.shape[1]):
        per_study = []
        for s in range(studies):
            c = int(picks[s, seed])
            run = score_run({k: v[c, seed] for k, v in losses.items()}, steps, bool(diverged[c, seed]), baseline)
            run["normalized_test"] = normalized(run["best_test"], scale, run["diverged"])
            run["config"] = c
            per_study.append(run)
        row: dict[str, Any] = {"optimizer": entry, "task": task, "task_family": family, "split": split,
                               "seed": int(baseline.seeds[seed])}
        for key in _NUMERIC:
            row[key] = float(np.median([r[key] for r in per_study]))
        row["diverged"] = float(np.mean([r["diverged"] for r in per_study]))
        row["config"] = int(per_study[0]["config"])
        row["studies"] = studies
        rows.append(row)
    return rows


def tuned_adam_steps(baseline: AdamBaseline) -> float:
    """The step at which tuned Adam's best seed-mean curve first reaches its own target."""
    return first_step_at(baseline.steps, best_mean_curve(baseline), baseline.target)


def leaderboard(frame: pd.DataFrame, baselines: Mapping[str, AdamBaseline], reps: int = 2000) -> pd.DataFrame:
    """One row per entry of a per-(entry, task, seed) frame, best IQM speedup first."""
    entries = list(dict.fromkeys(frame["optimizer"]))
    tasks = list(dict.fromkeys(frame["task"]))
    times = []
    for entry in entries:
        sub = frame[frame["optimizer"] == entry]
        times.append(sub.groupby("task")["steps_to_target"].median().reindex(tasks).to_numpy(dtype=float))
    times.append(np.array([tuned_adam_steps(baselines[t]) for t in tasks]))
    times = np.where(np.vstack(times) == 0, 1.0, np.vstack(times))  # reached at step 0: one step
    taus, rho = performance_profiles(times)
    scores = profile_score(taus, rho)
    rows = []
    for i, entry in enumerate(entries):
        sub = frame[frame["optimizer"] == entry]
        speedups = sub.pivot(index="task", columns="seed", values="speedup").to_numpy(dtype=float)
        norm = sub.pivot(index="task", columns="seed", values="normalized_test").to_numpy(dtype=float)
        sp, nl = interval_estimates(speedups, reps=reps), interval_estimates(norm, reps=reps)
        per_task = sub.groupby("task")
        rows.append({
            "optimizer": entry, "tasks": int(speedups.shape[0]), "seeds": int(speedups.shape[1]),
            "speedup_iqm": sp["iqm"][0], "speedup_iqm_low": sp["iqm"][1], "speedup_iqm_high": sp["iqm"][2],
            "speedup_median": sp["median"][0], "speedup_mean": sp["mean"][0],
            "normalized_iqm": nl["iqm"][0], "normalized_iqm_low": nl["iqm"][1], "normalized_iqm_high": nl["iqm"][2],
            "normalized_mean": nl["mean"][0],
            "win_rate_vs_tuned_adam": float((per_task["speedup"].median() > 1.0).mean()),
            "profile_score": float(scores[i]),
            "diverged_fraction": float(sub["diverged"].mean()),
            "seed_spread": float(per_task["best_test"].std(ddof=0).mean()),
        })
    board = pd.DataFrame(rows).sort_values(["speedup_iqm", "normalized_iqm"], ascending=[False, True])
    board.attrs["profile_score_tuned_adam"] = float(scores[-1])
    board.attrs["profiles"] = (taus, rho, [*entries, TUNED_ADAM], [float(v) for v in scores])
    return board.reset_index(drop=True)


def win_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """``[row entry, column entry]``: the fraction of tasks where the row's median normalized
    test loss is lower than the column's (ties count half)."""
    table = frame.groupby(["task", "optimizer"])["normalized_test"].median().unstack("optimizer")
    entries = list(dict.fromkeys(frame["optimizer"]))
    out = pd.DataFrame(index=entries, columns=entries, dtype=float)
    for a in entries:
        for b in entries:
            diff = table[a] - table[b]
            out.loc[a, b] = float(((diff < 0) + 0.5 * (diff == 0)).mean()) if a != b else np.nan
    out.index.name = "optimizer"
    return out


def families(frame: pd.DataFrame) -> pd.DataFrame:
    """Per entry and task family: tasks, median speedup, IQM speedup over (task, seed), median
    normalized loss and diverged fraction."""
    from taskset_lab.evaluate.metrics import iqm

    rows = []
    for (entry, family), sub in frame.groupby(["optimizer", "task_family"], sort=False):
        rows.append({"optimizer": entry, "task_family": family, "tasks": int(sub["task"].nunique()),
                     "speedup_median": float(sub["speedup"].median()), "speedup_iqm": iqm(sub["speedup"].to_numpy()),
                     "normalized_median": float(sub["normalized_test"].median()),
                     "diverged_fraction": float(sub["diverged"].mean())})
    return pd.DataFrame(rows)


def leaderboard_markdown(board: pd.DataFrame, settings: Mapping[str, Any]) -> str:
    """The leaderboard as a Markdown table with a header saying what was measured."""
    lines = [f"# EVALUATE leaderboard: {settings.get('expr_name', '')}", "",
             f"{settings.get('tasks')} tasks ({settings.get('report_on', 'all')}), {settings.get('seeds')} seeds, "
             f"{settings.get('total_steps')} steps; reference: Adam tuned over "
             f"{settings.get('baseline_lrs')} learning rates (speedup 1 = tuned Adam; the profile score of tuned "
             f"Adam itself is {board.attrs.get('profile_score_tuned_adam', float('nan')):.3f}).", "",
             "| optimizer | speedup IQM [95% CI] | median | normalized IQM [95% CI] | wins vs tuned Adam "
             "| profile score | diverged |",
             "|---|---|---|---|---|---|---|"]
    for r in board.itertuples():
        lines.append(f"| {r.optimizer} | {r.speedup_iqm:.3f} [{r.speedup_iqm_low:.3f}, {r.speedup_iqm_high:.3f}] "
                     f"| {r.speedup_median:.3f} | {r.normalized_iqm:.3f} [{r.normalized_iqm_low:.3f}, "
                     f"{r.normalized_iqm_high:.3f}] | {r.win_rate_vs_tuned_adam:.0%} | {r.profile_score:.3f} "
                     f"| {r.diverged_fraction:.1%} |")
    return "\n".join(lines) + "\n"


def format_leaderboard(board: pd.DataFrame) -> str:
    """The leaderboard as a console table."""
    head = f"{'optimizer':<22} {'speedup IQM [95% CI]':>26} {'norm. IQM':>10} {'wins':>6} {'profile':>8} {'div.':>6}"
    lines = [head, "-" * len(head)]
    for r in board.itertuples():
        ci = f"{r.speedup_iqm:.3f} [{r.speedup_iqm_low:.2f}, {r.speedup_iqm_high:.2f}]"
        lines.append(f"{r.optimizer:<22} {ci:>26} {r.normalized_iqm:>10.3f} {r.win_rate_vs_tuned_adam:>6.0%} "
                     f"{r.profile_score:>8.3f} {r.diverged_fraction:>6.1%}")
    return "\n".join(lines)


def per_task_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (entry, task): medians over seeds, the seed spread of ``best_test`` and the diverged fraction."""
    grouped = frame.groupby(["optimizer", "task", "task_family", "split"], sort=False)
    out = grouped[["speedup", "steps_to_target", "final_test", "best_test", "normalized_test"]].median()
    out["best_test_std"] = grouped["best_test"].std(ddof=0)
    out["diverged_fraction"] = grouped["diverged"].mean()
    return out.reset_index()


__all__ = ["NORMALIZED_CAP", "TUNED_ADAM", "families", "format_leaderboard", "leaderboard",
           "leaderboard_markdown", "normalization_scale", "normalized", "per_task_summary", "pick_configs",
           "score_curves", "tuned_adam_steps", "win_rates"]
