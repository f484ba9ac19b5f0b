"""TaskSet's ``rnn_text_classification_family``: an RNN over a token window, reduced over
time, then a 2-way linear readout.

Config (TaskSet's released one, exact per seed): ``embed_dim``, ``w_init``,
``dataset = [name, {bs, num_train, max_token, just_train, patch_length}]``, ``vocab_size``,
``core``, ``trainable_init``, ``loss_compute ∈ {last, avg, max}``.

**What TaskSet's released configs actually load** (its ``utils._name_to_text_dataset_map``):
every name — including the amazon and ``*_bytes`` names and the missing-comma name
``"imdb_reviews/subwords8kimdb_reviews/bytes"`` — is built with
``get_text_classification("imdb_reviews/subwords8k", cfg)``. So **every task of this family
trains on IMDB reviews, subwords8k, 2 classes**, whatever its config's name says; this
builder does the same. ``just_train`` is ignored (TaskSet never applies it here);
``num_per_valid`` is 3000; ``num_train`` and ``patch_length`` apply.

Forward, batch ``text [B, T]``, ``label [B]``: ``V = min(max_token, vocab_size)``;
``tok = min(text, V − 1)``; ``Embed(V, embed_dim)`` (N(0, 1)); the core over all ``T`` steps
from its (possibly trainable) initial state; outputs ``[B, T, H]`` reduced over time —
``last``: ``outputs[:, -1]`` (often a padding step for reviews shorter than the window),
``avg``: mean over T, ``max``: max over T (padding steps included in all three);
``logits = SonnetLinear(2, w_init)``.

**Loss convention**: mean softmax cross-entropy with the one-hot label, in nats.
Offline (``offline_data="substitute"``) the pydoc stand-in is used (label: whether the
paragraph is upper-cased, visible in any window) and ``task.data_substitute = "pydoc"``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.data.taskset_text import config_seed, load_text_dataset
from taskset_lab.tasks.text_windows import TextWindowData
from taskset_lab.tasks.base import Batch, Task
from taskset_lab.tasks.layers import Embed, SonnetCore, SonnetLinear, is_core
from taskset_lab.tasks.initializers import is_initializer
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.rnn_text_classification import sample_rnn_text_classification_family
from taskset_lab.tasks.released.sampling import TEXT_CLASSIFICATION_DATASETS

FAMILY = "rnn_text_classification_family"
LOADED_DATASET = "imdb_reviews/subwords8k"  # what TaskSet loads for every name (see above)
NUM_CLASSES = 2
NUM_PER_VALID = 3000
READOUTS = ("last", "avg", "max")


def effective_vocab(config: dict[str, Any]) -> int:
    """TaskSet's ``min(max_token, vocab_size)`` (max_token falsy: vocab_size)."""
    vocab, max_token = int(config["vocab_size"]), config["dataset"][1].get("max_token")
    return min(int(max_token), vocab) if max_token else vocab


class RNNTextClassifier(nn.Module):
    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.vocab = effective_vocab(config)
        self.reduce = str(config["loss_compute"])
        self.embed = Embed(self.vocab, int(config["embed_dim"]))
        self.core = SonnetCore(config["core"], int(config["embed_dim"]), bool(config["trainable_init"]))
        self.readout = SonnetLinear(self.core.hidden, NUM_CLASSES, config["w_init"])

    def forward(self, text: Tensor) -> Tensor:
        outputs = self.core(self.embed(text.clamp(max=self.vocab - 1)))
        if self.reduce == "last":
            pooled = outputs[:, -1]
        elif self.reduce == "avg":
            pooled = outputs.mean(dim=1)
        else:
            pooled = outputs.amax(dim=1)
        return self.readout(pooled)


class RNNTextClassificationTask(Task):
    def make_module(self) -> nn.Module:
        return RNNTextClassifier(self.config)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(output, batch[1].to(torch.int64))


def _is_dataset(value: Any) -> bool:
    if not (isinstance(value, list) and len(value) == 2 and value[0] in TEXT_CLASSIFICATION_DATASETS
            and isinstance(value[1], dict)):
        return False
    cfg = value[1]
    ok = all(isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool) and cfg[k] >= 1
             for k in ("bs", "patch_length"))
    num_train, max_token = cfg.get("num_train"), cfg.get("max_token")
    return (ok and isinstance(cfg.get("just_train"), bool)
            and (num_train is None or (isinstance(num_train, int) and num_train >= 1))
            and (max_token is None or (isinstance(max_token, int) and max_token >= 2)))


FIELDS = {
    "embed_dim": Field("int", low=1, high=4096),
    "w_init": Field("list", check=is_initializer, allowed="[initializer name, scale or null]"),
    "dataset": Field("list", check=_is_dataset,
                     allowed=f"[name, {{bs, num_train, max_token, just_train, patch_length}}] with name one of "
                             f"{', '.join(TEXT_CLASSIFICATION_DATASETS)}"),
    "vocab_size": Field("int", low=2, high=1_000_000),
    "core": Field("list", check=is_core, allowed="[vrnn|gru|lstm, {core_dim, initializers...}]"),
    "trainable_init": Field("bool"),
    "loss_compute": Field("str", choices=READOUTS),
}


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> RNNTextClassificationTask:
    name, cfg = config["dataset"]
    splits, substitute = load_text_dataset(name, data_dir, offline_data, num_per_valid=NUM_PER_VALID,
                                           num_train=cfg.get("num_train"), source_override=LOADED_DATASET)
    data = TextWindowData(splits, int(cfg["patch_length"]), int(cfg["bs"]), seed=config_seed(config),
                          labels=True)
    task = RNNTextClassificationTask(config, data)
    if substitute:
        task.data_substitute = substitute
    return task


register_task_family(FAMILY, sample_rnn_text_classification_family, build, fields=FIELDS,
                     released=sample_rnn_text_classification_family)
