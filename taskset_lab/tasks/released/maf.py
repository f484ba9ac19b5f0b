"""TaskSet's `maf_family` config sampler (masked autoregressive flows on images)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released.nvp import sample_flow_config

FAMILY = "maf_family"
SEED_OFFSET = 6123348  # the only difference from nvp_family's sampler


def sample_maf_family(seed: int) -> dict:
    """The released `maf_family_seed<seed>` config."""
    return sample_flow_config(np.random.RandomState(seed + SEED_OFFSET))
