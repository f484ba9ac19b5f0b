"""Stateful and random layers for tasks written in plain PyTorch: :class:`Dropout` and
:class:`BatchNorm`. They take their randomness, mode and state updates from the step context
(:mod:`taskset_lab.tasks.context`), so they work in the vmapped engine (``torch.func``'s
``functional_call`` + ``vmap`` over parameters stacked on a leading ``[K]`` axis, float32 and
float64) and in a plain PyTorch loop alike (docs/design.md §Stateful and random tasks).

(TaskSet's own tasks use the Sonnet-style layers of :mod:`taskset_lab.tasks.layers`; the fixed
MLP tasks have their own dropout and inference-mode batch norm, as TaskSet builds them.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from taskset_lab.tasks.context import draw, is_training, update_state


class Dropout(nn.Module):
    """Inverted dropout with drop probability ``rate``; its mask comes from the step context
    (uniform noise under this layer's key), so it is reproducible per config and step."""

    def __init__(self, rate: float):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not is_training(self):
            return x
        keep = 1.0 - self.rate
        u = draw(getattr(self, "_noise_key", "dropout"), tuple(x.shape), "uniform", x)
        return x * (u < keep).to(x.dtype) / keep


class BatchNorm(nn.Module):
    """Batch normalisation over every dimension but dim 1 (features / channels).

    Training mode normalises with the batch statistics (biased variance) and moves the
    running statistics by ``momentum`` (torch's convention: ``new = (1 - m) old + m batch``,
    unbiased variance; TF's ``decay`` d is ``m = 1 - d``); eval mode uses the running
    statistics. The running statistics are task state (``task_state = True``)."""

    task_state = True

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 center: bool = True, scale: bool = True):
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.weight = nn.Parameter(torch.ones(num_features)) if affine and scale else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine and center else None

    def forward(self, x: Tensor) -> Tensor:
        dims = [0] + list(range(2, x.dim()))
        view = (1, -1) + (1,) * (x.dim() - 2)
        if is_training(self):
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)
            n = x.numel() // x.shape[1]
            m = self.momentum
            update_state(self, "running_mean", (1 - m) * self.running_mean + m * mean.detach())
            update_state(self, "running_var",
                         (1 - m) * self.running_var + m * var.detach() * (n / max(n - 1, 1)))
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.reshape(view)) * torch.rsqrt(var.reshape(view) + self.eps)
        if self.weight is not None:
            y = y * self.weight.reshape(view)
        if self.bias is not None:
            y = y + self.bias.reshape(view)
        return y
