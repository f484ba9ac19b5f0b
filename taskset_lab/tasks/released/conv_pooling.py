"""TaskSet's `conv_pooling_family` config sampler (conv nets, global pooling, linear)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "conv_pooling_family"
SEED_OFFSET = 0  # TaskSet seeds this family's RandomState with the bare seed

MAX_CONV_LAYERS = 5
STRIDE_PATTERNS = {"all_two": [2], "one_two": [1, 2], "two_one": [2, 1]}


def sample_conv_layers(rng: np.random.RandomState) -> dict:
    """The conv stack shared by conv_pooling and conv_fc: depth, strides, widths, ...

    Draws, in order: depth 1-5, stride pattern, widths, activation, initializer,
    per-layer padding.
    """
    n_layers = s.choice(rng, [1, 2, 3, 4, 5])
    pattern = s.choice(rng, ["all_two", "one_two", "two_one"])
    strides = (STRIDE_PATTERNS[pattern] * MAX_CONV_LAYERS)[:n_layers]
    cfg = {
        "strides": [[st, st] for st in strides],
        "hidden_units": [s.sample_log_int(rng, 8, 64) for _ in range(n_layers)],
    }
    cfg["activation"] = s.sample_activation(rng)
    cfg["w_init"] = s.sample_initializer(rng)
    cfg["padding"] = [s.choice(rng, ["SAME", "VALID"]) for _ in range(n_layers)]
    return cfg


def sample_conv_pooling_family(seed: int) -> dict:
    """The released `conv_pooling_family_seed<seed>` config."""
    rng = np.random.RandomState(seed + SEED_OFFSET)
    cfg = sample_conv_layers(rng)
    cfg["pool_type"] = s.choice(rng, ["mean", "max", "squared_mean"])
    cfg["use_bias"] = s.choice(rng, [True, False])
    cfg["dataset"] = s.sample_image_dataset(rng)
    cfg["center_data"] = s.choice(rng, [True, False])
    return cfg
