"""TaskSet's `mlp_ae_family` config sampler (MLP autoencoders on images)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "mlp_ae_family"
SEED_OFFSET = 0  # TaskSet seeds this family's RandomState with the bare seed


def sample_mlp_ae_family(seed: int) -> dict:
    """The released `mlp_ae_family_seed<seed>` config."""
    rng = np.random.RandomState(seed + SEED_OFFSET)
    n_layers = s.choice(rng, [1, 2, 3, 4, 5, 6])
    cfg = {"hidden_units": [s.sample_log_int(rng, 32, 128) for _ in range(n_layers)]}
    cfg["activation"] = s.sample_activation(rng)
    cfg["w_init"] = s.sample_initializer(rng)
    cfg["dataset"] = s.sample_image_dataset(rng)
    # tanh/sigmoid and l2 appear twice in TaskSet's lists: double weight
    cfg["output_type"] = s.choice(
        rng, ["tanh", "tanh", "sigmoid", "sigmoid", "linear_center", "linear"])
    cfg["loss_type"] = s.choice(rng, ["l2", "l2", "l1"])
    cfg["reduction_type"] = s.choice(rng, ["reduce_mean", "reduce_sum"])
    return cfg
