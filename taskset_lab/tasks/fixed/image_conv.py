"""TaskSet's 23 ``FixedImageConv`` tasks: conv nets classifying images.

TaskSet's definitions (``task_set/tasks/fixed/fixed_image_conv.py``), reproduced here:

* data: ``datasets.get_image_datasets(name, batch_size)``: images scaled to [0, 1], no
  augmentation, no centring, 3000 examples per validation split (800 for coil100, 700 for
  colorectal_histology, as TaskSet passes ``num_per_valid``); ``shuffle_buffer`` only changes
  TF's shuffling and has no counterpart here;
* conv stack: ``snt.nets.ConvNet2D(units, kernel_shapes=[(3, 3)], strides=[2, 1, 1, ...],
  paddings=[SAME], activate_final=True)``: every layer is a 3x3 conv with TF's ``SAME``
  padding (output ``ceil(n / s)``, the odd padding row at the bottom/right) and a bias, then
  (batch-norm tasks) ``snt.BatchNorm`` then the activation, after every layer including the
  last (Sonnet's ``normalize_final`` defaults to ``activate_final``);
* ``ce_pool_loss`` heads: global ``mean`` (``avg``) or ``max`` over H and W, then
  ``snt.Linear(num_classes)`` with Sonnet's default initialiser (the task's ``initializers``
  only reach the conv stack);
* ``ce_flatten_loss`` heads: NHWC flatten, then ``Linear -> act`` per FC width, then
  ``Linear(num_classes)``; here the task's ``initializers`` reach every Linear too;
* initialisers: Sonnet's default ``w ~ truncated_normal(stddev=1/sqrt(fan_in))`` (cut at two
  stddevs, ``fan_in = 9 c_in`` for a conv) and ``b = 0``; ``he`` is TF's ``he_normal``
  (truncated normal, stddev ``sqrt(2/fan_in)/0.8796``); ``normal``/``largenormal``/
  ``smallnormal`` are ``random_normal(0, 0.02 / 0.2 / 0.002)``; ``variance_scaling`` is
  ``tf.contrib.layers.variance_scaling_initializer()`` (factor 2, fan_in, truncated normal
  with stddev ``sqrt(1.3 * 2 / fan_in)``);
* BatchNorm: ``snt.BatchNorm`` defaults (offset ``beta`` only, no scale, eps 1e-3) called
  with ``is_training=True`` **always**: it normalises by the batch's own mean and biased
  variance in training **and in evaluation** (TaskSet never uses its moving averages, so none
  are kept here: :class:`BatchStatNorm` is stateless);
* loss: mean softmax cross-entropy.

Names that say less than (or something else than) TaskSet's code does; the code is followed:

* ``FixedImageConv_cifar10_32x64x128_he_bs64`` is **tanh** with **max** pooling;
* ``*_32x64x128_{normal,largenormal,smallnormal}_bs64`` and ``*_32x64x128x128x128_avg_he_bs64``
  are **tanh** (avg pooling);
* ``FixedImageConv_cifar100_32x64x128_FC64x32_tanh_variance_scaling_bs64`` is a flatten head
  (as its cifar10 sibling, whose name says ``flatten``);
* ``Mnist_Conv_32x16x64_flatten_FC32_tanh_bs32`` is a FixedImageConv task (TaskSet's name);
* names with ``food10164x64``, ``coil10032x32``, ``sun39732x32`` and
  ``colorectalhistology32x32`` are TaskSet's ``food101_64x64``, ``coil100_32x32``,
  ``sun397_32x32`` and ``colorectal_histology_32x32``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.tasks.layers import same_padding
from taskset_lab.tasks.images import (
    ImageInput,
    TasksetImageClassification,
    nhwc_flatten,
)
from taskset_lab.tasks.initializers import TRUNC_STD, tf_init, trunc_normal
from taskset_lab.tasks.images import NUM_PER_VALID, build_fixed_image_task
from taskset_lab.tasks.registry import register_fixed_tasks

KIND = "FixedImageConv"
KERNEL = 3
ACTS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "tanh": torch.tanh}

#: initialiser names of the fixed conv tasks -> a function of (TF-layout shape, fan_in)
InitName = str


def init_weight(init: InitName, shape: Sequence[int], fan_in: int) -> Tensor:
    """A weight of TF-layout ``shape`` drawn (global torch RNG) as the fixed task's
    initialiser ``init`` does; ``fan_in`` is TF's fan-in of that weight."""
    if init == "sonnet":
        return trunc_normal(shape, 1.0 / math.sqrt(fan_in))
    if init == "he":
        return trunc_normal(shape, math.sqrt(2.0 / fan_in) / TRUNC_STD)
    if init == "variance_scaling":  # tf.contrib.layers.variance_scaling_initializer()
        return trunc_normal(shape, math.sqrt(1.3 * 2.0 / fan_in))
    stds = {"normal": 0.02, "largenormal": 0.2, "smallnormal": 0.002}
    if init in stds:
        return tf_init(("random_normal", stds[init]), shape)
    raise ValueError(f"unknown fixed-conv initialiser {init!r}")


