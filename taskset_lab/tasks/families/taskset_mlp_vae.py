"""TaskSet's ``mlp_vae_family``: an MLP variational autoencoder on flattened images.

What TaskSet's built task computes (``task_set/tasks/mlp_vae.py`` with
``generative_utils.py``), and what this does:

* input: the image pipeline of :mod:`taskset_image` (uint8 -> [0, 1], the config's
  augmentation), flattened NHWC -> ``x [B, D]``, ``D = H*W*C``, **not** centred;
* encoder: ``snt.nets.MLP(enc_hidden_units[:-1] + [2 L])`` with ``L = enc_hidden_units[-1]``
  (the last encoder width is the latent size, not a layer); its output is ``[mu, log_sigma]``
  of a diagonal normal ``q(z|x)``;
* ``z = mu + exp(log_sigma) * eps``, ``eps ~ N(0, I)`` of shape ``[B, L]``;
* decoder: ``snt.nets.MLP(dec_hidden_units + [2 D])`` on ``z``, clipped to [-10, 10], is
  ``[mu_x, log_sigma_x]`` of TaskSet's ``QuantizedNormal`` (bin 1/255);
* ``log p(x|z) = sum_d [log N(x_d + u_d; mu_x, sigma_x) + log(1/255)]`` with dequantisation
  noise ``u ~ U(-1/510, 1/510)`` drawn afresh at every evaluation (TaskSet draws it inside
  ``log_prob``); ``KL = sum_l KL(N(mu, sigma) || N(0, 1))`` (analytic, TFP's formula);
* loss: ``-mean_batch(log p(x|z) - KL)``.

**Likelihood convention**: the loss is TaskSet's negative ELBO in **nats per image** (summed
over all ``D`` pixel values, averaged over the batch), for pixels scaled to [0, 1] and a
density integrated over bins of width 1/255: it estimates ``-log P(8-bit image)``, as
TaskSet reports it. Divide by ``D`` for nats per dimension, by ``D ln 2`` for bits per dim.

Randomness (``eps`` and ``u``, training and evaluation alike, as in TaskSet) comes from
:func:`taskset_lab.tasks.context.draw` under ``<module>/latent`` and ``<module>/dequantize``,
so a config trained alone and inside a population draws the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from taskset_lab.tasks.context import draw
from taskset_lab.tasks.families.taskset_image import (
    ACTIVATION_FIELD,
    DATASET_FIELD,
    INIT_FIELD,
    ImageInput,
    augmented_shape,
    build_image_task,
    nhwc_flatten,
)
from taskset_lab.tasks.families.taskset_mlp_ae import WIDTHS_FIELD, PerExampleLossTask, SonnetMLP
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released import RELEASED_SAMPLERS

BIN_SIZE = 1.0 / 255.0  # QuantizedNormal's default bin width
DECODER_CLIP = 10.0
LOG_2PI = math.log(2.0 * math.pi)


def split_mu_log_sigma(params: Tensor) -> tuple[Tensor, Tensor]:
    """``LogStddevNormal``'s split of ``[..., 2n]`` into ``mu`` (first half), ``log_sigma``."""
    half = params.shape[-1] // 2
    return params[..., :half], params[..., half:]


