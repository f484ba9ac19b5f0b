"""The adam8p / adam4p / adam1p families of the TaskSet paper.

adam8p is Adam plus an l1 and an l2 penalty and a learning-rate decay with a linear and an
exponential part.

* Penalties: the loss gets ``+ l1·Σ|θ| + l2·Σθ²``, so the gradient Adam sees is
  ``g + l1·sign(θ) + 2·l2·θ`` (added before the moments, i.e. coupled, not decoupled).
* Decay: ``lr(t) = lr · exp(-exponential_decay·t') · max(1 - linear_decay·t', 0)`` with the
  virtual step ``t' = 10000 / total_steps · step``.
* Moments as ``torch.optim.Adam``: ``m = β1·m + (1-β1)·g``, ``v = β2·v + (1-β2)·g²``,
  ``θ ← θ - lr(t)·(m/(1-β1^t)) / (sqrt(v/(1-β2^t)) + eps)``.

adam4p has only ``lr, beta1, beta2, eps`` (the first four numbers of the adam8p draw with
the same seed; no penalties, no decay). adam1p has only ``lr`` (the same draw as adam8p's lr;
β1 = 0.9, β2 = 0.999, eps = 1e-8 are fixed). Both are exactly ``torch.optim.Adam``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from taskset_lab.optim.base import FamilyOptimizer, HParams, OptimizerFamily
from taskset_lab.optim.schedules import linear_exponential_decay
from taskset_lab.optim.search_space import check_range, log_uniform

ADAM8P_NAMES = ("lr", "beta1", "beta2", "eps", "l1", "l2", "linear_decay", "exponential_decay")
#: values adam4p / adam1p hold fixed (everything adam8p has that they do not)
ADAM_FIXED: dict[str, float] = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "l1": 0.0, "l2": 0.0,
                                "linear_decay": 0.0, "exponential_decay": 0.0}


def adam_direction(g: Tensor, state: Mapping[str, Tensor], step: Tensor, beta1: Tensor | float,
                   beta2: Tensor | float, eps: Tensor | float) -> tuple[Tensor, dict[str, Tensor]]:
    """Adam's bias-corrected direction ``m̂ / (sqrt(v̂) + eps)`` and the new moments."""
    m = beta1 * state["m"] + (1.0 - beta1) * g
    v = beta2 * state["v"] + (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    return m_hat / (torch.sqrt(v_hat) + eps), {"m": m, "v": v}


class Adam8pFamily(OptimizerFamily):
    """Adam + l1/l2 penalties + linear/exponential decay. Subclasses free fewer hparams."""

    name = "adam8p"
    hparam_names: tuple[str, ...] = ADAM8P_NAMES
    state_names = ("m", "v")

    def draw8(self, seed: int) -> HParams:
        """The full adam8p draw for ``seed`` (adam4p and adam1p keep parts of it)."""
        rng = np.random.default_rng(seed)
        return {
            "lr": log_uniform(rng, 1e-8, 10.0),
            "beta1": 1.0 - log_uniform(rng, 1e-4, 1.0),
            "beta2": 1.0 - log_uniform(rng, 1e-6, 1.0),
            "eps": log_uniform(rng, 1e-10, 1e3),
            "l1": log_uniform(rng, 1e-8, 10.0),
            "l2": log_uniform(rng, 1e-8, 10.0),
            "linear_decay": log_uniform(rng, 1e-7, 1e-4),
            "exponential_decay": log_uniform(rng, 1e-6, 1e-3),
        }

    def sample(self, seed: int) -> HParams:
        draw = self.draw8(seed)
        return {k: draw[k] for k in self.hparam_names}

    def defaults(self) -> HParams:
        return {"lr": 1e-3, **{k: v for k, v in ADAM_FIXED.items() if k in self.hparam_names}}

    def validate(self, hparams: Mapping[str, Any]) -> HParams:
        hp = super().validate(hparams)
        check_range(self.name, "lr", hp["lr"], low=0.0, low_open=True)
        for name in ("beta1", "beta2"):
            if name in hp:
                check_range(self.name, name, hp[name], low=0.0, high=1.0, high_open=True)
        if "eps" in hp:
            check_range(self.name, "eps", hp["eps"], low=0.0, low_open=True)
        for name in ("l1", "l2", "linear_decay", "exponential_decay"):
            if name in hp:
                check_range(self.name, name, hp[name], low=0.0)
        return hp

    def update(self, p, g, state, step, hp, total_steps):
        # Names a family does not free are fixed constants; branching is on names only.
        full: dict[str, Any] = {**ADAM_FIXED, **hp}
        if "l1" in hp:
            g = g + full["l1"] * torch.sign(p) + 2.0 * full["l2"] * p
        direction, moments = adam_direction(g, state, step, full["beta1"], full["beta2"], full["eps"])
        lr = full["lr"]
        if "linear_decay" in hp:
            lr = lr * linear_exponential_decay(step, total_steps, full["linear_decay"],
                                               full["exponential_decay"])
        return p - lr * direction, moments


class Adam4pFamily(Adam8pFamily):
    name = "adam4p"
    hparam_names = ("lr", "beta1", "beta2", "eps")


class Adam1pFamily(Adam8pFamily):
    name = "adam1p"
    hparam_names = ("lr",)


ADAM8P, ADAM4P, ADAM1P = Adam8pFamily(), Adam4pFamily(), Adam1pFamily()


class Adam8p(FamilyOptimizer):
    """One adam8p config: Adam with l1/l2 penalties and linear + exponential decay."""

    def __init__(self, params: Iterable, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, l1: float = 0.0, l2: float = 0.0, linear_decay: float = 0.0,
                 exponential_decay: float = 0.0, *, total_steps: int):
        hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, l1=l1, l2=l2,
                  linear_decay=linear_decay, exponential_decay=exponential_decay)
        super().__init__(params, ADAM8P, hp, total_steps)


class Adam4p(FamilyOptimizer):
    """One adam4p config: plain Adam, equal to ``torch.optim.Adam``."""

    def __init__(self, params: Iterable, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, total_steps: int):
        super().__init__(params, ADAM4P, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps), total_steps)


class Adam1p(FamilyOptimizer):
    """One adam1p config: Adam with only the learning rate free."""

    def __init__(self, params: Iterable, lr: float = 1e-3, *, total_steps: int):
        super().__init__(params, ADAM1P, {"lr": lr}, total_steps)
