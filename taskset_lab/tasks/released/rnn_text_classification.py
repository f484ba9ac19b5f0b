"""TaskSet's `rnn_text_classification_family` config sampler (RNN text classifiers).

Released under the file name `rnn_text_classification.json`; the entries carry the
family name `rnn_text_classification_family`. The dataset names are TaskSet's, quirk
included: one name is the concatenation "imdb_reviews/subwords8kimdb_reviews/bytes"
(a missing comma upstream), and TaskSet's getter loads "imdb_reviews/subwords8k" for
every name; see `sampling.TEXT_CLASSIFICATION_DATASETS`.
"""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "rnn_text_classification_family"
# TaskSet seeds this sampler with the bare seed (no per-family offset).
SEED_OFFSET = 0


def sample_rnn_text_classification_family(seed: int) -> dict:
    """The released `rnn_text_classification_family_seed<seed>` config.

    Draw order: embedding size, readout initializer, dataset (name, then its config),
    vocab size (100-10000, log), RNN core, trainable-initial-state coin, readout kind.
    """
    rng = np.random.RandomState(seed + SEED_OFFSET)
    cfg: dict = {}
    cfg["embed_dim"] = s.sample_log_int(rng, 8, 128)
    cfg["w_init"] = s.sample_initializer(rng)
    cfg["dataset"] = s.sample_text_dataset(rng)
    cfg["vocab_size"] = s.sample_log_int(rng, 100, 10000)
    cfg["core"] = s.sample_rnn_core(rng)
    cfg["trainable_init"] = s.choice(rng, [True, False])
    cfg["loss_compute"] = s.choice(rng, ["last", "avg", "max"])
    return cfg
