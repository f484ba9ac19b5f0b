"""TaskSet's adam8p and adam6p families (``task_set/optimizers/adam8p.py``).

The update (TaskSet's ``Adam8POptimizer``), per parameter, with the 0-based step ``s`` and
``t = s + 1``::

    g'  = g + l1·sign(θ) + 2·l2·θ                 (l1·Σ|θ| + l2·Σθ² added to the loss)
    m   = β1·m + (1-β1)·g'        v = β2·v + (1-β2)·g'²
    m̂   = m/(1-β1ᵗ)               v̂ = v/(1-β2ᵗ)
    lr_s = exp(-exponential_decay·r)·max(1 - linear_decay·r, 0)·lr,   r = rescale·s
    θ  ← θ - lr_s·m̂/(sqrt(v̂ + 1e-10) + ε)

How it differs from ``torch.optim.Adam``: ``1e-10`` is added to ``v̂`` under the square root
(besides ε outside it); the penalties are coupled (part of the gradient the moments see, and
``l2`` is the coefficient of ``Σθ²``, so the gradient term is ``2·l2·θ``, unlike Adam's
``weight_decay·θ``); the decay is evaluated at the step before the update.

The run length: TaskSet's adam8p getter drops ``training_steps``, so its decay runs on the
raw step count whatever the run's length (``rescale = 1``); adam6p passes it, so its decay is
that of a 10,000-step run squeezed into ``T`` steps (``rescale = 10000/T``). Both are kept.
TaskSet computes in float32 (its β powers are float32 accumulators); here everything is in
the compute dtype.

Search spaces (TaskSet's ``*_wide_grid`` samplers, draws in this order; log-U is
log-uniform): adam8p (``RandomState(seed)``): lr log-U[1e-8, 10], β1 = 1 - log-U[1e-4, 1],
β2 = 1 - log-U[1e-6, 1], ε log-U[1e-10, 1e3], l1 log-U[1e-8, 10], l2 log-U[1e-8, 10],
linear_decay log-U[1e-7, 1e-4], exponential_decay log-U[1e-6, 1e-3] (drawn with its bounds
swapped, as published). adam6p (``RandomState(seed + 123455)``): the same without l1, l2.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from taskset_lab.optim.base import (IN_PLACE, FamilyOptimizer, HParams, OptimizerFamily, gate, moment_coefficients,
                                    update_moments_)
from taskset_lab.optim.sampling import check_range, family_rng, log_uniform
from taskset_lab.optim.schedules import RESCALE_STEPS, taskset_decay_lr

ADAM8P_NAMES = ("lr", "beta1", "beta2", "eps", "l1", "l2", "linear_decay", "exponential_decay")
ADAM6P_NAMES = ("lr", "beta1", "beta2", "eps", "linear_decay", "exponential_decay")
#: added to v̂ under the square root by TaskSet's adam8p
V_HAT_FLOOR = 1e-10


def _released_keys(names: tuple[str, ...]) -> dict[str, str]:
    return {n: {"lr": "learning_rate", "eps": "epsilon"}.get(n, n) for n in names}


_UPDATE = """

    Update (TaskSet's ``Adam8POptimizer``; ``s`` = updates already made, ``t = s + 1``)::

        g' = g + l1·sign(θ) + 2·l2·θ          (adam6p: l1 = l2 = 0)
        m = β1·m + (1-β1)·g'      v = β2·v + (1-β2)·g'²      m̂ = m/(1-β1ᵗ)   v̂ = v/(1-β2ᵗ)
        lr_s = exp(-exponential_decay·r)·max(1 - linear_decay·r, 0)·lr
        θ ← θ - lr_s·m̂/(sqrt(v̂ + 1e-10) + ε)

    ``r = s`` for adam8p (its decay ignores the run length, as published) and
    ``r = 10000/T·s`` for adam6p. Unlike torch.optim.Adam: 1e-10 under the root, coupled
    penalties with ``2·l2``, the decay read at the step before the update.
    """


class Adam8pFamily(OptimizerFamily):
    __doc__ = "Adam + coupled l1/l2 penalties + linear/exponential decay on the raw step count." + _UPDATE

    name = "adam8p"
    hparam_names: tuple[str, ...] = ADAM8P_NAMES
    state_names = ("m", "v")
    released_name = "adam8p_wide_grid"
    released_keys = _released_keys(ADAM8P_NAMES)
    #: the sampler's seed offset
    seed_offset = 0

    def sample(self, seed: int) -> HParams:
        rng = family_rng(seed, self.seed_offset)
        hp: HParams = {
            "lr": log_uniform(rng, 1e-8, 1e1),
            "beta1": 1 - log_uniform(rng, 1e-4, 1e0),
            "beta2": 1 - log_uniform(rng, 1e-6, 1e0),
            "eps": log_uniform(rng, 1e-10, 1e3),
        }
        if "l1" in self.hparam_names:
            hp["l1"] = log_uniform(rng, 1e-8, 1e1)
            hp["l2"] = log_uniform(rng, 1e-8, 1e1)
        hp["linear_decay"] = log_uniform(rng, 1e-7, 1e-4)
        hp["exponential_decay"] = log_uniform(rng, 1e-3, 1e-6)
        return hp

    def defaults(self) -> HParams:
        hp = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "l1": 0.0, "l2": 0.0,
              "linear_decay": 0.0, "exponential_decay": 0.0}
        return {k: hp[k] for k in self.hparam_names}

    def validate(self, hparams: Mapping[str, Any]) -> HParams:
        hp = super().validate(hparams)
        check_range(self.name, "lr", hp["lr"], low=0.0, low_open=True)
        for name in ("beta1", "beta2"):
            check_range(self.name, name, hp[name], low=0.0, high=1.0, high_open=True)
        check_range(self.name, "eps", hp["eps"], low=0.0, low_open=True)
        for name in ("l1", "l2", "linear_decay", "exponential_decay"):
            if name in hp:
                check_range(self.name, name, hp[name], low=0.0)
        return hp

    def rescale(self, total_steps: int) -> float:
        """The factor from the 0-based step to the step the decay is evaluated at."""
        return 1.0

    def coefficients(self, step, hp, total_steps, alive=None):
        t = step.to(hp["lr"].dtype)
        b1, b2 = hp["beta1"], hp["beta2"]
        c = {**moment_coefficients(b1, b2, alive), "1-b1^t": 1 - b1 ** t, "1-b2^t": 1 - b2 ** t,
             "-lr": gate(alive, -self.scheduled_lr(step, hp, total_steps), 0.0), "eps": hp["eps"]}
        if "l1" in hp:  # branching on names only: same arithmetic for every config
            c["l1"], c["2*l2"] = gate(alive, hp["l1"], 0.0), gate(alive, 2.0 * hp["l2"], 0.0)
        return c

    def update_(self, p, g, state, c, ops=None):
        ops = ops or IN_PLACE
        if "l1" in c:
            g.addcmul_(torch.sign(p), c["l1"]).addcmul_(p, c["2*l2"])
        update_moments_(state, g, c, square=g, ops=ops)
        g = ops.div(state["v"], c["1-b2^t"], out=g).add_(V_HAT_FLOOR).sqrt_().add_(c["eps"])  # sqrt(v̂ + 1e-10) + ε
        g.mul_(c["1-b1^t"])
        g = ops.div(state["m"], g, out=g)  # m̂ / (sqrt(v̂ + 1e-10) + ε)
        p.addcmul_(g, c["-lr"])

    def scheduled_lr(self, step, hp, total_steps):
        t = step.to(hp["lr"].dtype)
        return taskset_decay_lr(t - 1, self.rescale(total_steps), hp["lr"], hp["linear_decay"],
                                hp["exponential_decay"])


class Adam6pFamily(Adam8pFamily):
    __doc__ = "adam8p without penalties, its decay rescaled to the run length (``10000/T``)." + _UPDATE

    name = "adam6p"
    hparam_names = ADAM6P_NAMES
    released_name = "adam6p_wide_grid"
    released_keys = _released_keys(ADAM6P_NAMES)
    seed_offset = 123455

    def rescale(self, total_steps: int) -> float:
        return RESCALE_STEPS / float(total_steps)


ADAM8P, ADAM6P = Adam8pFamily(), Adam6pFamily()


class Adam8p(FamilyOptimizer):
    __doc__ = "One adam8p config (TaskSet's Adam8POptimizer); its decay ignores ``total_steps``." + _UPDATE

    def __init__(self, params: Iterable, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, l1: float = 0.0, l2: float = 0.0, linear_decay: float = 0.0,
                 exponential_decay: float = 0.0, *, total_steps: int):
        hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, l1=l1, l2=l2,
                  linear_decay=linear_decay, exponential_decay=exponential_decay)
        super().__init__(params, ADAM8P, hp, total_steps)


class Adam6p(FamilyOptimizer):
    __doc__ = "One adam6p config: adam8p without l1/l2, its decay rescaled to ``total_steps``." + _UPDATE

    def __init__(self, params: Iterable, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, linear_decay: float = 0.0, exponential_decay: float = 0.0, *,
                 total_steps: int):
        hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, linear_decay=linear_decay,
                  exponential_decay=exponential_decay)
        super().__init__(params, ADAM6P, hp, total_steps)
