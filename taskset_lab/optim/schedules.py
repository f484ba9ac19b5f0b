"""Learning-rate schedules as tensor functions of the step (batch-friendly, no host sync).

Both schedules are evaluated at the **0-based** step ``s`` (the number of updates already
made: the first update uses ``s = 0``), as TaskSet's and opt_list's code read their global
step before incrementing it. They return the scheduled learning rate itself (not a
multiplier) and keep the published order of operations, so a float64 evaluation matches
the published formula to rounding. Hyperparameters may be 0-dim or ``[K, 1, ...]`` tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: TaskSet's adam8p/adam6p measure their decay in steps of a 10,000-step run
RESCALE_STEPS = 10000.0


def opt_list_cosine_lr(step0: Tensor, total_steps: int, lr: Tensor, warmup_fraction: Tensor,
                       constant_fraction: Tensor, min_lr_mult: Tensor) -> Tensor:
    """opt_list's warmup / constant / cosine schedule (``torch_opt_list.py``), at step ``s``.

    With ``T = total_steps``, ``s' = min(s, T)`` and ``C = constant_fraction·T``:

    * warmup (only when ``warmup_fraction > 0``): while ``s' < max(warmup_fraction,
      constant_fraction)·T`` the rate is ``s'/(max(warmup_fraction, constant_fraction)·T)·lr``
      (0 at the first update). The warmup lasts until the *larger* fraction, as published in
      opt_list's PyTorch code; TaskSet's TensorFlow copy uses the smaller one.
    * otherwise ``(lr - m·lr)·(cos(π·(max(s', C) - C)/(T - C))/2 + 1/2) + m·lr`` with
      ``m = min_lr_mult``: constant until ``C``, then cosine decay to ``m·lr`` at ``T``,
      held there after ``T``.

    ``constant_fraction = 1`` (no decay) divides 0 by 0 in the published code (its
    learning rate is NaN); here the cosine phase is taken as 0, giving ``lr``.
    """
    total = float(total_steps)
    gs = torch.clamp(step0, max=total)
    constant_steps = total * constant_fraction
    x = torch.maximum(gs, constant_steps)
    min_lr = min_lr_mult * lr
    span = total - constant_steps
    has_span = span > 0
    phase = torch.where(has_span, (x - constant_steps) * math.pi / torch.where(has_span, span, 1.0), 0.0)
    constant_and_decay = (lr - min_lr) * (torch.cos(phase) / 2.0 + 0.5) + min_lr
    warmup_steps = total * torch.maximum(warmup_fraction, constant_fraction)
    is_warmup = (warmup_fraction > 0) & (warmup_steps > gs)
    warmup_lr = gs / torch.where(is_warmup, warmup_steps, 1.0) * lr
    return torch.where(is_warmup, warmup_lr, constant_and_decay)


def taskset_decay_lr(step0: Tensor, rescale: float, lr: Tensor, linear_decay: Tensor,
                     exponential_decay: Tensor) -> Tensor:
    """adam8p's decay at step ``s``: ``exp(-exponential_decay·r)·max(1 - linear_decay·r, 0)·lr``.

    ``r = rescale·s``; TaskSet's adam6p passes ``rescale = 10000/T`` (the decay of a
    10,000-step run squeezed into ``T`` steps), its adam8p getter drops the run length so
    ``rescale = 1`` (the raw step count).
    """
    r = float(rescale) * step0
    exp_factor = torch.exp(-exponential_decay * r)
    linear_factor = torch.clamp(1 - linear_decay * r, min=0.0)
    return exp_factor * linear_factor * lr
