"""Antithetic evolution strategies and persistent evolution strategies (PES), the estimators.

With meta-parameters θ ∈ R^D, N antithetic pairs of perturbations ε_i ~ N(0, σ²I) and the
meta-losses ``L⁺_i``, ``L⁻_i`` of the inner runs stepped with θ+ε_i and θ-ε_i, both
estimators are

    ĝ = 1/N Σ_i  ξ_i (L⁺_i − L⁻_i) / (2σ²)

* **antithetic ES** (over one truncation, both members of a pair starting from one state):
  ``ξ_i = ε_i``; an unbiased estimate of the gradient of the Gaussian-smoothed truncation
  loss, with the state at the truncation's start treated as a constant (truncation bias).
* **PES** (Vicol et al. 2021): every member keeps its own inner state across the truncations
  of an unroll, each truncation draws fresh ε_i, and ``ξ_i`` is the *sum* of pair i's
  perturbations since the unroll began. This removes the truncation bias: ĝ is an unbiased
  estimate of the gradient of the (smoothed) truncation loss through the whole unroll so far.

The zeroth-order term cancels exactly: ``L⁺ − L⁻`` is unchanged when a constant is added to
every loss, so the estimate never depends on the loss's level. Pairs marked invalid (an
inner run that diverged) are left out and counted, never averaged in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Estimate:
    """One meta-gradient estimate: the mean over the valid pairs (``grad``, ``[D]``), the
    per-coordinate standard error of that mean (``stderr``, ``[D]``; NaN with < 2 pairs),
    how many pairs were used and how many were left out, and the mean meta-loss of the
    valid pairs' members."""

    grad: Tensor
    stderr: Tensor
    pairs: int
    left_out: int
    meta_loss: float

    @property
    def grad_norm(self) -> float:
        return float(self.grad.norm())

    @property
    def stderr_norm(self) -> float:
        return float(self.stderr.norm())


def perturbations(num_pairs: int, dim: int, sigma: float, generator: torch.Generator,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """``[N, D]`` draws of N(0, σ²I) from ``generator`` (CPU, so the same seed gives the same
    draws everywhere)."""
    return torch.randn(num_pairs, dim, generator=generator, dtype=torch.float64).to(dtype) * float(sigma)


def pair_samples(xi: Tensor, loss_pos: Tensor, loss_neg: Tensor, sigma: float) -> Tensor:
    """The per-pair estimates ``ξ_i (L⁺_i − L⁻_i) / (2σ²)``, ``[N, D]``."""
    diff = (loss_pos - loss_neg).to(xi.dtype)
    return xi * (diff / (2.0 * float(sigma) ** 2)).unsqueeze(-1)


def antithetic_estimate(xi: Tensor, loss_pos: Tensor, loss_neg: Tensor, sigma: float,
                        valid: Tensor | None = None) -> Estimate:
    """The estimate over the valid pairs (``valid`` ``[N]`` bool; all when None). ``xi`` is
    ``ε`` for antithetic ES and the accumulated ``Σ ε`` for PES (module docstring)."""
    n = xi.shape[0]
    valid = torch.ones(n, dtype=torch.bool) if valid is None else valid.to(torch.bool).cpu()
    valid = valid & torch.isfinite(loss_pos).cpu() & torch.isfinite(loss_neg).cpu()
    used = int(valid.sum())
    if used == 0:
        nan = torch.full((xi.shape[1],), float("nan"), dtype=xi.dtype)
        return Estimate(nan, nan, 0, n, float("nan"))
    idx = valid.nonzero().view(-1).to(xi.device)
    samples = pair_samples(xi[idx], loss_pos[idx], loss_neg[idx], sigma)
    grad = samples.mean(0)
    stderr = (samples.std(0, unbiased=True) / used ** 0.5 if used > 1
              else torch.full_like(grad, float("nan")))
    meta_loss = float(0.5 * (loss_pos[idx] + loss_neg[idx]).mean())
    return Estimate(grad, stderr, used, n - used, meta_loss)


def combine(estimates: list[Estimate]) -> Estimate:
    """The pair-weighted mean of several workers' estimates (those with no valid pair left out)."""
    used = [e for e in estimates if e.pairs > 0]
    left = sum(e.left_out for e in estimates)
    if not used:
        first = estimates[0].grad
        nan = torch.full_like(first, float("nan"))
        return Estimate(nan, nan, 0, left, float("nan"))
    total = sum(e.pairs for e in used)
    grad = sum(e.grad * (e.pairs / total) for e in used)
    var = sum(torch.nan_to_num(e.stderr, nan=0.0) ** 2 * (e.pairs / total) ** 2 for e in used)
    meta = sum(e.meta_loss * e.pairs for e in used) / total
    return Estimate(grad, var.sqrt(), total, left, float(meta))


__all__ = ["Estimate", "antithetic_estimate", "combine", "pair_samples", "perturbations"]
