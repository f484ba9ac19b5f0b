"""TaskSet's 13 ``FixedMLP_*`` tasks: MLP classifiers on flattened images.

TaskSet's definitions (``task_set/tasks/fixed/fixed_mlp.py``), reproduced here:

* data: ``datasets.get_image_datasets(name, batch_size=128)``: images scaled to [0, 1], no
  augmentation, no centring, 3000 examples per validation split (the fixed tasks' default,
  not the families' 5000); flattened in NHWC order;
* layers: Sonnet 1 defaults, ``w ~ truncated_normal(stddev=1/sqrt(fan_in))`` cut at two
  stddevs, ``b = 0``; ReLU (or tanh) between layers, none after the logits;
* ``*_ce_*``: mean softmax cross-entropy; ``*_mse_*``: ``mean_classes((onehot - sigmoid(
  logits))^2)`` averaged over the batch;
* ``*_DropoutXX_*``: ``snt.nets.MLP(use_dropout=True)`` called with ``dropout_keep_prob=0.XX``
  and Sonnet's default ``is_training=True``: dropout with **keep** probability 0.XX (so
  ``Dropout08`` drops 20 %, ``Dropout02`` drops 80 %) on every hidden layer's pre-activation,
  **in training and in evaluation alike** (TaskSet never switches it off);
* ``*_LayerNorm_*``: ``Linear -> snt.LayerNorm -> act`` per hidden layer (normalised over the
  features, biased variance, eps 1e-5, trainable scale and offset);
* ``*_BatchNorm_*``: ``Linear -> snt.BatchNormV2()(net, is_training=False) -> act``: Sonnet's
  defaults (offset only, no scale, eps 1e-3) in **inference mode**: the moving statistics
  (mean 0, variance 1 when created) are used and never updated, in training and evaluation
  alike, so the layer is ``x / sqrt(1 + 1e-3) + beta``. That is what TaskSet's task computes.

Names with ``food10132x32`` are TaskSet's (``food101_32x32`` with the underscores removed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.tasks.base import Batch, Task
from taskset_lab.tasks.context import draw
from taskset_lab.tasks.images import ImageInput, build_fixed_image_task, nhwc_flatten
from taskset_lab.tasks.layers import SonnetLinear, SonnetMLP
from taskset_lab.tasks.registry import register_fixed_tasks

KIND = "FixedMLP"
ACTS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "tanh": torch.tanh}


class AlwaysDropout(nn.Module):
    """TF's ``dropout(x, rate)`` with Sonnet MLP's default ``is_training=True``: on in every
    mode. The mask comes from the step context (uniform noise under this layer's key)."""

    def __init__(self, keep_prob: float):
        super().__init__()
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"keep probability must be in (0, 1], got {keep_prob}")
        self.keep = float(keep_prob)

    def forward(self, x: Tensor) -> Tensor:
        u = draw(getattr(self, "_noise_key", "dropout"), tuple(x.shape), "uniform", x)
        return x * (u < self.keep).to(x.dtype) / self.keep


class SonnetLayerNorm(nn.Module):
    """``snt.LayerNorm()`` on ``[B, F]``: ``(x - mean) / sqrt(var + 1e-5) * gamma + beta`` with
    the mean and biased variance over the features."""

    def __init__(self, features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)
        self.gamma = nn.Parameter(torch.ones(features))
        self.beta = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.gamma + self.beta


class InferenceBatchNorm(nn.Module):
    """``snt.BatchNormV2()(x, is_training=False)`` as TaskSet calls it: the moving statistics
    (``moving_mean = 0``, ``moving_variance = 1``, never updated) normalise, then the offset
    ``beta`` (no scale): ``x / sqrt(1 + eps) + beta``. The same in training and evaluation."""

    def __init__(self, features: int, eps: float = 1e-3):
        super().__init__()
        self.eps = float(eps)
        self.register_buffer("moving_mean", torch.zeros(features))
        self.register_buffer("moving_variance", torch.ones(features))
        self.beta = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.moving_mean) * torch.rsqrt(self.moving_variance + self.eps) + self.beta


