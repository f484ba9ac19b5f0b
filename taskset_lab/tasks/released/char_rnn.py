"""TaskSet's `char_rnn_language_model_family` config sampler (byte-level RNN LMs).

Released under the file name `char_rnn_language_model.json`; the entries carry the
family name `char_rnn_language_model_family`.
"""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "char_rnn_language_model_family"
# TaskSet seeds this sampler with the bare seed (no per-family offset).
SEED_OFFSET = 0


def sample_char_rnn_language_model_family(seed: int) -> dict:
    """The released `char_rnn_language_model_family_seed<seed>` config.

    Draw order: embedding size, readout initializer, full-vocab coin (and a reduced
    vocab 20% of the time), RNN core, trainable-initial-state coin, byte dataset.
    """
    rng = np.random.RandomState(seed + SEED_OFFSET)
    cfg: dict = {}
    cfg["embed_dim"] = s.sample_log_int(rng, 8, 128)
    cfg["w_init"] = s.sample_initializer(rng)
    full_vocab = s.sample_bool(rng, 0.8)
    cfg["vocab_size"] = 256 if full_vocab else s.sample_log_int(rng, 100, 256)
    cfg["core"] = s.sample_rnn_core(rng)
    cfg["trainable_init"] = s.choice(rng, [True, False])
    cfg["dataset"] = s.sample_char_lm_dataset(rng)
    return cfg
