"""TaskSet's 7 ``FixedImageConvVAE`` tasks: convolutional variational autoencoders.

TaskSet's definition (``task_set/tasks/fixed/fixed_image_conv_vae.py``: ``conv_vae_loss_fn``
and ``three_layer_conv_vae_loss_fn(enc, dec, n_z, relu)``, with ``generative_utils``):

* data: ``get_image_datasets(name, batch_size)`` (3000 examples per validation split),
  **centred**: ``x = (image - 0.5) * 2`` in [-1, 1];
* encoder: ``snt.nets.ConvNet2D(enc, 3x3, strides 2 (two or three layers), SAME, relu,
  activate_final=True)``, NHWC flatten, ``snt.Linear(2 n_z)`` = ``[mu, log_sigma]`` of
  ``q(z|x)``; ``z = mu + exp(log_sigma) eps``, ``eps ~ N(0, I) [B, n_z]``;
* decoder: ``snt.Linear(s*s*32)`` (``s`` = 7 for 28x28 and 8 for 32x32 with two layers, 4
  with three), NHWC reshape, ``snt.nets.ConvNet2DTranspose(dec, [(2s, 2s), ...], strides 2,
  SAME, relu, activate_final=True)``, ``snt.Conv2D(2 C, 1x1)`` clipped to [-10, 10]: channels
  ``[:C]`` are ``mu_x``, ``[C:]`` ``log_sigma_x`` of TaskSet's ``QuantizedNormal`` (bin 1/255);
* ``log p(x|z) = sum_{H,W,C} [log N(x + u; mu_x, sigma_x) + log(1/255)]`` with
  ``u ~ U(-1/510, 1/510)``; ``KL = sum KL(q(z|x) || N(0, I))`` (analytic);
* loss: ``-mean_batch(log p(x|z) - KL)``, nats per image of the centred image (see
  :mod:`taskset_lab.tasks.fixed.mlp_vae` for the convention). Sonnet's default initialisers.

Randomness (``eps`` and ``u``, in training and evaluation alike, as TaskSet draws them) comes
from :func:`taskset_lab.tasks.context.draw` under ``<module>/latent`` and
``<module>/dequantize``, so config k in a population draws what it draws alone.

Names that disagree with TaskSet's code (the code is followed):

* ``FixedImageConvVAE_mnist_32x64x32x64x32_bs128`` trains on **cifar10** (32x32x3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from taskset_lab.tasks.context import draw
from taskset_lab.tasks.images import ImageInput
from taskset_lab.tasks.losses import (
    DECODER_CLIP,
    NegativeELBOTask,
    kl_to_standard_normal,
    quantized_normal_log_prob,
    split_mu_log_sigma,
)
from taskset_lab.tasks.fixed.image_conv_ae import ConvDecoder, ConvEncoder
from taskset_lab.tasks.images import build_fixed_image_task
from taskset_lab.tasks.registry import register_fixed_tasks

KIND = "FixedImageConvVAE"


@dataclass(frozen=True)
class FixedConvVAESpec:
    name: str
    dataset: str
    enc: tuple[int, ...]
    dec: tuple[int, ...]
    n_z: int
    batch_size: int = 128


SPECS: dict[str, FixedConvVAESpec] = {s.name: s for s in [
    FixedConvVAESpec("FixedImageConvVAE_mnist_32x32x32x32x32_bs128", "mnist", (32, 32), (32, 32), 32),
    FixedConvVAESpec("FixedImageConvVAE_mnist_32x64x32x64x32_bs128", "cifar10", (32, 64), (64, 32), 32),
    FixedConvVAESpec("FixedImageConvVAE_cifar10_32x64x128x64x32_bs128", "cifar10", (32, 64), (64, 32), 128),
    FixedConvVAESpec("FixedImageConvVAE_mnist_64x128x128x128x64_bs128", "mnist", (64, 128), (128, 64), 128),
    FixedConvVAESpec("FixedImageConvVAE_cifar10_64x128x256x128x256x128x64_bs128", "cifar10", (64, 128, 256),
                     (256, 128, 64), 128),
    FixedConvVAESpec("FixedImageConvVAE_cifar10_32x64x128x64x128x64x32_bs128", "cifar10", (32, 64, 128),
                     (128, 64, 32), 64),
    FixedConvVAESpec("FixedImageConvVAE_cifar10_32x64x128x64x128x64x32_bs512", "cifar10", (32, 64, 128),
                     (128, 64, 32), 64, 512),
]}


class ConvVAE(nn.Module):
    """Images -> ``[B, 2]`` = (``log p(x|z)``, ``KL``) of the centred image."""

    def __init__(self, spec: FixedConvVAESpec, shape: Sequence[int]):
        super().__init__()
        c, h, _w = (int(v) for v in shape)
        self.n_z = int(spec.n_z)
        self.input = ImageInput(None, True)
        self.encoder = ConvEncoder(shape, spec.enc, 2 * self.n_z, "relu")
        self.decoder = ConvDecoder(self.n_z, spec.dec, h, 2 * c, "relu")

    def forward(self, x: Tensor) -> Tensor:
        key = getattr(self, "_noise_key", "conv_vae")
        x = self.input(x, self.encoder.linear.w)
        mu, log_sigma = split_mu_log_sigma(self.encoder(x))
        eps = draw(f"{key}/latent", (x.shape[0], self.n_z), "normal", x)
        z = mu + torch.exp(log_sigma) * eps
        out = torch.clamp(self.decoder(z), -DECODER_CLIP, DECODER_CLIP)
        c = x.shape[1]
        mu_x, log_sigma_x = out[:, :c], out[:, c:]
        u = draw(f"{key}/dequantize", tuple(x.shape), "uniform", x)
        log_p_x = quantized_normal_log_prob(x.flatten(1), mu_x.flatten(1), log_sigma_x.flatten(1), u.flatten(1))
        return torch.stack([log_p_x, kl_to_standard_normal(mu, log_sigma)], dim=1)


class FixedImageConvVAETask(NegativeELBOTask):
    def __init__(self, spec: FixedConvVAESpec, data: Any, shape: tuple[int, int, int]):
        super().__init__({"family": KIND, "name": spec.name}, data)
        self.spec, self.image_shape = spec, shape

    def make_module(self) -> nn.Module:
        return ConvVAE(self.spec, self.image_shape)


def build_spec(spec: FixedConvVAESpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> FixedImageConvVAETask:
    return build_fixed_image_task(lambda data, shape, _classes: FixedImageConvVAETask(spec, data, shape), spec,
                                  data_dir, download, offline_data)


register_fixed_tasks(SPECS.values(), build_spec, kind=KIND)
