"""Task classes by the form of their loss: the module returns per-example numbers and the
task reduces them over the batch (TaskSet's autoencoders, VAEs and flows).

* :class:`PerExampleLossTask`: the module returns the loss per example ``[B]``; the loss is
  ``mean_batch``;
* :class:`NegativeELBOTask`: the module returns ``[B, 2]`` = (``log p(x|z)``, ``KL``); the
  loss is ``-mean_batch(log p(x|z) - KL)`` (the negative ELBO);
* :class:`NegativeLogLikelihoodTask`: the module returns ``log p(x)`` ``[B]``; the loss is
  ``-mean_batch(log p(x))``;

and the terms of TaskSet's VAE likelihoods (``task_set/tasks/generative_utils.py``): the
``[mu, log_sigma]`` split, the KL to a standard normal, the quantized normal's log-density.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from taskset_lab.tasks.base import Batch, Task


class PerExampleLossTask(Task):
    """A task whose module returns the per-example loss ``[B]``; the loss is its batch mean."""

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return output.mean()


class NegativeELBOTask(PerExampleLossTask):
    """Loss: ``-mean(log p(x|z) - KL)`` from a module returning ``[B, 2]`` (log p(x|z), KL)."""

    def loss(self, output: Tensor, batch: Any) -> Tensor:
        return -(output[:, 0] - output[:, 1]).mean()


class NegativeLogLikelihoodTask(Task):
    """Loss: ``-mean_batch(log p)`` of a module returning per-image log-densities ``[B]``."""

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return -output.mean()


# ------------------------------------------------------------------ VAE likelihood terms

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
