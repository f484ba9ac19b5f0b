"""``lab_mlp`` (this project's TaskSet-like family, not TaskSet's ``mlp_family``): a fully connected classifier on flattened images.

Also home of the pieces shared with ``conv_pooling``: the image-classification task
(cross-entropy loss, TensorData built from ``load_dataset``) and the dataset/batch-size
sampling. A sampler's default dataset pool is embedded-only, so default task sets run
with no network; pass ``datasets=`` to draw from torchvision sources too.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.data import EMBEDDED_IMAGE_DATASETS, IMAGE_DATASETS, load_dataset
from taskset_lab.errors import ConfigError, DataError
from taskset_lab.tasks.base import Batch, Task, TaskData, TensorData
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
from taskset_lab.tasks.streaming import choose_task_data

FAMILY = "lab_mlp"
BATCH_SIZES = (32, 64, 128, 256)
DEFAULT_DATASETS: tuple[str, ...] = EMBEDDED_IMAGE_DATASETS


def sample_dataset(rng: np.random.Generator, datasets: Sequence[str]) -> str:
    if not datasets:
        raise ValueError("empty dataset pool")
    unknown = [d for d in datasets if d not in IMAGE_DATASETS]
    if unknown:
        raise ValueError(f"unknown image datasets {unknown}; known: {', '.join(IMAGE_DATASETS)}")
    return str(datasets[rng.integers(len(datasets))])


def sample_batch_size(rng: np.random.Generator) -> int:
    return int(BATCH_SIZES[rng.integers(len(BATCH_SIZES))])


def sample(seed: int, datasets: Sequence[str] = DEFAULT_DATASETS) -> dict[str, Any]:
    rng = family_rng(FAMILY.removeprefix("lab_"), seed)  # the stream of its 0.1 name: same configs
    dataset = sample_dataset(rng, datasets)
    n_layers = int(rng.integers(1, 7))
    return {
        "family": FAMILY,
        "dataset": dataset,
        "hidden": [log_uniform_int(rng, 16, 128) for _ in range(n_layers)],
        "activation": sample_activation(rng),
        "init": sample_initializer(rng),
        "center_data": bool(rng.random() < 0.5),
        "batch_size": sample_batch_size(rng),
        "data_seed": derived_seed(rng),
    }


class ImageClassificationTask(Task):
    """Cross-entropy of the module's logits against the batch labels."""

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(output, batch[1])


STAND_IN = "digits"


def image_task_data(config: dict[str, Any], data_dir: str | None, download: bool, offline_data: str = "error"
                    ) -> tuple[TaskData, tuple[int, ...], int, str | None]:
    """``(task data, image shape [C, H, W], number of classes, stand-in)`` of
    ``config["dataset"]``; the data is device-resident unless it exceeds the memory budget (then
    it streams). With ``offline_data="substitute"`` an absent dataset is replaced by the
    embedded digits (stand-in ``"digits"``, else None)."""
    name = check_choice(config, "dataset", tuple(IMAGE_DATASETS))
    batch_size = int(config["batch_size"])
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be >= 1, got {batch_size}")
    substitute = None
    try:
        splits = load_dataset(name, data_dir=data_dir, download=download)
    except DataError:
        if offline_data != "substitute":
            raise
        splits, substitute, name = load_dataset(STAND_IN), STAND_IN, STAND_IN
    data = choose_task_data(splits, batch_size, seed=int(config["data_seed"]))
    return data, tuple(splits["train"][0].shape[1:]), IMAGE_DATASETS[name].num_classes, substitute


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
                 activation: str, init: dict[str, Any], center: bool):
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            init_weight_(layer.weight, init)
            nn.init.zeros_(layer.bias)
        self.activation = activation
        self.center = center

    def forward(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        h = image_input(x, self.layers[0].weight, self.center).flatten(1)
        for layer in self.layers[:-1]:
            h = act(layer(h))
        return self.layers[-1](h)


class MLPTask(ImageClassificationTask):
    def __init__(self, config: dict[str, Any], data: TensorData, in_features: int, num_classes: int):
        super().__init__(config, data)
        self.in_features, self.num_classes = in_features, num_classes

    def make_module(self) -> nn.Module:
        c = self.config
        return MLP(self.in_features, c["hidden"], self.num_classes, c["activation"], c["init"],
                   bool(c.get("center_data", False)))


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> MLPTask:
    check_choice(config, "activation", tuple(ACTIVATIONS))
    check_initializer(config.get("init"))
    hidden = config.get("hidden")
    if not (isinstance(hidden, list) and all(isinstance(h, int) and h >= 1 for h in hidden)):
        raise ConfigError("hidden", f"must be a list of positive layer widths, got {hidden!r}")
    data, shape, num_classes, substitute = image_task_data(config, data_dir, download, offline_data)
    in_features = 1
    for s in shape:
        in_features *= int(s)
    task = MLPTask(config, data, in_features, num_classes)
    if substitute:
        task.data_substitute = substitute
    return task


FIELDS = {
    "hidden": Field("list", items="int", low=1, high=1 << 16, allowed="a list of positive layer widths"),
    "dataset": Field("str", choices=tuple(IMAGE_DATASETS)),
    "activation": Field("str", choices=tuple(ACTIVATIONS)),
    "init": Field("dict", check=_valid_init, allowed=INIT_ALLOWED),
    "center_data": Field("bool", optional=True),
    "batch_size": Field("int", low=1, high=65536),
    "data_seed": Field("int", low=0),
}

register_task_family(FAMILY, sample, build, fields=FIELDS)
