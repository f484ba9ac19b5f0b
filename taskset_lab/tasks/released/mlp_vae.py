"""TaskSet's `mlp_vae_family` config sampler (MLP VAEs on images)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "mlp_vae_family"
SEED_OFFSET = 0  # TaskSet seeds this family's RandomState with the bare seed


def sample_mlp_vae_family(seed: int) -> dict:
    """The released `mlp_vae_family_seed<seed>` config (last encoder width = latent size)."""
    rng = np.random.RandomState(seed + SEED_OFFSET)
    enc_n_layers = s.choice(rng, [1, 2, 3, 4])
    cfg = {"enc_hidden_units": [s.sample_log_int(rng, 32, 128) for _ in range(enc_n_layers)]}
    dec_n_layers = s.choice(rng, [1, 2, 3])
    cfg["dec_hidden_units"] = [s.sample_log_int(rng, 32, 128) for _ in range(dec_n_layers)]
    cfg["activation"] = s.sample_activation(rng)
    cfg["w_init"] = s.sample_initializer(rng)
    cfg["dataset"] = s.sample_image_dataset(rng)
    return cfg
