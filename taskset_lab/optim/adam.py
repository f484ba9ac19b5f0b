"""TaskSet's adam4p and adam1p families: TensorFlow's ``tf.train.AdamOptimizer``
(``task_set/optimizers/adam.py``).

The update, per parameter, with ``t`` the 1-based count of this update::

    m    = β1·m + (1-β1)·g          v = β2·v + (1-β2)·g²
    lr_t = lr·sqrt(1-β2ᵗ)/(1-β1ᵗ)
    θ   ← θ - lr_t·m/(sqrt(v) + ε)

This differs from ``torch.optim.Adam`` (``θ ← θ - lr·m̂/(sqrt(v̂) + ε)``) only in where ε
sits: TF adds it before the bias correction is folded into the rate (ε-hat of Kingma & Ba),
which is torch's update with ε replaced by ``ε·sqrt(1-β2ᵗ)``. No schedule: ``total_steps``
is not used.

Search spaces: adam4p (``RandomState(seed)``) draws lr, β1, β2, ε as the first four draws of
adam8p (lr log-U[1e-8, 10], β1 = 1 - log-U[1e-4, 1], β2 = 1 - log-U[1e-6, 1], ε
log-U[1e-10, 1e3]); adam1p draws lr log-U[1e-8, 10] from its own generator
(``RandomState(seed + 4123)``) and uses TF's defaults β1 = 0.9, β2 = 0.999, ε = 1e-8.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from taskset_lab.optim.adam8p import ADAM6P, ADAM8P, Adam6p, Adam8p  # noqa: F401 (re-exported)
from taskset_lab.optim.base import (IN_PLACE, FamilyOptimizer, HParams, OptimizerFamily, gate, moment_coefficients,
                                    update_moments_)
from taskset_lab.optim.sampling import check_range, family_rng, log_uniform

#: TF's AdamOptimizer defaults, adam1p's fixed values
TF_ADAM_DEFAULTS: dict[str, float] = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


_UPDATE = """

    Update (``tf.train.AdamOptimizer``; ``t`` = 1-based count of this update)::

        m = β1·m + (1-β1)·g      v = β2·v + (1-β2)·g²
        θ ← θ - lr·sqrt(1-β2ᵗ)/(1-β1ᵗ)·m/(sqrt(v) + ε)

    Unlike torch.optim.Adam, ε is added before the bias correction (torch's update with ε
    replaced by ``ε·sqrt(1-β2ᵗ)``). No schedule.
    """


class Adam4pFamily(OptimizerFamily):
    __doc__ = "TF Adam with lr, β1, β2, ε free." + _UPDATE

    name = "adam4p"
    hparam_names: tuple[str, ...] = ("lr", "beta1", "beta2", "eps")
    state_names = ("m", "v")
    released_name = "adam4p_wide_grid"
    released_keys = {"lr": "learning_rate", "beta1": "beta1", "beta2": "beta2", "eps": "epsilon"}

    def sample(self, seed: int) -> HParams:
        rng = family_rng(seed, 0)
        return {"lr": log_uniform(rng, 1e-8, 1e1), "beta1": 1 - log_uniform(rng, 1e-4, 1e0),
                "beta2": 1 - log_uniform(rng, 1e-6, 1e0), "eps": log_uniform(rng, 1e-10, 1e3)}

    def defaults(self) -> HParams:
        return {"lr": 1e-3, **{k: v for k, v in TF_ADAM_DEFAULTS.items() if k in self.hparam_names}}

    def validate(self, hparams: Mapping[str, Any]) -> HParams:
        hp = super().validate(hparams)
        check_range(self.name, "lr", hp["lr"], low=0.0, low_open=True)
        for name in ("beta1", "beta2"):
            if name in hp:
                check_range(self.name, name, hp[name], low=0.0, high=1.0, high_open=True)
        if "eps" in hp:
            check_range(self.name, "eps", hp["eps"], low=0.0, low_open=True)
        return hp

    def coefficients(self, step, hp, total_steps, alive=None):
        lr = hp["lr"]
        t = step.to(lr.dtype)
        b1, b2, eps = (hp[n] if n in hp else torch.full_like(lr, TF_ADAM_DEFAULTS[n]) for n in ("beta1", "beta2", "eps"))
        lr_t = lr * torch.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return {**moment_coefficients(b1, b2, alive), "-lr_t": gate(alive, -lr_t, 0.0), "eps": eps}

    def update_(self, p, g, state, c, ops=None):
        ops = ops or IN_PLACE
        update_moments_(state, g, c, square=g, ops=ops)
        g = ops.sqrt(state["v"], out=g).add_(c["eps"])
        g = ops.div(state["m"], g, out=g)
        p.addcmul_(g, c["-lr_t"])


class Adam1pFamily(Adam4pFamily):
    __doc__ = "TF Adam with only the learning rate free (β1 = 0.9, β2 = 0.999, ε = 1e-8)." + _UPDATE

    name = "adam1p"
    hparam_names = ("lr",)
    released_name = "adam1p_wide_grid"
    released_keys = {"lr": "learning_rate"}
    #: the sampler's seed offset
    seed_offset = 4123

    def sample(self, seed: int) -> HParams:
        return {"lr": log_uniform(family_rng(seed, self.seed_offset), 1e-8, 1e1)}


ADAM4P, ADAM1P = Adam4pFamily(), Adam1pFamily()


class Adam4p(FamilyOptimizer):
    __doc__ = "One adam4p config: TF's Adam (ε before the bias correction)." + _UPDATE

    def __init__(self, params: Iterable, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, total_steps: int):
        super().__init__(params, ADAM4P, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps), total_steps)


class Adam1p(FamilyOptimizer):
    __doc__ = "One adam1p config: TF's Adam with only the learning rate free." + _UPDATE

    def __init__(self, params: Iterable, lr: float = 1e-3, *, total_steps: int):
        super().__init__(params, ADAM1P, {"lr": lr}, total_steps)
