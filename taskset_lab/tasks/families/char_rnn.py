"""``lab_char_rnn_language_model`` (this project's family, not TaskSet's ``char_rnn_language_model_family``): embedding, a recurrent core, and a linear readout,
trained on mean next-character cross-entropy over windows of ``seq_len`` characters.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.data import VOCAB_SIZE, load_text
from taskset_lab.errors import ConfigError
from taskset_lab.tasks.base import Batch, Task, TensorData
from taskset_lab.tasks.nn import (
    CORE_GATES,
    RecurrentCore,
    check_choice,
    check_initializer,
    derived_seed,
    family_rng,
    log_uniform_int,
    sample_initializer,
)
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.nn import INIT_ALLOWED, valid_init as _valid_init

FAMILY = "lab_char_rnn_language_model"
CORES = tuple(CORE_GATES)
BATCH_SIZES = (16, 32, 64, 128)
DEFAULT_DATASETS: tuple[str, ...] = ("pydoc",)


def sample(seed: int, datasets: Sequence[str] = DEFAULT_DATASETS) -> dict[str, Any]:
    rng = family_rng(FAMILY.removeprefix("lab_"), seed)  # the stream of its 0.1 name: same configs
    if not datasets:
        raise ValueError("empty dataset pool")
    return {
        "family": FAMILY,
        "dataset": str(datasets[rng.integers(len(datasets))]),
        "core": CORES[rng.integers(len(CORES))],
        "hidden": log_uniform_int(rng, 32, 128),
        "embed_dim": log_uniform_int(rng, 8, 128),
        "seq_len": log_uniform_int(rng, 10, 160),
        "init": sample_initializer(rng),
        "batch_size": int(BATCH_SIZES[rng.integers(len(BATCH_SIZES))]),
        "data_seed": derived_seed(rng),
    }


class CharRNN(nn.Module):
    def __init__(self, vocab: int, embed_dim: int, core: str, hidden: int, init: dict[str, Any]):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(vocab, embed_dim))
        self.core = RecurrentCore(core, embed_dim, hidden, init)
        self.readout = nn.Linear(hidden, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens [B, T] -> logits [B, T, vocab]``."""
        return self.readout(self.core(self.embed[tokens]))


class CharRNNTask(Task):
    def make_module(self) -> nn.Module:
        c = self.config
        return CharRNN(VOCAB_SIZE, int(c["embed_dim"]), c["core"], int(c["hidden"]), c["init"])

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), batch[1].reshape(-1))


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> CharRNNTask:
    check_choice(config, "core", CORES)
    check_initializer(config.get("init"))
    for key in ("hidden", "embed_dim", "seq_len", "batch_size"):
        if not (isinstance(config.get(key), int) and config[key] >= 1):
            raise ConfigError(key, f"must be a positive int, got {config.get(key)!r}")
    splits = load_text(str(config["dataset"]), int(config["seq_len"]), data_dir=data_dir)
    return CharRNNTask(config, TensorData(splits, int(config["batch_size"]), seed=int(config["data_seed"])))


FIELDS = {
    "dataset": Field("str"),
    "core": Field("str", choices=CORES),
    "hidden": Field("int", low=1, high=65536),
    "embed_dim": Field("int", low=1, high=65536),
    "seq_len": Field("int", low=1, high=1 << 20),
    "init": Field("dict", check=_valid_init, allowed=INIT_ALLOWED),
    "batch_size": Field("int", low=1, high=65536),
    "data_seed": Field("int", low=0),
}

register_task_family(FAMILY, sample, build, fields=FIELDS)