def kl_to_standard_normal(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """``KL(N(mu, e^log_sigma) || N(0, 1))`` summed over the last axis (TFP's normal-normal
    formula: ``mu^2/2 + expm1(2 log_sigma)/2 - log_sigma``): ``[B]``."""
    return (0.5 * mu * mu + 0.5 * torch.expm1(2.0 * log_sigma) - log_sigma).sum(-1)


def quantized_normal_log_prob(x: Tensor, mu: Tensor, log_sigma: Tensor, uniform: Tensor,
                              bin_size: float = BIN_SIZE) -> Tensor:
    """TaskSet's ``QuantizedNormal.log_prob`` summed over the last axis: ``x`` plus noise
    ``(uniform - 1/2) * bin_size`` under ``N(mu, e^log_sigma)``, plus ``log(bin_size)`` per
    dimension: ``[B]``."""
    noisy = x + (uniform - 0.5) * bin_size
    z = (noisy - mu) * torch.exp(-log_sigma)
    return (-0.5 * z * z - log_sigma - 0.5 * LOG_2PI + math.log(bin_size)).sum(-1)


class GaussianVAE(nn.Module):
    """Flat inputs ``[B, D]`` -> ``[B, 2]`` = (``log p(x|z)``, ``KL``) per example, with an MLP
    encoder (output ``[mu, log_sigma]``, ``2 L`` wide) and an MLP decoder (output ``2 D``,
    clipped to ±10). Draws ``eps`` and the dequantisation noise from the step context."""

    def __init__(self, n_in: int, enc_sizes: Sequence[int], dec_sizes: Sequence[int],
                 activation: str | Callable[[Tensor], Tensor], w_init: Sequence[Any] | None):
        super().__init__()
        if int(enc_sizes[-1]) % 2 or int(dec_sizes[-1]) != 2 * int(n_in):
            raise ValueError("the encoder must output [mu, log_sigma] and the decoder 2 values per input")
        self.latent = int(enc_sizes[-1]) // 2
        self.encoder = SonnetMLP(n_in, enc_sizes, activation, w_init)
        self.decoder = SonnetMLP(self.latent, dec_sizes, activation, w_init)

    def forward(self, x: Tensor) -> Tensor:
        key = getattr(self, "_noise_key", "vae")
        mu, log_sigma = split_mu_log_sigma(self.encoder(x))
        eps = draw(f"{key}/latent", (x.shape[0], self.latent), "normal", x)
        z = mu + torch.exp(log_sigma) * eps
        out = torch.clamp(self.decoder(z), -DECODER_CLIP, DECODER_CLIP)
        mu_x, log_sigma_x = split_mu_log_sigma(out)
        u = draw(f"{key}/dequantize", tuple(x.shape), "uniform", x)
        log_p_x = quantized_normal_log_prob(x, mu_x, log_sigma_x, u)
        return torch.stack([log_p_x, kl_to_standard_normal(mu, log_sigma)], dim=1)


class NegativeELBOTask(PerExampleLossTask):
    """Loss: ``-mean(log p(x|z) - KL)`` from a module returning ``[B, 2]`` (log p(x|z), KL)."""

    def loss(self, output: Tensor, batch: Any) -> Tensor:
        return -(output[:, 0] - output[:, 1]).mean()


class MLPVAENet(nn.Module):
    """Images -> ``[B, 2]`` (log p(x|z), KL) for a ``mlp_vae_family`` config."""

    def __init__(self, config: dict[str, Any], seen_shape: Sequence[int]):
        super().__init__()
        d = int(math.prod(seen_shape))
        latent = int(config["enc_hidden_units"][-1])
        enc = [*config["enc_hidden_units"][:-1], 2 * latent]
        dec = [*config["dec_hidden_units"], 2 * d]
        self.input = ImageInput(config["dataset"][2], False)
        self.vae = GaussianVAE(d, enc, dec, config["activation"], config["w_init"])

    def forward(self, x: Tensor) -> Tensor:
        return self.vae(nhwc_flatten(self.input(x, self.vae.encoder.layers[0].w)))


class TasksetMLPVAETask(NegativeELBOTask):
    def __init__(self, config: dict[str, Any], data: Any, shape: tuple[int, int, int]):
        super().__init__(config, data)
        self.image_shape = shape
        self.seen_shape = augmented_shape(shape, config["dataset"][2])

    def make_module(self) -> nn.Module:
        return MLPVAENet(self.config, self.seen_shape)


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> TasksetMLPVAETask:
    return build_image_task(lambda data, shape, _classes: TasksetMLPVAETask(config, data, shape), config, data_dir,
                            download, offline_data)


FIELDS = {
    "enc_hidden_units": Field("list", items="int", check=lambda v: len(v) >= 1 and all(u >= 1 for u in v),
                              allowed="encoder widths (ints >= 1); the last one is the latent size"),
    "dec_hidden_units": WIDTHS_FIELD,
    "activation": ACTIVATION_FIELD,
    "w_init": INIT_FIELD,
    "dataset": DATASET_FIELD,
}

register_task_family("mlp_vae_family", RELEASED_SAMPLERS["mlp_vae_family"], build, fields=FIELDS)
