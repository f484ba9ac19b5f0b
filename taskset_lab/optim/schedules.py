"""Learning-rate schedules as tensor functions of the step (batch-friendly, no host sync).

Every function takes ``step`` (1-based update count, a tensor) and returns the multiplier
of the base learning rate; hyperparameters may be 0-dim or ``[K, 1, ...]`` tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: TaskSet measures decay in "virtual" steps: t' = 10000 / total_steps * step
VIRTUAL_STEPS = 10000.0


def virtual_step(step: Tensor, total_steps: int) -> Tensor:
    return step * (VIRTUAL_STEPS / float(total_steps))


def linear_exponential_decay(step: Tensor, total_steps: int, linear_decay: Tensor,
                             exponential_decay: Tensor) -> Tensor:
    """adam8p's schedule: ``exp(-exp_decay·t') · max(1 - lin_decay·t', 0)``."""
    t = virtual_step(step, total_steps)
    return torch.exp(-exponential_decay * t) * torch.clamp(1.0 - linear_decay * t, min=0.0)


def warmup_constant_cosine(step: Tensor, total_steps: int, warmup_fraction: Tensor,
                           constant_fraction: Tensor, min_lr_mult: Tensor) -> Tensor:
    """nadamw's schedule over ``T = total_steps``.

    Linear warmup from 0 over ``warmup_fraction·T`` steps, then constant until
    ``max(constant_fraction, warmup_fraction)·T``, then cosine decay from 1 to
    ``min_lr_mult`` at ``T``. ``step`` counts updates from 1, so the first update of a
    warmup of W steps uses ``1/W`` of the rate.
    """
    total = float(total_steps)
    warm = warmup_fraction * total
    warm_mult = torch.where(warm > 0, torch.clamp(step / torch.clamp(warm, min=1e-12), max=1.0),
                            torch.ones_like(warm))
    decay_start = torch.maximum(constant_fraction, warmup_fraction) * total
    span = torch.clamp(total - decay_start, min=1e-12)
    progress = torch.clamp((step - decay_start) / span, min=0.0, max=1.0)
    cosine = 0.5 * (1.0 + torch.cos(math.pi * progress))
    decay_mult = min_lr_mult + (1.0 - min_lr_mult) * cosine
    return warm_mult * decay_mult
