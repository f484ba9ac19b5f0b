"""The nadamw family: opt_list's NAdamW with a warmup–constant–cosine schedule.

The update is opt_list's published PyTorch reference (``NadamWCosineDecay`` in
``opt_list/torch_opt_list.py``, the same as TaskSet's ``NAdamWOptimizer``), per parameter,
with the 0-based step ``s`` and ``t = s + 1``::

    lr_s = opt_list_cosine_lr(s)                       (see schedules.opt_list_cosine_lr)
    g'   = g - l2_weight_decay·θ                       (sic: the published sign)
    m    = β1·m + (1-β1)·g'         v = β2·v + (1-β2)·g'²
    lr_t = lr_s·sqrt(1-β2ᵗ)/(1-β1ᵗ)                    (bias correction folded into the rate)
    n    = β1·m + (1-β1)·g'  (nesterov)   or   m
    θ   ← θ - (lr_t·n/(sqrt(v) + ε) + lr_t·decoupled_weight_decay·θ)

How it differs from ``torch.optim.Adam``/``AdamW``/``NAdam``: ε is added to ``sqrt(v)``
*before* the bias correction (equivalently ``ε·sqrt(1-β2ᵗ)`` against torch's ε), so a large
ε acts as a learning-rate scale early on; the decoupled weight decay is scaled by the
bias-corrected rate ``lr_t``, not by ``lr``; the Nesterov numerator uses the fresh moment
and gradient with no momentum schedule; the L2 term is *subtracted* from the gradient
(``g - l2·θ``, which pushes weights away from 0; kept as published so that opt_list's
configs behave as they did when the list was learned); the schedule reads the step before
the update (a warmup's first update has rate 0). opt_list evaluates its schedule in float32;
here it is evaluated in the compute dtype. ``nesterov`` is a 0/1 number (``sample`` gives a
bool) so that a population can mix both kinds; bias correction is always on (as in every
released config).

Search space (``nadamw_grid``; ``RandomState(seed + 14358)``, draws in this order): lr
log-U[1e-5, 1]; β1 = 1 - log-U[1e-3, 1]; β2 = 1 - log-U[1e-5, 1]; ε log-U[1e-8, 1e4];
nesterov = U > 0.5; u = U: decoupled only (u < 0.3333), L2 only (u < 0.6666) or both
(decoupled drawn first), each log-U[1e-5, 0.1]; warmup_fraction log-U[1e-5, 0.1] if U > 0.5
else 0; min_lr_mult 0 if U > 0.5 else log-U[1e-5, 1]; constant_fraction U[0, 1].
Config ``nadamw_grid_seed<N>`` of opt_list is ``sample(N)``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from taskset_lab.optim.base import (IN_PLACE, FamilyOptimizer, HParams, OptimizerFamily, gate, moment_coefficients,
                                    update_moments_)
from taskset_lab.optim.sampling import check_range, family_rng, log_uniform
from taskset_lab.optim.schedules import opt_list_cosine_lr

NADAMW_NAMES = ("lr", "beta1", "beta2", "eps", "nesterov", "decoupled_weight_decay",
                "l2_weight_decay", "warmup_fraction", "min_lr_mult", "constant_fraction")
#: TaskSet's seed offset of the nadamw_grid sampler
NADAMW_SEED_OFFSET = 14358


_UPDATE = """

    Update (opt_list's ``NadamWCosineDecay``; ``s`` = updates already made, ``t = s + 1``)::

        g' = g - l2_weight_decay·θ                        (the published sign)
        m = β1·m + (1-β1)·g'      v = β2·v + (1-β2)·g'²
        lr_t = opt_list_cosine_lr(s)·sqrt(1-β2ᵗ)/(1-β1ᵗ)
        θ ← θ - lr_t·n/(sqrt(v) + ε) - lr_t·decoupled_weight_decay·θ,   n = β1·m + (1-β1)·g' or m

    Unlike torch.optim's Adam/AdamW/NAdam: ε sits before the bias correction, the decoupled
    decay is scaled by ``lr_t``, the L2 term is subtracted, the schedule reads the step
    before the update (a warmup's first update has rate 0; the warmup lasts
    ``max(warmup_fraction, constant_fraction)·T``).
    """


class NAdamWFamily(OptimizerFamily):
    __doc__ = "The nadamw family: opt_list's NAdamW search space (nadamw_grid) and update." + _UPDATE

    name = "nadamw"
    hparam_names = NADAMW_NAMES
    state_names = ("m", "v")
    released_name = "nadamw_grid"
    released_keys = {"lr": "learning_rate", "beta1": "beta1", "beta2": "beta2", "eps": "epsilon",
                     "nesterov": "use_nesterov", "decoupled_weight_decay": "adamw_weight_decay",
                     "l2_weight_decay": "l2_weight_decay", "warmup_fraction": "warmup_fraction",
                     "min_lr_mult": "min_learning_rate_mult", "constant_fraction": "constant_fraction"}

    def sample(self, seed: int) -> HParams:
        rng = family_rng(seed, NADAMW_SEED_OFFSET)
        hp: HParams = {
            "lr": log_uniform(rng, 1e-5, 1e0),
            "beta1": 1 - log_uniform(rng, 1e-3, 1e0),
            "beta2": 1 - log_uniform(rng, 1e-5, 1e0),
            "eps": log_uniform(rng, 1e-8, 1e4),
            "nesterov": bool(rng.uniform(0.0, 1.0) > 0.5),
        }
        mode = rng.uniform(0, 1)
        if mode < 0.3333:
            hp["decoupled_weight_decay"], hp["l2_weight_decay"] = log_uniform(rng, 1e-5, 1e-1), 0.0
        elif mode < 0.6666:
            hp["decoupled_weight_decay"], hp["l2_weight_decay"] = 0.0, log_uniform(rng, 1e-5, 1e-1)
        else:
            hp["decoupled_weight_decay"] = log_uniform(rng, 1e-5, 1e-1)
            hp["l2_weight_decay"] = log_uniform(rng, 1e-5, 1e-1)
        hp["warmup_fraction"] = log_uniform(rng, 1e-5, 1e-1) if rng.uniform(0, 1) > 0.5 else 0.0
        hp["min_lr_mult"] = 0.0 if rng.uniform(0, 1) > 0.5 else log_uniform(rng, 1e-5, 1e0)
        hp["constant_fraction"] = float(rng.uniform(0.0, 1.0))
        return hp

    def defaults(self) -> HParams:
        return {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "nesterov": False,
                "decoupled_weight_decay": 0.0, "l2_weight_decay": 0.0, "warmup_fraction": 0.0,
                "min_lr_mult": 0.0, "constant_fraction": 1.0}

    def validate(self, hparams: Mapping[str, Any]) -> HParams:
        hp = super().validate(hparams)
        check_range(self.name, "lr", hp["lr"], low=0.0, low_open=True)
        check_range(self.name, "beta1", hp["beta1"], low=0.0, high=1.0, high_open=True)
        check_range(self.name, "beta2", hp["beta2"], low=0.0, high=1.0, high_open=True)
        check_range(self.name, "eps", hp["eps"], low=0.0, low_open=True)
        if hp["nesterov"] not in (0.0, 1.0):
            raise ValueError(f"{self.name}: hparam 'nesterov' = {hp['nesterov']!r} must be 0/1 (False/True)")
        for name in ("decoupled_weight_decay", "l2_weight_decay"):
            check_range(self.name, name, hp[name], low=0.0)
        for name in ("warmup_fraction", "min_lr_mult", "constant_fraction"):
            check_range(self.name, name, hp[name], low=0.0, high=1.0)
        return hp

    def coefficients(self, step, hp, total_steps, alive=None):
        t = step.to(hp["lr"].dtype)
        b1, b2 = hp["beta1"], hp["beta2"]
        lr_t = self.scheduled_lr(step, hp, total_steps) * torch.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        nesterov = hp["nesterov"] > 0.5
        # the numerator m·n_m + g'·n_g: β1·m + (1-β1)·g' with Nesterov, m (exactly) without
        return {**moment_coefficients(b1, b2, alive), "-l2": gate(alive, -hp["l2_weight_decay"], 0.0),
                "n_m": torch.where(nesterov, b1, 1.0), "n_g": gate(alive, torch.where(nesterov, 1.0 - b1, 0.0), 0.0),
                "lr_t": gate(alive, lr_t, 0.0), "lr_t*dwd": gate(alive, lr_t * hp["decoupled_weight_decay"], 0.0),
                "eps": hp["eps"]}

    def update_(self, p, g, state, c, ops=None):
        ops = ops or IN_PLACE
        g.addcmul_(p, c["-l2"])  # g' = g - l2·θ
        g2 = torch.empty_like(g) if ops.in_place else g
        g2 = update_moments_(state, g, c, square=g2, ops=ops)
        g.mul_(c["n_g"]).addcmul_(state["m"], c["n_m"])  # the numerator n
        g2 = ops.sqrt(state["v"], out=g2).add_(c["eps"])
        g.div_(g2).mul_(c["lr_t"]).addcmul_(p, c["lr_t*dwd"])  # Δ = lr_t·n/(sqrt(v) + ε) + lr_t·wd·θ
        p.sub_(g)

    def scheduled_lr(self, step, hp, total_steps):
        t = step.to(hp["lr"].dtype)
        return opt_list_cosine_lr(t - 1, total_steps, hp["lr"], hp["warmup_fraction"],
                                  hp["constant_fraction"], hp["min_lr_mult"])


NADAMW = NAdamWFamily()


class NAdamW(FamilyOptimizer):
    __doc__ = ("One nadamw config as a ``torch.optim.Optimizer`` (schedule included; needs total_steps). "
               "The defaults (``constant_fraction = 1``, no warmup) give a constant rate." + _UPDATE)

    def __init__(self, params: Iterable, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, nesterov: bool = False, decoupled_weight_decay: float = 0.0,
                 l2_weight_decay: float = 0.0, warmup_fraction: float = 0.0, min_lr_mult: float = 0.0,
                 constant_fraction: float = 1.0, *, total_steps: int):
        hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, nesterov=nesterov,
                  decoupled_weight_decay=decoupled_weight_decay, l2_weight_decay=l2_weight_decay,
                  warmup_fraction=warmup_fraction, min_lr_mult=min_lr_mult,
                  constant_fraction=constant_fraction)
        super().__init__(params, NADAMW, hp, total_steps)
