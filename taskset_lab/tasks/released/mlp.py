"""TaskSet's `mlp_family` config sampler (MLP classifiers on images)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "mlp_family"
SEED_OFFSET = 99123491


def sample_mlp_family(seed: int) -> dict:
    """The released `mlp_family_seed<seed>` config: 1-6 layers of 16-128 units."""
    rng = np.random.RandomState(seed + SEED_OFFSET)
    n_layers = s.choice(rng, [1, 2, 3, 4, 5, 6])
    return {
        "layer_sizes": [s.sample_log_int(rng, 16, 128) for _ in range(n_layers)],
        "activation": s.sample_activation(rng),
        "w_init": s.sample_initializer(rng),
        "dataset": s.sample_image_dataset(rng),
        "center_data": s.choice(rng, [True, False]),
    }
