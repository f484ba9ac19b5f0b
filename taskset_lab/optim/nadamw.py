"""The nadamw family: NAdam/Adam with decoupled and/or L2 weight decay and a
warmup–constant–cosine schedule (the search space of the TaskSet paper's NAdamW lists).

Update with moments ``m, v`` and ``g' = g + l2_weight_decay·θ``::

    m = β1·m + (1-β1)·g'        v = β2·v + (1-β2)·g'²
    m̂ = β1·m/(1-β1^(t+1)) + (1-β1)·g'/(1-β1^t)   (Nesterov)   or   m/(1-β1^t)
    θ ← θ - lr_t·( m̂/(sqrt(v/(1-β2^t)) + eps) + decoupled_weight_decay·θ )

``lr_t = lr · schedule(t)`` (see :func:`warmup_constant_cosine`). The decoupled decay is
multiplied by the scheduled rate ``lr_t`` (not by ``wd`` alone), the convention of
``torch.optim.AdamW`` (``θ ← θ - lr·wd·θ``) combined with an LR scheduler. ``nesterov`` is a
0/1 number (``sample`` gives a bool) so that a population can mix both kinds.

Search space: lr log-U[1e-5, 1]; β1 = 1 - log-U[1e-3, 1]; β2 = 1 - log-U[1e-5, 1];
eps log-U[1e-8, 1e4]; nesterov with p = 1/2; weight decay decoupled only, L2 only or both
(1/3 each), each log-U[1e-5, 0.1] (0 when unused); warmup_fraction log-U[1e-5, 0.1] with
p = 1/2 else 0; min_lr_mult 0 with p = 1/2 else log-U[1e-5, 1]; constant_fraction U[0, 1].
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import torch

from taskset_lab.optim.base import FamilyOptimizer, HParams, OptimizerFamily
from taskset_lab.optim.schedules import warmup_constant_cosine
from taskset_lab.optim.search_space import check_range, log_uniform

NADAMW_NAMES = ("lr", "beta1", "beta2", "eps", "nesterov", "decoupled_weight_decay",
                "l2_weight_decay", "warmup_fraction", "min_lr_mult", "constant_fraction")


class NAdamWFamily(OptimizerFamily):
    name = "nadamw"
    hparam_names = NADAMW_NAMES
    state_names = ("m", "v")

    def sample(self, seed: int) -> HParams:
        rng = np.random.default_rng(seed)
        hp: HParams = {
            "lr": log_uniform(rng, 1e-5, 1.0),
            "beta1": 1.0 - log_uniform(rng, 1e-3, 1.0),
            "beta2": 1.0 - log_uniform(rng, 1e-5, 1.0),
            "eps": log_uniform(rng, 1e-8, 1e4),
            "nesterov": bool(rng.uniform() < 0.5),
        }
        mode = int(rng.integers(3))  # 0: decoupled only, 1: L2 only, 2: both
        decoupled = log_uniform(rng, 1e-5, 0.1)
        l2 = log_uniform(rng, 1e-5, 0.1)
        hp["decoupled_weight_decay"] = decoupled if mode in (0, 2) else 0.0
        hp["l2_weight_decay"] = l2 if mode in (1, 2) else 0.0
        warmup = log_uniform(rng, 1e-5, 0.1)
        hp["warmup_fraction"] = warmup if rng.uniform() < 0.5 else 0.0
        min_mult = log_uniform(rng, 1e-5, 1.0)
        hp["min_lr_mult"] = 0.0 if rng.uniform() < 0.5 else min_mult
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

    def update(self, p, g, state, step, hp, total_steps):
        b1, b2 = hp["beta1"], hp["beta2"]
        g = g + hp["l2_weight_decay"] * p
        m = b1 * state["m"] + (1.0 - b1) * g
        v = b2 * state["v"] + (1.0 - b2) * g * g
        plain = m / (1.0 - b1 ** step)
        nesterov = b1 * m / (1.0 - b1 ** (step + 1)) + (1.0 - b1) * g / (1.0 - b1 ** step)
        m_hat = torch.where(hp["nesterov"] > 0.5, nesterov, plain)
        v_hat = v / (1.0 - b2 ** step)
        lr = hp["lr"] * warmup_constant_cosine(step, total_steps, hp["warmup_fraction"],
                                               hp["constant_fraction"], hp["min_lr_mult"])
        new_p = p - lr * (m_hat / (torch.sqrt(v_hat) + hp["eps"]) + hp["decoupled_weight_decay"] * p)
        return new_p, {"m": m, "v": v}


NADAMW = NAdamWFamily()


class NAdamW(FamilyOptimizer):
    """One nadamw config as a ``torch.optim.Optimizer`` (schedule included; needs total_steps)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, nesterov: bool = False, decoupled_weight_decay: float = 0.0,
                 l2_weight_decay: float = 0.0, warmup_fraction: float = 0.0, min_lr_mult: float = 0.0,
                 constant_fraction: float = 1.0, *, total_steps: int):
        hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, nesterov=nesterov,
                  decoupled_weight_decay=decoupled_weight_decay, l2_weight_decay=l2_weight_decay,
                  warmup_fraction=warmup_fraction, min_lr_mult=min_lr_mult,
                  constant_fraction=constant_fraction)
        super().__init__(params, NADAMW, hp, total_steps)
