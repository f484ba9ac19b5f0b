"""TaskSet's `conv_fc_family` config sampler (conv stack, then 0-3 dense layers)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s
from taskset_lab.tasks.released.conv_pooling import sample_conv_layers

FAMILY = "conv_fc_family"
SEED_OFFSET = 0  # bare seed, like conv_pooling: the conv stacks of equal seeds coincide


def sample_conv_fc_family(seed: int) -> dict:
    """The released `conv_fc_family_seed<seed>` config."""
    rng = np.random.RandomState(seed + SEED_OFFSET)
    cfg = sample_conv_layers(rng)
    n_fc_layers = s.choice(rng, [0, 1, 2, 3])
    cfg["fc_hidden_units"] = [s.sample_log_int(rng, 32, 128) for _ in range(n_fc_layers)]
    cfg["use_bias"] = s.choice(rng, [True, False])
    cfg["dataset"] = s.sample_image_dataset(rng)
    cfg["center_data"] = s.choice(rng, [True, False])
    return cfg
