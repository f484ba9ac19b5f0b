"""TaskSet's `nvp_family` config sampler (RealNVP flows on images)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "nvp_family"
SEED_OFFSET = 123919936


def sample_flow_config(rng: np.random.RandomState) -> dict:
    """Shared by nvp and maf: activation, initializer, dataset, 1-2 hidden layers of
    16-128 units, 1-4 bijectors, drawn in that order."""
    cfg = {
        "activation": s.sample_activation(rng),
        "w_init": s.sample_initializer(rng),
        "dataset": s.sample_image_dataset(rng),
    }
    n_layers = s.choice(rng, [1, 2])
    cfg["hidden_units"] = [s.sample_log_int(rng, 16, 128) for _ in range(n_layers)]
    cfg["num_bijectors"] = s.choice(rng, [1, 2, 3, 4])
    return cfg


def sample_nvp_family(seed: int) -> dict:
    """The released `nvp_family_seed<seed>` config."""
    return sample_flow_config(np.random.RandomState(seed + SEED_OFFSET))
