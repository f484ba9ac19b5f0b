"""TaskSet's ``mlp_ae_family``: an MLP autoencoder on flattened images.

What TaskSet's built task computes (``task_set/tasks/mlp_ae.py``), and what this does:

* input: the image pipeline of :mod:`taskset_lab.tasks.images` (uint8 -> [0, 1], the config's
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

The Sonnet-1 MLP is :class:`taskset_lab.tasks.layers.SonnetMLP`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from taskset_lab.tasks.images import (
    WIDTHS_FIELD,
    ACTIVATION_FIELD,
    DATASET_FIELD,
    INIT_FIELD,
    ImageInput,
    augmented_shape,
    build_image_task,
    nhwc_flatten,
)
from taskset_lab.tasks.layers import SonnetMLP
from taskset_lab.tasks.losses import PerExampleLossTask
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.mlp_ae import sample_mlp_ae_family

OUTPUT_TYPES = ("tanh", "sigmoid", "linear_center", "linear")
LOSS_TYPES = ("l2", "l1")
REDUCTIONS = ("reduce_mean", "reduce_sum")
CENTERED_OUTPUTS = ("tanh", "linear_center")


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


FIELDS = {
    "hidden_units": WIDTHS_FIELD,
    "activation": ACTIVATION_FIELD,
    "w_init": INIT_FIELD,
    "dataset": DATASET_FIELD,
    "output_type": Field("str", choices=OUTPUT_TYPES),
    "loss_type": Field("str", choices=LOSS_TYPES),
    "reduction_type": Field("str", choices=REDUCTIONS),
}

register_task_family("mlp_ae_family", sample_mlp_ae_family, build, fields=FIELDS, released=sample_mlp_ae_family)
