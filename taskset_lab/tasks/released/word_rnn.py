"""TaskSet's `word_rnn_language_model_family` config sampler (subword RNN LMs).

Released under the file name `word_rnn_language_model.json`; the entries carry the
family name `word_rnn_language_model_family`.
"""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "word_rnn_language_model_family"
# TaskSet seeds this sampler with the bare seed (no per-family offset), so its first
# two draws (embed_dim, w_init) equal the char LM's for the same seed.
SEED_OFFSET = 0


def sample_word_rnn_language_model_family(seed: int) -> dict:
    """The released `word_rnn_language_model_family_seed<seed>` config.

    Draw order: embedding size, readout initializer, vocab size (1000-30000, log),
    RNN core, trainable-initial-state coin, subwords8k dataset.
    """
    rng = np.random.RandomState(seed + SEED_OFFSET)
    cfg: dict = {}
    cfg["embed_dim"] = s.sample_log_int(rng, 8, 128)
    cfg["w_init"] = s.sample_initializer(rng)
    cfg["vocab_size"] = s.sample_log_int(rng, 1000, 30000)
    cfg["core"] = s.sample_rnn_core(rng)
    cfg["trainable_init"] = s.choice(rng, [True, False])
    cfg["dataset"] = s.sample_word_lm_dataset(rng)
    return cfg
