"""TaskSet's ``mlp_family``: an MLP classifier on flattened images.

TaskSet's model (``task_set/tasks/mlp.py``): ``maybe_center(center_data, image)``, then
``snt.BatchFlatten`` (NHWC order; reproduced by flattening NHWC), then
``snt.nets.MLP(layer_sizes + [num_classes], activation, initializers={"w": w_init})``:
every layer ``x @ w + b`` (``w [in, out]`` from ``w_init``, bias zeros), the activation
between layers and none after the last. Loss: mean softmax cross-entropy. The input
pipeline (scaling, augmentation, ``num_train``) is :mod:`taskset_lab.tasks.images`'s.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from torch import Tensor, nn

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
from taskset_lab.tasks.layers import SonnetMLP
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.mlp import sample_mlp_family


class MLPNet(nn.Module):
    def __init__(self, config: dict[str, Any], seen_shape: Sequence[int], num_classes: int):
        super().__init__()
        self.input = ImageInput(config["dataset"][2], config["center_data"])
        self.head = SonnetMLP(int(math.prod(seen_shape)), [*config["layer_sizes"], num_classes],
                            config["activation"], config["w_init"])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(nhwc_flatten(self.input(x, self.head.layers[0].w)))


class TasksetMLPTask(TasksetImageClassification):
    def __init__(self, config: dict[str, Any], data: Any, shape: tuple[int, int, int], num_classes: int):
        super().__init__(config, data)
        self.image_shape, self.num_classes = shape, num_classes
        self.seen_shape = augmented_shape(shape, config["dataset"][2])

    def make_module(self) -> nn.Module:
        return MLPNet(self.config, self.seen_shape, self.num_classes)


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> TasksetMLPTask:
    return build_image_task(lambda data, shape, classes: TasksetMLPTask(config, data, shape, classes), config,
                            data_dir, download, offline_data)


FIELDS = {
    "layer_sizes": Field("list", items="int", check=lambda v: len(v) >= 1 and all(u >= 1 for u in v),
                         allowed="hidden widths (ints >= 1), at least one"),
    "activation": ACTIVATION_FIELD,
    "w_init": INIT_FIELD,
    "dataset": DATASET_FIELD,
    "center_data": Field("bool"),
}

register_task_family("mlp_family", sample_mlp_family, build, fields=FIELDS, released=sample_mlp_family)
