"""TaskSet's ``conv_pooling_family`` and ``conv_fc_family``: a conv stack on images, then global
pooling and a linear layer (conv_pooling) or a flatten and an MLP (conv_fc).

The conv stack is Sonnet 1's ``snt.nets.ConvNet2D(hidden_units, kernel_shapes=[(3, 3)],
strides, paddings, activation, use_bias, initializers={"w": w_init}, activate_final=True)``:
every layer is conv 3x3 -> (+ bias, zero-initialised, when ``use_bias``) -> activation. Its
padding is per layer and matches TF exactly: ``VALID`` has no padding (output
``ceil((n - 2) / s)``); ``SAME`` gives output ``ceil(n / s)`` with ``max((out-1) s + 3 - n, 0)``
padding rows, the extra one at the bottom/right (TF's asymmetric split). Kernels are
initialised in TF's ``[3, 3, in, out]`` layout (fans ``9 in`` / ``9 out``).

* conv_pooling: ``mean`` / ``max`` / ``squared_mean`` (mean of squares) over H and W, then
  ``snt.Linear(num_classes)`` with ``w_init`` and a zero bias;
* conv_fc: NHWC flatten, then ``snt.nets.MLP(fc_hidden_units + [num_classes], activation,
  w_init)`` (biases always, no activation after the last layer).

Loss: mean softmax cross-entropy. :func:`conv_stack_shapes` and :class:`ConvStack` are
reusable by other image families.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.images import (
    ACTIVATION_FIELD,
    DATASET_FIELD,
    INIT_FIELD,
    ImageInput,
    TasksetImageClassification,
    augmented_shape,
    build_image_task,
    nhwc_flatten,
)
from taskset_lab.tasks.activations import ACTIVATIONS
from taskset_lab.tasks.layers import SonnetLinear, SonnetMLP, same_padding
from taskset_lab.tasks.initializers import tf_init
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.conv_fc import sample_conv_fc_family
from taskset_lab.tasks.released.conv_pooling import sample_conv_pooling_family

KERNEL = 3
PADDINGS = ("SAME", "VALID")
POOL_TYPES = ("mean", "max", "squared_mean")


# ------------------------------------------------------------------ TF padding arithmetic


def conv_output_size(n: int, stride: int, padding: str, kernel: int = KERNEL) -> int:
    """TF's output length of a conv over ``n`` inputs (``SAME``: ceil(n/s); ``VALID``:
    ceil((n - k + 1)/s))."""
    if padding == "SAME":
        return -(-n // stride)
    return -(-(n - kernel + 1) // stride)


def conv_stack_shapes(shape: Sequence[int], hidden_units: Sequence[int], strides: Sequence[Sequence[int]],
                      paddings: Sequence[str]) -> list[tuple[int, int, int]]:
    """``(C, H, W)`` after each conv layer (TF semantics); a ConfigError when a ``VALID``
    layer runs out of pixels (TF refuses such a graph too)."""
    c, h, w = (int(v) for v in shape)
    out = []
    for i, (units, stride, padding) in enumerate(zip(hidden_units, strides, paddings)):
        h2 = conv_output_size(h, int(stride[0]), padding)
        w2 = conv_output_size(w, int(stride[1]), padding)
        if h2 < 1 or w2 < 1:
            raise ConfigError("task.padding", f"conv layer {i} ({padding}, stride {list(stride)}) gets a {h}x{w} "
                                              f"input: no output pixels left (TF cannot build this task either)")
        c, h, w = int(units), h2, w2
        out.append((c, h, w))
    return out


class TFConv2d(nn.Module):
    """A 3x3 conv with TF's per-layer ``SAME``/``VALID`` padding and stride, optional bias."""

    def __init__(self, c_in: int, c_out: int, stride: Sequence[int], padding: str, use_bias: bool,
                 w_init: Sequence[Any], kernel: int = KERNEL):
        super().__init__()
        if padding not in PADDINGS:
            raise ConfigError("task.padding", f"{padding!r} is not one of {PADDINGS}")
        self.stride = (int(stride[0]), int(stride[1]))
        self.padding, self.kernel = padding, int(kernel)
        w = tf_init(w_init, (kernel, kernel, c_in, c_out))  # TF layout [kh, kw, in, out]
        self.weight = nn.Parameter(w.permute(3, 2, 0, 1).contiguous())
        self.bias = nn.Parameter(torch.zeros(c_out)) if use_bias else None

    def forward(self, x: Tensor) -> Tensor:
        if self.padding == "SAME":
            top, bottom = same_padding(x.shape[-2], self.stride[0], self.kernel)
            left, right = same_padding(x.shape[-1], self.stride[1], self.kernel)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, stride=self.stride)


