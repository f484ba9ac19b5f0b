"""TaskSet's activation functions by name: the one table every task family uses.

TaskSet's ``utils._activation_fn_map`` (``task_set/tasks/utils.py``): ``relu``, ``tanh``,
``cos``, ``elu``, ``sigmoid``, ``swish`` (``x * sigmoid(x)``, written out as TaskSet
writes it) and three leaky ReLUs named by their negative slope: ``leaky_relu4``
(``max(x, 0.4 x)``), ``leaky_relu2`` (0.2) and ``leaky_relu1`` (0.1).
A family whose configs use other names (the project's ``lab_mlp`` says ``leaky_relu`` for
slope 0.2) maps its names onto this table explicitly
(:data:`taskset_lab.tasks.families.mlp.ACTIVATIONS`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Activation = Callable[[Tensor], Tensor]


def swish(x: Tensor) -> Tensor:
    """``x * sigmoid(x)`` (TaskSet's form; equal to ``F.silu`` up to rounding)."""
    return x * torch.sigmoid(x)


def _leaky(slope: float) -> Activation:
    def leaky_relu(x: Tensor) -> Tensor:
        return F.leaky_relu(x, slope)

    leaky_relu.__doc__ = f"``max(x, {slope} x)``"
    return leaky_relu


ACTIVATIONS: dict[str, Activation] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "cos": torch.cos,
    "elu": F.elu,
    "sigmoid": torch.sigmoid,
    "swish": swish,
    "leaky_relu4": _leaky(0.4),
    "leaky_relu2": _leaky(0.2),
    "leaky_relu1": _leaky(0.1),
}


def activation(name_or_fn: str | Activation) -> Activation:
    """The activation called ``name_or_fn`` in :data:`ACTIVATIONS`, or the callable itself."""
    return ACTIVATIONS[name_or_fn] if isinstance(name_or_fn, str) else name_or_fn