class NormMLP(nn.Module):
    """``Linear -> norm -> act`` for every hidden layer, then the logits layer (TaskSet's
    ``_fc_layer_norm_loss_fn`` / ``_fc_batch_norm_loss_fn``)."""

    def __init__(self, n_in: int, sizes: list[int], norm: Callable[[int], nn.Module], activation: str):
        super().__init__()
        dims = [n_in, *sizes]
        self.layers = nn.ModuleList(SonnetLinear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(norm(d) for d in sizes[:-1])
        self.activation = ACTS[activation]

    def forward(self, h: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.norms):
                h = self.activation(self.norms[i](h))
        return h


@dataclass(frozen=True)
class FixedMLPSpec:
    name: str
    dataset: str
    hidden: tuple[int, ...]
    loss: str = "ce"  # "ce" or "mse"
    activation: str = "relu"
    variant: str = "plain"  # "plain", "dropout", "layer_norm", "batch_norm"
    keep_prob: float = 1.0
    batch_size: int = 128


class ImageMLPNet(nn.Module):
    """Images ``[B, C, H, W]`` -> logits, for a :class:`FixedMLPSpec`."""

    def __init__(self, spec: FixedMLPSpec, n_in: int, num_classes: int):
        super().__init__()
        sizes = [*spec.hidden, num_classes]
        self.input = ImageInput(None, False)
        if spec.variant == "plain":
            self.mlp: nn.Module = SonnetMLP(n_in, sizes, ACTS[spec.activation])
        elif spec.variant == "dropout":
            self.mlp = SonnetMLP(n_in, sizes, ACTS[spec.activation], between=lambda _d: AlwaysDropout(spec.keep_prob))
        elif spec.variant == "layer_norm":
            self.mlp = NormMLP(n_in, sizes, SonnetLayerNorm, spec.activation)
        elif spec.variant == "batch_norm":
            self.mlp = NormMLP(n_in, sizes, InferenceBatchNorm, spec.activation)
        else:
            raise ValueError(f"unknown FixedMLP variant {spec.variant!r}")

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(nhwc_flatten(self.input(x, self.mlp.layers[0].w)))


class FixedMLPTask(Task):
    """A FixedMLP task: mean cross-entropy, or TaskSet's sigmoid mse, of the logits."""

    def __init__(self, spec: FixedMLPSpec, data: Any, shape: tuple[int, int, int], num_classes: int):
        super().__init__({"family": KIND, "name": spec.name}, data)
        self.dataset_name = spec.dataset  # the dataset the code loads (the catalogue shows it)
        self.spec, self.image_shape, self.num_classes = spec, shape, num_classes

    def make_module(self) -> nn.Module:
        return ImageMLPNet(self.spec, int(math.prod(self.image_shape)), self.num_classes)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        if self.spec.loss == "ce":
            return F.cross_entropy(output, batch[1])
        onehot = F.one_hot(batch[1], self.num_classes).to(output.dtype)
        return ((onehot - torch.sigmoid(output)) ** 2).mean(1).mean()


def _specs() -> list[FixedMLPSpec]:
    specs = []
    for dataset in ("cifar10", "mnist", "food101_32x32"):
        for loss in ("mse", "ce"):
            name = f"FixedMLP_{dataset.replace('_', '')}_{loss}_128x128x128_relu_bs128"
            specs.append(FixedMLPSpec(name, dataset, (128, 128, 128), loss=loss))
    for tag, keep in (("05", 0.5), ("08", 0.8), ("02", 0.2)):
        specs.append(FixedMLPSpec(f"FixedMLP_cifar10_Dropout{tag}_128x128_relu_bs128", "cifar10", (128, 128),
                                  variant="dropout", keep_prob=keep))
    for act in ("relu", "tanh"):
        specs.append(FixedMLPSpec(f"FixedMLP_cifar10_LayerNorm_128x128x128_{act}_bs128", "cifar10",
                                  (128, 128, 128), activation=act, variant="layer_norm"))
    specs.append(FixedMLPSpec("FixedMLP_cifar10_BatchNorm_128x128x128_relu_bs128", "cifar10", (128, 128, 128),
                              variant="batch_norm"))
    specs.append(FixedMLPSpec("FixedMLP_cifar10_BatchNorm_64x64x64x64x64_relu_bs128", "cifar10", (64,) * 5,
                              variant="batch_norm"))
    return specs


SPECS: dict[str, FixedMLPSpec] = {s.name: s for s in _specs()}


def build_spec(spec: FixedMLPSpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> FixedMLPTask:
    return build_fixed_image_task(lambda data, shape, classes: FixedMLPTask(spec, data, shape, classes), spec,
                                  data_dir, download, offline_data)


register_fixed_tasks(SPECS.values(), build_spec, kind=KIND)
