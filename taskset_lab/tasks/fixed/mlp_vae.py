"""TaskSet's 7 ``FixedMLPVAE`` tasks: MLP variational autoencoders on flattened images.

TaskSet's definition (``task_set/tasks/fixed/fixed_mlp_vae.py``, ``fc_vae_loss_fn(enc, dec,
n_z, relu)``), which differs from ``mlp_vae_family`` in three ways:

* the image (from ``get_image_datasets(name, batch_size)``, [0, 1], 3000 examples per
  validation split) is **centred**, ``x = (x - 0.5) * 2`` in [-1, 1];
* the encoder is ``snt.nets.MLP(enc + [2 n_z])`` (all of ``enc`` are hidden layers);
* Sonnet's default initialisers (``w ~ truncated_normal(1/sqrt(fan_in))``, ``b = 0``).

The rest is :class:`taskset_lab.tasks.families.taskset_mlp_vae.GaussianVAE`: decoder
``snt.nets.MLP(dec + [2 D])`` clipped to ±10, ``QuantizedNormal`` with bin 1/255,
dequantisation and latent noise drawn in training and evaluation alike, analytic KL.

**Likelihood convention**: the loss is TaskSet's ``-mean_batch(ELBO)`` in **nats per image**
(summed over the ``D`` pixel values) of the centred image under a density integrated over
bins of width 1/255; since the centred 8-bit levels are 2/255 apart, this is ``D ln 2`` nats
more than ``-log P(8-bit image)`` would be. Kept as TaskSet computes it.

Names that say something else than TaskSet's code does (the code is followed):

* ``FixedMLPVAE_cifar101_*`` train on **cifar10** (there is no "cifar101");
* ``Imagenet32x30_FC_VAE_128x64x32x64x128_relu_bs256`` trains on **food101_32x32**, not
  ImageNet, with batch size 256.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.tasks.images import ImageInput, nhwc_flatten
from taskset_lab.tasks.layers import GaussianVAE
from taskset_lab.tasks.losses import NegativeELBOTask
from taskset_lab.tasks.images import build_fixed_image_task
from taskset_lab.tasks.registry import register_fixed_tasks

KIND = "FixedMLPVAE"


@dataclass(frozen=True)
class FixedMLPVAESpec:
    name: str
    dataset: str
    enc: tuple[int, ...]
    dec: tuple[int, ...]
    n_z: int
    batch_size: int = 128


SPECS: dict[str, FixedMLPVAESpec] = {s.name: s for s in [
    FixedMLPVAESpec("FixedMLPVAE_cifar101_128x32x128_bs128", "cifar10", (128,), (128,), 32),
    FixedMLPVAESpec("FixedMLPVAE_cifar101_128x128x32x128x128_bs128", "cifar10", (128, 128), (128, 128), 32),
    FixedMLPVAESpec("FixedMLPVAE_mnist_128x8x128x128_bs128", "mnist", (128,), (128, 128), 8),
    FixedMLPVAESpec("FixedMLPVAE_mnist_128x128x8x128_bs128", "mnist", (128, 128), (128,), 8),
    FixedMLPVAESpec("FixedMLPVAE_mnist_128x64x32x64x128_bs64", "mnist", (128, 64), (64, 128), 32, 64),
    FixedMLPVAESpec("FixedMLPVAE_food10132x32_128x64x32x64x128_bs64", "food101_32x32", (128, 64), (64, 128), 32,
                    64),
    FixedMLPVAESpec("Imagenet32x30_FC_VAE_128x64x32x64x128_relu_bs256", "food101_32x32", (128, 64), (64, 128),
                    32, 256),
]}


class CenteredMLPVAE(nn.Module):
    """Images -> ``[B, 2]`` (log p(x|z), KL) of the centred, flattened image."""

    def __init__(self, spec: FixedMLPVAESpec, n_in: int):
        super().__init__()
        self.input = ImageInput(None, True)
        self.vae = GaussianVAE(n_in, [*spec.enc, 2 * spec.n_z], [*spec.dec, 2 * n_in], F.relu, None)

    def forward(self, x: Tensor) -> Tensor:
        return self.vae(nhwc_flatten(self.input(x, self.vae.encoder.layers[0].w)))


class FixedMLPVAETask(NegativeELBOTask):
    def __init__(self, spec: FixedMLPVAESpec, data: Any, shape: tuple[int, int, int]):
        super().__init__({"family": KIND, "name": spec.name}, data)
        self.dataset_name = spec.dataset  # the dataset the code loads (the catalogue shows it)
        self.spec, self.image_shape = spec, shape

    def make_module(self) -> nn.Module:
        return CenteredMLPVAE(self.spec, int(math.prod(self.image_shape)))


def build_spec(spec: FixedMLPVAESpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> FixedMLPVAETask:
    return build_fixed_image_task(lambda data, shape, _classes: FixedMLPVAETask(spec, data, shape), spec, data_dir,
                                  download, offline_data)


register_fixed_tasks(SPECS.values(), build_spec, kind=KIND)
