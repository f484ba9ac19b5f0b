"""TaskSet's RNN language-model families: ``char_rnn_language_model_family`` (bytes) and
``word_rnn_language_model_family`` (subwords8k).

Configs are TaskSet's released ones (:mod:`taskset_lab.tasks.released`, exact per seed):
``embed_dim``, ``w_init`` (readout initializer), ``vocab_size``, ``core``,
``trainable_init``, ``dataset = [name, {patch_length, batch_size, just_train, num_train}]``.

What a task computes (TaskSet's ``language_model._build_lm_task``), batch ``text [B, T]``
with ``T = patch_length``:

1. ``tok = min(text, vocab_size − 1)`` — ids ≥ ``vocab_size − 1`` collapse into one class
   (char LM with vocab 256: byte 0xFF (id 256) merges with id 255; word LM with a vocab
   smaller than the ~8k subwords: every high id collapses);
2. ``Embed(vocab_size, embed_dim)`` (N(0, 1)), the core (:class:`taskset_lab.tasks.layers.SonnetCore`) over all
   ``T`` steps from its (possibly trainable) initial state;
3. ``logits = SonnetLinear(vocab_size, w_init)(outputs[:, :-1])``, targets ``tok[:, 1:]``.

**Loss convention**: mean sparse softmax cross-entropy in nats over all ``B·(T−1)``
positions, padding (id 0) positions included (TaskSet produces a mask but never uses it).

Data (:mod:`taskset_lab.data.taskset_text`): ``num_per_valid`` 3000 (char) / 10000 (word)
examples per validation split, ``num_train`` subsets, ``just_train`` makes all four splits the
training split (as TaskSet's ``_make_just_train``). Offline (``offline_data="substitute"``)
the pydoc stand-in is used and ``task.data_substitute = "pydoc"``.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.data.taskset_text import config_seed, load_text_dataset
from taskset_lab.tasks.text_windows import TextWindowData
from taskset_lab.tasks.base import Batch, Task
from taskset_lab.tasks.layers import Embed, SonnetCore, SonnetLinear, is_core
from taskset_lab.tasks.initializers import is_initializer
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.char_rnn import sample_char_rnn_language_model_family
from taskset_lab.tasks.released.word_rnn import sample_word_rnn_language_model_family
from taskset_lab.tasks.released.sampling import CHAR_LM_DATASETS, WORD_LM_DATASETS

CHAR_FAMILY = "char_rnn_language_model_family"
WORD_FAMILY = "word_rnn_language_model_family"
NUM_PER_VALID = {CHAR_FAMILY: 3000, WORD_FAMILY: 10000}


class RNNLanguageModel(nn.Module):
    """Embedding, Sonnet core, readout; ``text [B, T] -> logits [B, T−1, vocab]``."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.vocab_size = int(config["vocab_size"])
        embed_dim = int(config["embed_dim"])
        self.embed = Embed(self.vocab_size, embed_dim)
        self.core = SonnetCore(config["core"], embed_dim, bool(config["trainable_init"]))
        self.readout = SonnetLinear(self.core.hidden, self.vocab_size, config["w_init"])

    def forward(self, text: Tensor) -> Tensor:
        tok = text.clamp(max=self.vocab_size - 1)
        outputs = self.core(self.embed(tok))
        return self.readout(outputs[:, :-1])


class RNNLanguageModelTask(Task):
    def make_module(self) -> nn.Module:
        return RNNLanguageModel(self.config)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        targets = batch[0].clamp(max=int(self.config["vocab_size"]) - 1)[:, 1:]
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), targets.reshape(-1))


def _is_dataset(names: list[str]):
    def check(value: Any) -> bool:
        if not (isinstance(value, list) and len(value) == 2 and value[0] in names and isinstance(value[1], dict)):
            return False
        cfg = value[1]
        ints = all(isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool) and cfg[k] >= 1
                   for k in ("patch_length", "batch_size"))
        num_train = cfg.get("num_train")
        return (ints and cfg["patch_length"] >= 2 and isinstance(cfg.get("just_train"), bool)
                and (num_train is None or (isinstance(num_train, int) and num_train >= 1)))
    return check


def lm_fields(family: str) -> dict[str, Field]:
    names = CHAR_LM_DATASETS if family == CHAR_FAMILY else WORD_LM_DATASETS
    vocab_high = 257 if family == CHAR_FAMILY else 1_000_000
    return {
        "embed_dim": Field("int", low=1, high=4096),
        "w_init": Field("list", check=is_initializer, allowed="[initializer name, scale or null]"),
        "vocab_size": Field("int", low=2, high=vocab_high),
        "core": Field("list", check=is_core, allowed="[vrnn|gru|lstm, {core_dim, initializers...}]"),
        "trainable_init": Field("bool"),
        "dataset": Field("list", check=_is_dataset(list(names)),
                         allowed=f"[name, {{patch_length>=2, batch_size, just_train, num_train}}] with name "
                                 f"one of {', '.join(names)}"),
    }


def build_lm(config: dict[str, Any], family: str, data_dir: str | None = None, offline_data: str = "error"
             ) -> RNNLanguageModelTask:
    name, cfg = config["dataset"]
    splits, substitute = load_text_dataset(name, data_dir, offline_data, num_per_valid=NUM_PER_VALID[family],
                                           num_train=cfg.get("num_train"))
    if cfg.get("just_train"):
        splits = {s: splits["train"] for s in splits}
    data = TextWindowData(splits, int(cfg["patch_length"]), int(cfg["batch_size"]), seed=config_seed(config))
    task = RNNLanguageModelTask(config, data)
    if substitute:
        task.data_substitute = substitute
    return task


def build_char(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> RNNLanguageModelTask:
    return build_lm(config, CHAR_FAMILY, data_dir, offline_data)


def build_word(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> RNNLanguageModelTask:
    return build_lm(config, WORD_FAMILY, data_dir, offline_data)


register_task_family(CHAR_FAMILY, sample_char_rnn_language_model_family, build_char, fields=lm_fields(CHAR_FAMILY),
                     released=sample_char_rnn_language_model_family)
register_task_family(WORD_FAMILY, sample_word_rnn_language_model_family, build_word, fields=lm_fields(WORD_FAMILY),
                     released=sample_word_rnn_language_model_family)