class ConvStack(nn.Module):
    """``snt.nets.ConvNet2D`` as TaskSet configures it (activation after every layer)."""

    def __init__(self, in_channels: int, hidden_units: Sequence[int], strides: Sequence[Sequence[int]],
                 paddings: Sequence[str], activation: str, use_bias: bool, w_init: Sequence[Any]):
        super().__init__()
        chans = [int(in_channels), *(int(u) for u in hidden_units)]
        self.layers = nn.ModuleList(TFConv2d(a, b, s, p, use_bias, w_init)
                                    for a, b, s, p in zip(chans[:-1], chans[1:], strides, paddings))
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers:
            x = act(layer(x))
        return x


def pool(x: Tensor, kind: str) -> Tensor:
    """Global pooling over H and W of ``[B, C, H, W]``."""
    if kind == "mean":
        return x.mean(dim=(2, 3))
    if kind == "max":
        return x.amax(dim=(2, 3))
    if kind == "squared_mean":
        return (x * x).mean(dim=(2, 3))
    raise ConfigError("task.pool_type", f"{kind!r} is not one of {POOL_TYPES}")


class ConvPoolingNet(nn.Module):
    def __init__(self, config: Mapping[str, Any], shape: Sequence[int], num_classes: int):
        super().__init__()
        c = config
        self.input = ImageInput(c["dataset"][2], c["center_data"])
        self.convs = ConvStack(shape[0], c["hidden_units"], c["strides"], c["padding"], c["activation"],
                               c["use_bias"], c["w_init"])
        self.pool_type = c["pool_type"]
        self.linear = SonnetLinear(int(c["hidden_units"][-1]), num_classes, c["w_init"])

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs(self.input(x, self.linear.w))
        return self.linear(pool(h, self.pool_type))


class ConvFCNet(nn.Module):
    def __init__(self, config: Mapping[str, Any], shape: Sequence[int], num_classes: int, flat: int):
        super().__init__()
        c = config
        self.input = ImageInput(c["dataset"][2], c["center_data"])
        self.convs = ConvStack(shape[0], c["hidden_units"], c["strides"], c["padding"], c["activation"],
                               c["use_bias"], c["w_init"])
        self.head = SonnetMLP(flat, [*c["fc_hidden_units"], num_classes], c["activation"], c["w_init"])

    def forward(self, x: Tensor) -> Tensor:
        like = self.head.layers[0].w
        return self.head(nhwc_flatten(self.convs(self.input(x, like))))


class TasksetConvTask(TasksetImageClassification):
    def __init__(self, config: dict[str, Any], data: Any, shape: tuple[int, int, int], num_classes: int):
        super().__init__(config, data)
        self.image_shape, self.num_classes = shape, num_classes
        seen = augmented_shape(shape, config["dataset"][2])
        self.layer_shapes = conv_stack_shapes(seen, config["hidden_units"], config["strides"], config["padding"])

    def make_module(self) -> nn.Module:
        if "fc_hidden_units" in self.config:
            flat = int(math.prod(self.layer_shapes[-1]))
            return ConvFCNet(self.config, self.image_shape, self.num_classes, flat)
        return ConvPoolingNet(self.config, self.image_shape, self.num_classes)


def _check_lengths(config: Mapping[str, Any]) -> None:
    n = len(config["hidden_units"])
    for key in ("strides", "padding"):
        if len(config[key]) != n:
            raise ConfigError(f"task.{key}", f"needs one entry per conv layer ({n}), got {len(config[key])}")


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> TasksetConvTask:
    _check_lengths(config)
    return build_image_task(lambda data, shape, classes: TasksetConvTask(config, data, shape, classes), config,
                            data_dir, download, offline_data)


def _is_strides(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 1 and all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(i, int) and not isinstance(i, bool) and i >= 1
                                                    for i in s) for s in v)


def _is_paddings(v: Any) -> bool:
    return isinstance(v, list) and len(v) >= 1 and all(p in PADDINGS for p in v)


def _is_units(v: Any, empty_ok: bool = False) -> bool:
    return isinstance(v, list) and (empty_ok or len(v) >= 1) and all(
        isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in v)


CONV_FIELDS = {
    "strides": Field("list", check=_is_strides, allowed="one [s, s] stride pair (ints >= 1) per conv layer"),
    "hidden_units": Field("list", items="int", check=_is_units, allowed="conv channels per layer (ints >= 1)"),
    "activation": ACTIVATION_FIELD,
    "w_init": INIT_FIELD,
    "padding": Field("list", check=_is_paddings, allowed="'SAME' or 'VALID' per conv layer"),
    "use_bias": Field("bool"),
    "dataset": DATASET_FIELD,
    "center_data": Field("bool"),
}
POOLING_FIELDS = {**CONV_FIELDS, "pool_type": Field("str", choices=POOL_TYPES)}
FC_FIELDS = {**CONV_FIELDS, "fc_hidden_units": Field(
    "list", items="int", check=lambda v: _is_units(v, empty_ok=True), allowed="dense widths (ints >= 1), may be []")}

register_task_family("conv_pooling_family", sample_conv_pooling_family, build, fields=POOLING_FIELDS,
                     released=sample_conv_pooling_family)
register_task_family("conv_fc_family", sample_conv_fc_family, build, fields=FC_FIELDS, released=sample_conv_fc_family)
