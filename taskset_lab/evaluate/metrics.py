"""The numbers optimizer papers report, from learning curves: speedup over learning-rate-tuned
Adam, time to target, performance profiles and their score, and aggregates with intervals.

Everything here takes plain numpy arrays (no tasks, no stores), so the EVALUATE pipeline and a
user's own loop compute the same numbers.

* **Speedup over tuned Adam** (learned_optimization's ``speedup_over_adam`` normalizer, the
  VeLO headline): per task, the curves of Adam at a grid of learning rates (several seeds
  each) are averaged over seeds, smoothed with an exponential moving average
  (``x₀ = y₀``, ``xᵢ = α·xᵢ₋₁ + (1-α)·yᵢ``, α = 0.95, no bias correction), and their lower
  envelope (the minimum over learning rates at each evaluation; a learning rate whose seed
  mean is NaN there, a diverged seed, is left out at that evaluation) is
  resampled linearly at 512 points over ``[0, last step]`` and made non-increasing (running
  minimum). A loss ``L`` then maps to the steps tuned Adam needs to reach it, by linear
  interpolation on the envelope read backwards; a loss below the envelope's minimum maps to
  the last step (the horizon: speedups are capped there), one above its start to step 0.
  The speedup of an optimizer that reaches ``L`` at step ``t`` is ``steps(L) / t``.
* **Performance profiles** (AlgoPerf): with ``tᵢⱼ`` the time optimizer ``i`` needs to reach
  task ``j``'s target (∞ for a miss), ``rᵢⱼ = tᵢⱼ / minᵢ tᵢⱼ`` and
  ``ρᵢ(τ) = #{j : rᵢⱼ ≤ τ} / #tasks``; the score is ``1/(τ_max - 1) ∫₁^τ_max ρᵢ(τ) dτ``
  (trapezoids on a uniform grid, τ_max = 4).
* **Aggregates** (rliable's definitions): mean, median and the interquartile mean (the mean
  of the middle 50% of all task × seed scores, ``scipy.stats.trim_mean(·, 0.25)``), with
  95% percentile intervals from a stratified bootstrap (seeds resampled within each task).
  rliable's own ``get_interval_estimates`` needs ``arch``, whose current release (7.2) does
  not import under pandas 3, so the bootstrap is written here with rliable's scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from scipy import stats

#: learned_optimization's smoothing of the Adam curves and the envelope's resolution
EMA_ALPHA = 0.95
ENVELOPE_POINTS = 512
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz

#: AlgoPerf's largest ratio to the best in a performance profile
MAX_TAU = 4.0


def ema(values: np.ndarray, alpha: float = EMA_ALPHA) -> np.ndarray:
    """Exponential moving average along the last axis: ``x₀ = y₀``, ``xᵢ = α·xᵢ₋₁ + (1-α)·yᵢ``."""
    values = np.asarray(values, dtype=float)
    out = np.empty_like(values)
    if values.shape[-1] == 0:
        return out
    out[..., 0] = values[..., 0]
    for i in range(1, values.shape[-1]):
        out[..., i] = alpha * out[..., i - 1] + (1.0 - alpha) * values[..., i]
    return out


@dataclass(frozen=True)
class AdamEnvelope:
    """Tuned Adam's best loss over steps on one task, read as "steps needed to reach a loss".

    ``steps`` (increasing, from 0) and ``losses`` (non-increasing) are the resampled envelope.
    """

    steps: np.ndarray
    losses: np.ndarray

    @classmethod
    def from_curves(cls, steps: np.ndarray, curves: np.ndarray, alpha: float = EMA_ALPHA,
                    points: int = ENVELOPE_POINTS) -> "AdamEnvelope":
        """The envelope of ``curves`` (``[learning rates, seeds, evaluations]`` losses at
        ``steps``); see the module docstring for each stage."""
        steps = np.asarray(steps, dtype=float)
        curves = np.asarray(curves, dtype=float)
        if curves.ndim != 3 or curves.shape[-1] != steps.shape[0]:
            raise ValueError(f"curves must be [learning rates, seeds, {steps.shape[0]} evaluations], "
                             f"got shape {curves.shape}")
        if steps.shape[0] < 2 or np.any(np.diff(steps) <= 0):
            raise ValueError("steps must increase, with at least two evaluations")
        smoothed = ema(curves.mean(axis=1), alpha)  # a seed's NaN makes its learning rate's curve NaN
        if np.all(np.isnan(smoothed)):
            raise ValueError("every learning rate's curve is NaN: no envelope")
        with np.errstate(all="ignore"):
            bottom = np.nanmin(np.where(np.isnan(smoothed), np.inf, smoothed), axis=0)
        grid = np.linspace(0.0, steps[-1], points)
        envelope = np.minimum.accumulate(np.interp(grid, steps, bottom))
        return cls(grid, envelope)

    def steps_to_reach(self, loss: np.ndarray | float) -> np.ndarray:
        """The steps tuned Adam needs to reach ``loss`` (capped at the horizon; NaN stays NaN)."""
        return np.interp(np.asarray(loss, dtype=float), self.losses[::-1], self.steps[::-1])

    def speedup(self, loss: np.ndarray | float, step: np.ndarray | float) -> np.ndarray:
        """``steps_to_reach(loss) / step``: how many times fewer steps than tuned Adam an
        optimizer that reached ``loss`` at ``step`` needed (NaN where the loss is not finite)."""
        loss = np.asarray(loss, dtype=float)
        out = self.steps_to_reach(np.where(np.isfinite(loss), loss, np.nan)) / np.asarray(step, dtype=float)
        return np.where(np.isfinite(loss), out, np.nan)


def steps_to_target(steps: np.ndarray, losses: np.ndarray, target: float) -> float:
    """The first evaluation step whose loss is at or below ``target``; ∞ if none is (a
    diverged run's NaN never reaches it)."""
    losses = np.asarray(losses, dtype=float)
    hit = np.flatnonzero(np.nan_to_num(losses, nan=np.inf) <= target)
    return float(np.asarray(steps)[hit[0]]) if hit.size else float("inf")


def performance_profiles(times: np.ndarray, taus: np.ndarray | None = None, max_tau: float = MAX_TAU,
                         num_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """ρ of each optimizer (rows of ``times``, ``[optimizers, tasks]``, ∞ for a miss) at
    ``taus`` (default: ``num_points`` uniform points on ``[1, max_tau]``). Returns
    ``(taus, rho [optimizers, taus])``. A task no optimizer reaches counts as a miss for all."""
    times = np.asarray(times, dtype=float)
    if times.ndim != 2 or times.shape[1] == 0:
        raise ValueError(f"times must be [optimizers, tasks], got shape {times.shape}")
    if np.any(np.isnan(times)) or np.any(times <= 0):
        raise ValueError("times must be > 0, with ∞ (not NaN) for a missed target")
    taus = np.linspace(1.0, max_tau, num_points) if taus is None else np.asarray(taus, dtype=float)
    best = times.min(axis=0)
    with np.errstate(invalid="ignore"):
        ratios = np.where(np.isfinite(best), times / best, np.inf)
    rho = (ratios[:, :, None] <= taus[None, None, :]).mean(axis=1)
    return taus, rho


def profile_score(taus: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """AlgoPerf's score of each profile: ``1/(τ_max - τ_min) ∫ ρ(τ) dτ`` (trapezoids), in [0, 1]."""
    taus = np.asarray(taus, dtype=float)
    return _trapezoid(rho, taus, axis=-1) / (taus[-1] - taus[0])


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all scores (rliable's ``aggregate_iqm``)."""
    return float(stats.trim_mean(np.asarray(scores, dtype=float).ravel(), proportiontocut=0.25))


AGGREGATES: Mapping[str, Callable[[np.ndarray], float]] = {
    "mean": lambda s: float(np.mean(s)), "median": lambda s: float(np.median(s)), "iqm": iqm}


def interval_estimates(scores: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
                       ) -> dict[str, tuple[float, float, float]]:
    """Each aggregate of ``scores`` (``[tasks, seeds]``, finite) with a ``confidence``
    percentile interval from a stratified bootstrap (``reps`` resamples of the seeds within
    each task): ``{name: (estimate, low, high)}``."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores must be [tasks, seeds], got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (score a miss before aggregating)")
    rng = np.random.default_rng(seed)
    tasks, seeds = scores.shape
    picks = rng.integers(0, seeds, size=(reps, tasks, seeds))
    resampled = np.take_along_axis(np.broadcast_to(scores, (reps, tasks, seeds)), picks, axis=2)
    half = (1.0 - confidence) / 2.0
    out = {}
    for name, fn in AGGREGATES.items():
        values = np.array([fn(r) for r in resampled])
        low, high = np.quantile(values, [half, 1.0 - half])
        out[name] = (fn(scores), float(low), float(high))
    return out
