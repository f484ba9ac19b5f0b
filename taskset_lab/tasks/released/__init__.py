"""TaskSet's released task configs, re-sampled: `released_task_config("mlp_family_seed12")`.

Each family module reproduces TaskSet's sampler draw for draw (same numpy RandomState
seed offset, same calls in the same order), so `released_task_config(name)` equals the entry
`name` of TaskSet's `task_set/tasks/configs/<family>.json` without shipping those files.
"""

from __future__ import annotations

import re
from typing import Callable

from taskset_lab.errors import TasklabError
from taskset_lab.tasks.released.mlp import sample_mlp_family
from taskset_lab.tasks.released.conv_pooling import sample_conv_pooling_family
from taskset_lab.tasks.released.quadratic import sample_quadratic_family
from taskset_lab.tasks.released.conv_fc import sample_conv_fc_family
from taskset_lab.tasks.released.mlp_ae import sample_mlp_ae_family
from taskset_lab.tasks.released.mlp_vae import sample_mlp_vae_family
from taskset_lab.tasks.released.nvp import sample_nvp_family
from taskset_lab.tasks.released.maf import sample_maf_family
from taskset_lab.tasks.released.char_rnn import sample_char_rnn_language_model_family
from taskset_lab.tasks.released.losg import sample_losg_tasks_family
from taskset_lab.tasks.released.rnn_text_classification import (
    sample_rnn_text_classification_family,
)
from taskset_lab.tasks.released.word_rnn import sample_word_rnn_language_model_family

RELEASED_SAMPLERS: dict[str, Callable[[int], dict]] = {
    "mlp_family": sample_mlp_family,
    "conv_pooling_family": sample_conv_pooling_family,
    "quadratic_family": sample_quadratic_family,
    "conv_fc_family": sample_conv_fc_family,
    "mlp_ae_family": sample_mlp_ae_family,
    "mlp_vae_family": sample_mlp_vae_family,
    "nvp_family": sample_nvp_family,
    "maf_family": sample_maf_family,
    "char_rnn_language_model_family": sample_char_rnn_language_model_family,
    "word_rnn_language_model_family": sample_word_rnn_language_model_family,
    "rnn_text_classification_family": sample_rnn_text_classification_family,
    "losg_tasks_family": sample_losg_tasks_family,
}

_NAME = re.compile(r"^(?P<family>[a-z0-9_]+)_seed(?P<seed>\d+)$")


def released_task_config(name: str) -> list:
    """`[config, family]` for a TaskSet task name such as `mlp_family_seed12`."""
    match = _NAME.match(name) if isinstance(name, str) else None
    family = match.group("family") if match else None
    if family not in RELEASED_SAMPLERS:
        known = ", ".join(sorted(RELEASED_SAMPLERS))
        raise TasklabError(
            f"unknown released task name {name!r}: expected <family>_seed<N> with family "
            f"one of: {known}"
        )
    return [RELEASED_SAMPLERS[family](int(match.group("seed"))), family]


__all__ = ["RELEASED_SAMPLERS", "released_task_config"]
