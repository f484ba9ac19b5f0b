"""TaskSet's ``mlp_vae_family``: an MLP variational autoencoder on flattened images.

What TaskSet's built task computes (``task_set/tasks/mlp_vae.py`` with
``generative_utils.py``), and what this does:

* input: the image pipeline of :mod:`taskset_lab.tasks.images` (uint8 -> [0, 1], the config's
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
from typing import Any, Sequence

from torch import Tensor, nn

from taskset_lab.tasks.images import (
    WIDTHS_FIELD,
    ACTIVATION_FIELD,
    DATASET_FIELD,
    INIT_FIELD,
    ImageInput,
    augmented_shape,
    build_image_task,
    nhwc_flatten,
)
from taskset_lab.tasks.losses import NegativeELBOTask
from taskset_lab.tasks.layers import GaussianVAE
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.mlp_vae import sample_mlp_vae_family

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

register_task_family("mlp_vae_family", sample_mlp_vae_family, build, fields=FIELDS, released=sample_mlp_vae_family)
