"""``lab_conv_pooling`` (this project's family, not TaskSet's ``conv_pooling_family``): 3x3 convolutions, global mean/max pooling, then a linear classifier.

``"same"`` padding pads by 1 (so a stride-2 layer gives ``ceil(s / 2)``), ``"valid"`` by 0.
The sampler keeps the spatial size >= 1 on the sampled dataset: below size 4 a layer gets
stride 1, and with valid padding the stack stops before a layer that would not fit.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from taskset_lab.data import IMAGE_DATASETS
from taskset_lab.errors import ConfigError
from taskset_lab.tasks.base import TensorData
from taskset_lab.tasks.families.mlp import (
    DEFAULT_DATASETS,
    ImageClassificationTask,
    image_task_data,
    sample_batch_size,
    sample_dataset,
)
from taskset_lab.tasks.nn import (
    ACTIVATIONS,
    check_choice,
    check_initializer,
    derived_seed,
    family_rng,
    image_input,
    init_weight_,
    log_uniform_int,
    sample_activation,
    sample_initializer,
)
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.nn import INIT_ALLOWED, valid_init as _valid_init

FAMILY = "lab_conv_pooling"
PADDINGS = ("same", "valid")
POOLINGS = ("mean", "max")


def conv_out(size: int, stride: int, padding: str) -> int:
    """Spatial output size of a 3x3 convolution (may be < 1: the layer does not fit)."""
    pad = 1 if padding == "same" else 0
    return (size + 2 * pad - 3) // stride + 1 if size + 2 * pad >= 3 else 0


def spatial_sizes(size: int, strides: Sequence[int], padding: str) -> list[int]:
    """Input size followed by the output size of every layer."""
    sizes = [size]
    for stride in strides:
        sizes.append(conv_out(sizes[-1], stride, padding))
    return sizes


def sample(seed: int, datasets: Sequence[str] = DEFAULT_DATASETS) -> dict[str, Any]:
    rng = family_rng(FAMILY.removeprefix("lab_"), seed)  # the stream of its 0.1 name: same configs
    dataset = sample_dataset(rng, datasets)
    n_layers = int(rng.integers(1, 6))
    channels = [log_uniform_int(rng, 8, 64) for _ in range(n_layers)]
    wanted = [int(s) for s in rng.choice([1, 2], size=n_layers, p=[0.6, 0.4])]
    padding = PADDINGS[rng.integers(len(PADDINGS))]
    size, strides = IMAGE_DATASETS[dataset].size, []
    for stride in wanted:
        stride = stride if size >= 4 else 1
        if conv_out(size, stride, padding) < 1:
            break
        strides.append(stride)
        size = conv_out(size, stride, padding)
    return {
        "family": FAMILY,
        "dataset": dataset,
        "channels": channels[: len(strides)],
        "strides": strides,
        "padding": padding,
        "activation": sample_activation(rng),
        "init": sample_initializer(rng),
        "pooling": POOLINGS[rng.integers(len(POOLINGS))],
        "center_data": bool(rng.random() < 0.5),
        "batch_size": sample_batch_size(rng),
        "data_seed": derived_seed(rng),
    }


class ConvPooling(nn.Module):
    def __init__(self, in_channels: int, channels: Sequence[int], strides: Sequence[int], padding: str,
                 num_classes: int, activation: str, init: dict[str, Any], pooling: str, center: bool):
        super().__init__()
        pad = 1 if padding == "same" else 0
        ins = [in_channels, *channels[:-1]]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=s, padding=pad)
                                   for a, b, s in zip(ins, channels, strides))
        self.head = nn.Linear(channels[-1], num_classes)
        for layer in [*self.convs, self.head]:
            init_weight_(layer.weight, init)
            nn.init.zeros_(layer.bias)
        self.activation, self.pooling, self.center = activation, pooling, center

    def forward(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        h = image_input(x, self.head.weight, self.center)
        for conv in self.convs:
            h = act(conv(h))
        h = h.mean(dim=(-2, -1)) if self.pooling == "mean" else h.amax(dim=(-2, -1))
        return self.head(h)


class ConvPoolingTask(ImageClassificationTask):
    def __init__(self, config: dict[str, Any], data: TensorData, in_channels: int, num_classes: int):
        super().__init__(config, data)
        self.in_channels, self.num_classes = in_channels, num_classes

    def make_module(self) -> nn.Module:
        c = self.config
        return ConvPooling(self.in_channels, c["channels"], c["strides"], c["padding"], self.num_classes,
                           c["activation"], c["init"], c["pooling"], bool(c.get("center_data", False)))


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> ConvPoolingTask:
    check_choice(config, "activation", tuple(ACTIVATIONS))
    check_choice(config, "padding", PADDINGS)
    check_choice(config, "pooling", POOLINGS)
    check_initializer(config.get("init"))
    channels, strides = config.get("channels"), config.get("strides")
    if not (isinstance(channels, list) and channels and all(isinstance(c, int) and c >= 1 for c in channels)):
        raise ConfigError("channels", f"must be a non-empty list of positive ints, got {channels!r}")
    if not (isinstance(strides, list) and len(strides) == len(channels)
            and all(s in (1, 2) for s in strides)):
        raise ConfigError("strides", f"must be one stride (1 or 2) per layer, got {strides!r}")
    data, shape, num_classes, substitute = image_task_data(config, data_dir, download, offline_data)
    sizes = spatial_sizes(min(shape[1:]), strides, config["padding"])
    if min(sizes) < 1:
        raise ConfigError("strides", f"the spatial size on {config['dataset']} goes {sizes}, below 1; "
                                     "use fewer layers, stride 1 or 'same' padding")
    task = ConvPoolingTask(config, data, int(shape[0]), num_classes)
    if substitute:
        task.data_substitute = substitute
    return task


FIELDS = {
    "channels": Field("list", items="int", low=1, high=4096, allowed="a list of positive channel counts"),
    "strides": Field("list", items="int", low=1, high=8, allowed="a list of strides (1-8), one per conv layer"),
    "padding": Field("str", choices=PADDINGS),
    "pooling": Field("str", choices=POOLINGS),
    "dataset": Field("str", choices=tuple(IMAGE_DATASETS)),
    "activation": Field("str", choices=tuple(ACTIVATIONS)),
    "init": Field("dict", check=_valid_init, allowed=INIT_ALLOWED),
    "center_data": Field("bool", optional=True),
    "batch_size": Field("int", low=1, high=65536),
    "data_seed": Field("int", low=0),
}

def derive(config: dict[str, Any]) -> dict[str, Any]:
    """Recompute ``strides`` (one per conv layer) after an override changed ``channels``: the
    sampled strides are kept layer by layer, new layers get stride 1."""
    channels, strides = config.get("channels"), config.get("strides")
    if isinstance(channels, list) and isinstance(strides, list) and len(strides) != len(channels):
        config = dict(config, strides=(strides + [1] * len(channels))[:len(channels)])
    return config


register_task_family(FAMILY, sample, build, fields=FIELDS, derive=derive)