class SameConv2d(nn.Module):
    """``snt.Conv2D(c_out, kernel, stride, padding=SAME)`` with a bias (TF's padding split)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, init: InitName = "sonnet", kernel: int = KERNEL):
        super().__init__()
        self.stride, self.kernel = int(stride), int(kernel)
        w = init_weight(init, (kernel, kernel, c_in, c_out), kernel * kernel * c_in)  # [kh, kw, in, out]
        self.weight = nn.Parameter(w.permute(3, 2, 0, 1).contiguous())
        self.bias = nn.Parameter(torch.zeros(int(c_out)))

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding(x.shape[-2], self.stride, self.kernel)
        left, right = same_padding(x.shape[-1], self.stride, self.kernel)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, stride=self.stride)


class BatchStatNorm(nn.Module):
    """``snt.BatchNorm()(x, is_training=True)``: normalise each channel by the batch's mean and
    biased variance over (N, H, W), eps 1e-3, then add the offset ``beta`` (no scale). Used so
    in training and evaluation alike, as TaskSet calls it; no moving statistics are kept."""

    def __init__(self, channels: int, eps: float = 1e-3):
        super().__init__()
        self.eps = float(eps)
        self.beta = nn.Parameter(torch.zeros(int(channels)))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) + self.beta.reshape(1, -1, 1, 1)


class ConvNet2D(nn.Module):
    """``snt.nets.ConvNet2D`` as the fixed tasks use it: 3x3 SAME convs with biases, each
    followed by (optional) batch norm and the activation, the last layer included."""

    def __init__(self, c_in: int, units: Sequence[int], strides: Sequence[int], activation: str,
                 init: InitName = "sonnet", batch_norm: bool = False):
        super().__init__()
        chans = [int(c_in), *(int(u) for u in units)]
        self.layers = nn.ModuleList(SameConv2d(a, b, s, init) for a, b, s in zip(chans[:-1], chans[1:], strides))
        self.norms = nn.ModuleList(BatchStatNorm(b) for b in chans[1:]) if batch_norm else None
        self.activation = ACTS[activation]

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = self.activation(x)
        return x


def conv_out_hw(hw: int, strides: Sequence[int]) -> int:
    """Spatial size after SAME convs with ``strides`` (``ceil(n / s)`` each)."""
    for s in strides:
        hw = -(-hw // int(s))
    return hw


class FixedLinear(nn.Module):
    """``snt.Linear``: ``x @ w + b``, ``w [in, out]`` from the initialiser, ``b = 0``."""

    def __init__(self, n_in: int, n_out: int, init: InitName = "sonnet"):
        super().__init__()
        self.w = nn.Parameter(init_weight(init, (n_in, n_out), n_in))
        self.b = nn.Parameter(torch.zeros(int(n_out)))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.w + self.b


@dataclass(frozen=True)
class FixedConvSpec:
    name: str
    dataset: str
    units: tuple[int, ...]
    activation: str = "relu"
    head: str = "avg"  # "avg" / "max" (ce_pool_loss) or "flatten" (ce_flatten_loss)
    fc: tuple[int, ...] = ()
    init: InitName = "sonnet"
    batch_norm: bool = False
    batch_size: int = 128
    num_per_valid: int = NUM_PER_VALID

    @property
    def strides(self) -> tuple[int, ...]:
        return (2,) + (1,) * (len(self.units) - 1)


class FixedConvNet(nn.Module):
    """Images ``[B, C, H, W]`` -> logits for a :class:`FixedConvSpec`."""

    def __init__(self, spec: FixedConvSpec, shape: Sequence[int], num_classes: int):
        super().__init__()
        c, h, w = (int(v) for v in shape)
        self.input = ImageInput(None, False)
        self.convs = ConvNet2D(c, spec.units, spec.strides, spec.activation, spec.init, spec.batch_norm)
        self.head, self.activation = spec.head, ACTS[spec.activation]
        if spec.head == "flatten":
            flat = conv_out_hw(h, spec.strides) * conv_out_hw(w, spec.strides) * spec.units[-1]
            dims = [flat, *spec.fc, num_classes]
            self.fcs = nn.ModuleList(FixedLinear(a, b, spec.init) for a, b in zip(dims[:-1], dims[1:]))
        else:
            self.fcs = nn.ModuleList([FixedLinear(spec.units[-1], num_classes)])

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs(self.input(x, self.fcs[0].w))
        if self.head == "avg":
            h = h.mean(dim=(2, 3))
        elif self.head == "max":
            h = h.amax(dim=(2, 3))
        else:
            h = nhwc_flatten(h)
        for i, layer in enumerate(self.fcs):
            h = layer(h)
            if i < len(self.fcs) - 1:
                h = self.activation(h)
        return h


class FixedImageConvTask(TasksetImageClassification):
    """A FixedImageConv task: mean softmax cross-entropy of the logits."""

    def __init__(self, spec: FixedConvSpec, data: Any, shape: tuple[int, int, int], num_classes: int):
        super().__init__({"family": KIND, "name": spec.name}, data)
        self.spec, self.image_shape, self.num_classes = spec, shape, num_classes

    def make_module(self) -> nn.Module:
        return FixedConvNet(self.spec, self.image_shape, self.num_classes)


def _specs() -> list[FixedConvSpec]:
    S = FixedConvSpec
    c10 = "FixedImageConv_cifar10_"
    return [
        S(c10 + "32x64x64_bs128", "cifar10", (32, 64, 64)),
        S(c10 + "32x64x64_tanh_bs64", "cifar10", (32, 64, 64), "tanh", batch_size=64),
        S(c10 + "32x64x128_he_bs64", "cifar10", (32, 64, 128), "tanh", "max", init="he", batch_size=64),
        S(c10 + "32x64x128_normal_bs64", "cifar10", (32, 64, 128), "tanh", init="normal", batch_size=64),
        S(c10 + "32x64x128_largenormal_bs64", "cifar10", (32, 64, 128), "tanh", init="largenormal", batch_size=64),
        S(c10 + "32x64x128_smallnormal_bs64", "cifar10", (32, 64, 128), "tanh", init="smallnormal", batch_size=64),
        S(c10 + "32x64x128x128x128_avg_he_bs64", "cifar10", (32, 64, 128, 128, 128), "tanh", init="he",
          batch_size=64),
        S(c10 + "batchnorm_32x64x64_bs128", "cifar10", (32, 64, 64), batch_norm=True),
        S(c10 + "batchnorm_32x32x32x64x64_bs128", "cifar10", (32, 32, 32, 64, 64), batch_norm=True),
        S("FixedImageConv_food101_batchnorm_32x32x32x64x64_bs128", "food101_32x32", (32, 32, 32, 64, 64),
          batch_norm=True),
        S("FixedImageConv_cifar100_bn_32x64x128x128_bs128", "cifar100", (32, 64, 128, 128), batch_norm=True),
        S("FixedImageConv_coil10032x32_bn_32x64x128x128_bs128", "coil100_32x32", (32, 64, 128, 128),
          batch_norm=True, num_per_valid=800),
        S("FixedImageConv_sun39732x32_bn_32x64x128x128_bs128", "sun397_32x32", (32, 64, 128, 128), batch_norm=True),
        S(c10 + "32x64x64_flatten_bs128", "cifar10", (32, 64, 64), head="flatten"),
        S(c10 + "32x64x64_fc_64_bs128", "cifar10", (32, 64, 64), head="flatten", fc=(64,)),
        S("FixedImageConv_mnist_32x64x64_fc_64_bs128", "mnist", (32, 64, 64), head="flatten", fc=(64,)),
        S("Mnist_Conv_32x16x64_flatten_FC32_tanh_bs32", "mnist", (32, 16, 64), "tanh", "flatten", (32,),
          batch_size=32),
        S(c10 + "32x64x128_flatten_FC64x32_tanh_he_bs8", "cifar10", (32, 64, 128), "tanh", "flatten", (64, 32),
          init="he", batch_size=8),
        S(c10 + "32x64x128_flatten_FC64x32_tanh_variance_scaling_bs64", "cifar10", (32, 64, 128), "tanh",
          "flatten", (64, 32), init="variance_scaling", batch_size=64),
        S("FixedImageConv_cifar100_32x64x128_FC64x32_tanh_variance_scaling_bs64", "cifar100", (32, 64, 128),
          "tanh", "flatten", (64, 32), init="variance_scaling", batch_size=64),
        S("FixedImageConv_cifar100_32x64x64_flatten_bs128", "cifar100", (32, 64, 64), head="flatten"),
        S("FixedImageConv_food10164x64_Conv_32x64x64_flatten_bs64", "food101_64x64", (32, 64, 64),
          head="flatten", batch_size=64),
        S("FixedImageConv_colorectalhistology32x32_32x64x64_flatten_bs128", "colorectal_histology_32x32",
          (32, 64, 64), head="flatten", num_per_valid=700),
    ]


SPECS: dict[str, FixedConvSpec] = {s.name: s for s in _specs()}


def build_spec(spec: FixedConvSpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> FixedImageConvTask:
    return build_fixed_image_task(lambda data, shape, classes: FixedImageConvTask(spec, data, shape, classes), spec,
                                  data_dir, download, offline_data, spec.num_per_valid)


register_fixed_tasks(SPECS.values(), build_spec, kind=KIND)
