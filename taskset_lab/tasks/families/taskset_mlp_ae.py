"""TaskSet's ``mlp_ae_family``: an MLP autoencoder on flattened images.

What TaskSet's built task computes (``task_set/tasks/mlp_ae.py``), and what this does:

* input: the image pipeline of :mod:`taskset_image` (uint8 -> [0, 1], the config's
  augmentation), ``snt.BatchFlatten`` in NHWC order -> ``x [B, D]`` with ``D = H*W*C``;
  for ``output_type`` ``tanh`` and ``linear_center`` the image is centred, ``x -> 2x - 1``
  (it is then both the network's input and its reconstruction target);
* model: ``snt.nets.MLP(hidden_units + [D], activation, initializers={"w": w_init})``: every
  layer ``h @ w + b`` (bias zeros), the activation between layers, none after the last;
* output: ``sigmoid`` / ``tanh`` of the last layer, or nothing (``linear``,
  ``linear_center``);
* loss: per image, ``reduce_mean`` or ``reduce_sum`` over the ``D`` features of
  ``(out - x)^2`` (``l2``) or ``|out - x|`` (``l1``); then the mean over the batch. So
  ``reduce_sum`` losses are per image, ``reduce_mean`` ones per pixel value.

The Sonnet-1 MLP pieces here (:class:`SonnetMLP`, :func:`sonnet_default_weight`) are
shared with the VAE family and the fixed MLP tasks.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from taskset_lab.tasks.base import Batch, Task
from taskset_lab.tasks.families.taskset_image import (
    ACTIVATION_FIELD,
    DATASET_FIELD,
    INIT_FIELD,
    ImageInput,
    augmented_shape,
    build_image_task,
    nhwc_flatten,
)
from taskset_lab.tasks.families.taskset_rnn_core import ACTIVATIONS, tf_init
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released import RELEASED_SAMPLERS

OUTPUT_TYPES = ("tanh", "sigmoid", "linear_center", "linear")
LOSS_TYPES = ("l2", "l1")
REDUCTIONS = ("reduce_mean", "reduce_sum")
CENTERED_OUTPUTS = ("tanh", "linear_center")


# ------------------------------------------------------------------ Sonnet 1 MLP


def sonnet_default_weight(n_in: int, n_out: int) -> Tensor:
    """``snt.Linear``'s default ``w``: ``truncated_normal(stddev=1/sqrt(n_in))``, i.e. a
    normal of that stddev cut at two stddevs (TF1's truncated normal is not rescaled)."""
    z = torch.randn(int(n_in), int(n_out))
    while True:  # redraw the values beyond two stddevs (about 4.6 %) until none is left
        outside = z.abs() > 2.0
        count = int(outside.sum())
        if count == 0:
            return z * (1.0 / math.sqrt(n_in))
        z[outside] = torch.randn(count)


class SonnetLinear(nn.Module):
    """``snt.Linear``: ``x @ w + b`` with ``w [in, out]`` (TF layout) from ``w_init`` (a TaskSet
    ``[name, scale]`` spec, or None for Sonnet's default) and ``b`` zeros."""

    def __init__(self, n_in: int, n_out: int, w_init: Sequence[Any] | None = None):
        super().__init__()
        w = sonnet_default_weight(n_in, n_out) if w_init is None else tf_init(w_init, (n_in, n_out))
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.zeros(int(n_out)))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.w + self.b


class SonnetMLP(nn.Module):
    """``snt.nets.MLP(sizes, activation, initializers={"w": w_init})`` on ``[B, n_in]``: the
    activation after every layer but the last. ``between`` (optional) builds a module applied
    to each hidden layer's output before its activation (dropout in Sonnet's MLP does that)."""

    def __init__(self, n_in: int, sizes: Sequence[int], activation: str | Callable[[Tensor], Tensor],
                 w_init: Sequence[Any] | None = None, between: Callable[[int], nn.Module] | None = None):
        super().__init__()
        dims = [int(n_in), *(int(s) for s in sizes)]
        self.layers = nn.ModuleList(SonnetLinear(a, b, w_init) for a, b in zip(dims[:-1], dims[1:]))
        self.between = nn.ModuleList(between(d) for d in dims[1:-1]) if between is not None else None
        self.activation = ACTIVATIONS[activation] if isinstance(activation, str) else activation

    def forward(self, h: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                if self.between is not None:
                    h = self.between[i](h)
                h = self.activation(h)
        return h


# ------------------------------------------------------------------ the autoencoder


def reconstruction_loss(out: Tensor, target: Tensor, loss_type: str, reduction: str) -> Tensor:
    """Per-example ``l2``/``l1`` error, reduced over the features by mean or sum: ``[B]``."""
    diff = out - target
    err = diff * diff if loss_type == "l2" else diff.abs()
    return err.mean(1) if reduction == "reduce_mean" else err.sum(1)


class MLPAutoencoder(nn.Module):
    """Images ``[B, C, H, W]`` -> per-image reconstruction loss ``[B]`` (see module doc)."""

    def __init__(self, config: dict[str, Any], seen_shape: Sequence[int]):
        super().__init__()
        self.output_type = str(config["output_type"])
        self.loss_type, self.reduction = str(config["loss_type"]), str(config["reduction_type"])
        self.input = ImageInput(config["dataset"][2], self.output_type in CENTERED_OUTPUTS)
        d = int(math.prod(seen_shape))
        self.mlp = SonnetMLP(d, [*config["hidden_units"], d], config["activation"], config["w_init"])

    def forward(self, x: Tensor) -> Tensor:
        flat = nhwc_flatten(self.input(x, self.mlp.layers[0].w))
        out = self.mlp(flat)
        if self.output_type == "sigmoid":
            out = torch.sigmoid(out)
        elif self.output_type == "tanh":
            out = torch.tanh(out)
        return reconstruction_loss(out, flat, self.loss_type, self.reduction)


class PerExampleLossTask(Task):
    """A task whose module returns the per-example loss ``[B]``; the loss is its batch mean."""

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return output.mean()


class TasksetMLPAETask(PerExampleLossTask):
    def __init__(self, config: dict[str, Any], data: Any, shape: tuple[int, int, int]):
        super().__init__(config, data)
        self.image_shape = shape
        self.seen_shape = augmented_shape(shape, config["dataset"][2])

    def make_module(self) -> nn.Module:
        return MLPAutoencoder(self.config, self.seen_shape)


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> TasksetMLPAETask:
    return build_image_task(lambda data, shape, _classes: TasksetMLPAETask(config, data, shape), config, data_dir,
                            download, offline_data)


WIDTHS_FIELD = Field("list", items="int", check=lambda v: len(v) >= 1 and all(u >= 1 for u in v),
                     allowed="layer widths (ints >= 1), at least one")

FIELDS = {
    "hidden_units": WIDTHS_FIELD,
    "activation": ACTIVATION_FIELD,
    "w_init": INIT_FIELD,
    "dataset": DATASET_FIELD,
    "output_type": Field("str", choices=OUTPUT_TYPES),
    "loss_type": Field("str", choices=LOSS_TYPES),
    "reduction_type": Field("str", choices=REDUCTIONS),
}

register_task_family("mlp_ae_family", RELEASED_SAMPLERS["mlp_ae_family"], build, fields=FIELDS)
