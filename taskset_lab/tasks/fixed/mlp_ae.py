"""TaskSet's 3 ``FixedMLPAE_*`` tasks: MLP autoencoders on flattened images.

TaskSet's definition (``task_set/tasks/fixed/fixed_mlp_ae.py``, ``fc_ae_loss_fn``): images
from ``get_image_datasets(name, batch_size=128)`` scaled to [0, 1] (not centred; 3000
examples per validation split), flattened NHWC to ``x [B, D]``;
``logits = snt.nets.MLP(hidden + [D], relu)(x)`` with Sonnet's default initialisers
(``w ~ truncated_normal(1/sqrt(fan_in))``, ``b = 0``); loss
``mean_batch(mean_D((x - sigmoid(logits))^2))`` (a per-pixel-value mean squared error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.tasks.images import ImageInput, nhwc_flatten
from taskset_lab.tasks.losses import PerExampleLossTask
from taskset_lab.tasks.layers import SonnetMLP
from taskset_lab.tasks.images import build_fixed_image_task
from taskset_lab.tasks.registry import register_fixed_tasks

KIND = "FixedMLPAE"


@dataclass(frozen=True)
class FixedMLPAESpec:
    name: str
    dataset: str
    hidden: tuple[int, ...]
    batch_size: int = 128


SPECS: dict[str, FixedMLPAESpec] = {s.name: s for s in [
    FixedMLPAESpec("FixedMLPAE_mnist_32x32x32_bs128", "mnist", (32, 32, 32)),
    FixedMLPAESpec("FixedMLPAE_mnist_128x32x128_bs128", "mnist", (128, 32, 128)),
    FixedMLPAESpec("FixedMLPAE_cifar10_128x32x128_bs128", "cifar10", (128, 32, 128)),
]}


class SigmoidAutoencoder(nn.Module):
    """Images -> per-image ``mean_D((x - sigmoid(MLP(x)))^2)`` ``[B]``."""

    def __init__(self, n_in: int, hidden: tuple[int, ...]):
        super().__init__()
        self.input = ImageInput(None, False)
        self.mlp = SonnetMLP(n_in, [*hidden, n_in], F.relu)

    def forward(self, x: Tensor) -> Tensor:
        flat = nhwc_flatten(self.input(x, self.mlp.layers[0].w))
        diff = flat - torch.sigmoid(self.mlp(flat))
        return (diff * diff).mean(1)


class FixedMLPAETask(PerExampleLossTask):
    def __init__(self, spec: FixedMLPAESpec, data: Any, shape: tuple[int, int, int]):
        super().__init__({"family": KIND, "name": spec.name}, data)
        self.dataset_name = spec.dataset  # the dataset the code loads (the catalogue shows it)
        self.spec, self.image_shape = spec, shape

    def make_module(self) -> nn.Module:
        return SigmoidAutoencoder(int(math.prod(self.image_shape)), self.spec.hidden)


def build_spec(spec: FixedMLPAESpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> FixedMLPAETask:
    return build_fixed_image_task(lambda data, shape, _classes: FixedMLPAETask(spec, data, shape), spec, data_dir,
                                  download, offline_data)


register_fixed_tasks(SPECS.values(), build_spec, kind=KIND)
