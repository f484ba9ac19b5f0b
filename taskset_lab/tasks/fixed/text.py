"""TaskSet's fixed text tasks: ``FixedLM_*`` (5, lm1b bytes) and
``FixedTextRNNClassification_*`` (12, imdb subwords8k).

TaskSet's definitions (``task_set/tasks/fixed/fixed_language_modeling.py`` and
``fixed_text_rnn_classification.py``), reproduced with the Sonnet-1 pieces of
:mod:`taskset_lab.tasks.layers`:

* **cores** with Sonnet 1's *default* initializers (the fixed tasks pass none, unlike the
  sampled families): ``snt.GRU(H)``: every ``W``/``U`` glorot_uniform, biases glorot_uniform
  on ``[H]`` (U(±sqrt(3/H))); ``snt.LSTM(H)``: ``W [E+H, 4H]`` and ``b [4H]`` truncated normal
  with stddev ``1/sqrt(E+H)`` (cut at 2 stddevs), forget bias 1.0 added in the forward pass;
  ``snt.VanillaRNN(H)``: two ``snt.Linear`` (``W [E,H]``, ``W [H,H]``, truncated normal stddev
  ``1/sqrt(fan_in)``, both biases zeros), tanh unless the name says relu; ``IRNN``: the
  relu VanillaRNN with ``hidden_to_hidden`` ``w`` = identity (its bias still zeros);
* **initial state**: ``initial_state(bs, trainable=True)``: one trainable zero-initialised
  ``[1, H]`` vector per state tensor (GRU/VRNN: h; LSTM: h and c), tiled over the batch;
* **embedding** ``snt.Embed``: N(0, 1) table; **readout** ``snt.Linear`` default init
  (truncated normal stddev ``1/sqrt(H)``, bias zeros).

``FixedLM`` (``teacher_force_language_modeling``): lm1b/bytes (ids = UTF-8 byte + 1, 0 =
padding), windows of ``patch_length`` 128, batch 128, ``Embed(256, 64)``, the core over all
128 steps, ``SonnetLinear(256)`` on ``outputs[:, :-1]``, targets ``text[:, 1:]``. **Loss**: softmax
cross-entropy in nats averaged over the *non-padding* target positions
(``sum(mask·ce) / sum(mask)``, mask = the token is not padding; this is the one TaskSet text
task that uses the mask; ``avg`` in the names is this average). Tokens are not clipped in
TaskSet; the byte id 256 (byte 0xFF) is outside ``Embed(256)`` but never occurs in UTF-8
text; it is clipped to 255 here so no input can index out of range. A batch whose targets
are all padding has loss 0 here (TaskSet: 0/0).

``FixedTextRNNClassification`` (``rnn_classification``): imdb_reviews/subwords8k, 2 classes,
``tok = min(text, 9999)`` (vocab_size 10000 > the ~8.2k subword ids, so the clip never
acts and embedding rows past the largest id are parameters that never get a gradient),
``Embed(10000, E)``, the core over all T steps, then ``last`` (``outputs[:, -1]``, often a
padding step of a short review) or ``avg`` (mean over all T steps, padding included),
``SonnetLinear(2)``. **Loss**: mean softmax cross-entropy with the one-hot label, in nats. Names
without ``avg``/``last`` use ``last`` (the helper's default); ``E128``/``embed128`` set the
embedding size (64 otherwise).

Data (:mod:`taskset_lab.data.taskset_text`): 3000 examples per validation split, random
windows per example, batches seeded by the task's name. Offline (``offline_data=
"substitute"``) both kinds run on the pydoc stand-in (bytes, or a subword vocabulary trained
on it with the same tokenizer; label = whether the paragraph is upper-cased) and ``task.data_substitute =
"pydoc"``. Every name agrees with TaskSet's code (core, width, embedding, readout, patch
length, batch size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.data.taskset_text import config_seed, load_text_dataset
from taskset_lab.tasks.text_windows import TextWindowData
from taskset_lab.tasks.base import Batch, Task
from taskset_lab.tasks.layers import Embed, GRU_KEYS, SonnetCore, SonnetLinear
from taskset_lab.tasks.initializers import TRUNC_STD
from taskset_lab.tasks.registry import register_fixed_tasks

LM_KIND = "FixedLM"
CLS_KIND = "FixedTextRNNClassification"
LM_DATASET = "lm1b/bytes"
CLS_DATASET = "imdb_reviews/subwords8k"
LM_VOCAB = 256  # snt.Embed(vocab_size=256) and snt.Linear(256) in TaskSet's LM helper
CLS_VOCAB = 10_000  # rnn_classification's default vocab_size
NUM_CLASSES = 2
NUM_PER_VALID = 3000  # random_slice_text_data's default

#: Sonnet 1's default Linear initializer, truncated normal with stddev 1/sqrt(fan_in) cut at
#: 2 stddevs, as a ``tf_init`` spec: variance_scaling draws stddev sqrt(s/fan_in)/TRUNC_STD,
#: which is 1/sqrt(fan_in) for s = TRUNC_STD**2.
SONNET_LINEAR = ["variance_scaling", TRUNC_STD ** 2]
GLOROT_UNIFORM = ["glorot_uniform", None]


@dataclass(frozen=True)
class FixedTextSpec:
    """One fixed text task as TaskSet's code defines it."""

    name: str
    kind: str  # LM_KIND or CLS_KIND
    core: str  # "gru" | "lstm" | "vrnn"
    hidden: int
    embed_dim: int
    patch_length: int
    batch_size: int
    activation: str = "tanh"  # vrnn only
    identity_init: bool = False  # IRNN: hidden_to_hidden w = identity
    readout: str = "last"  # classification only: "last" | "avg"

    @property
    def dataset(self) -> str:
        return LM_DATASET if self.kind == LM_KIND else CLS_DATASET


def sonnet_default_core(spec: FixedTextSpec) -> SonnetCore:
    """``snt.GRU/LSTM/VanillaRNN(H)`` with Sonnet 1's default initializers and a trainable
    initial state."""
    args: dict[str, Any] = {"core_dim": spec.hidden}
    if spec.core == "gru":
        args.update({k: GLOROT_UNIFORM for k in GRU_KEYS})
    elif spec.core == "lstm":
        args["w_gates"] = SONNET_LINEAR
    elif spec.core == "vrnn":
        args.update(act_fn=spec.activation, in_to_hidden=SONNET_LINEAR, hidden_to_hidden=SONNET_LINEAR)
    else:
        raise ValueError(f"unknown core {spec.core!r}")
    core = SonnetCore([spec.core, args], spec.embed_dim, trainable_init=True)
    if spec.identity_init:
        with torch.no_grad():
            core.w_hh.copy_(torch.eye(spec.hidden))
    return core


class FixedLanguageModel(nn.Module):
    """``text [B, T] -> logits [B, T−1, 256]`` (teacher forcing)."""

    def __init__(self, spec: FixedTextSpec):
        super().__init__()
        self.embed = Embed(LM_VOCAB, spec.embed_dim)
        self.core = sonnet_default_core(spec)
        self.readout = SonnetLinear(spec.hidden, LM_VOCAB, SONNET_LINEAR)

    def forward(self, text: Tensor) -> Tensor:
        outputs = self.core(self.embed(text.clamp(max=LM_VOCAB - 1)))
        return self.readout(outputs[:, :-1])


class FixedTextClassifier(nn.Module):
    """``text [B, T] -> logits [B, 2]``: embed, core, ``last``/``avg`` over time, readout."""

    def __init__(self, spec: FixedTextSpec):
        super().__init__()
        self.reduce = spec.readout
        self.embed = Embed(CLS_VOCAB, spec.embed_dim)
        self.core = sonnet_default_core(spec)
        self.readout = SonnetLinear(spec.hidden, NUM_CLASSES, SONNET_LINEAR)

    def forward(self, text: Tensor) -> Tensor:
        outputs = self.core(self.embed(text.clamp(max=CLS_VOCAB - 1)))
        pooled = outputs[:, -1] if self.reduce == "last" else outputs.mean(dim=1)
        return self.readout(pooled)


class FixedLMTask(Task):
    """A FixedLM task: cross-entropy averaged over the non-padding target positions."""

    def __init__(self, spec: FixedTextSpec, data: TextWindowData):
        super().__init__({"family": spec.kind, "name": spec.name}, data)
        self.spec = spec

    def make_module(self) -> nn.Module:
        return FixedLanguageModel(self.spec)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        targets = batch[0][:, 1:]
        ce = F.cross_entropy(output.reshape(-1, output.shape[-1]), targets.clamp(max=LM_VOCAB - 1).reshape(-1),
                             reduction="none")
        mask = (targets.reshape(-1) != 0).to(ce.dtype)
        return (ce * mask).sum() / mask.sum().clamp(min=1.0)


class FixedTextRNNClassificationTask(Task):
    """A FixedTextRNNClassification task: mean softmax cross-entropy of the 2-way logits."""

    def __init__(self, spec: FixedTextSpec, data: TextWindowData):
        super().__init__({"family": spec.kind, "name": spec.name}, data)
        self.spec = spec

    def make_module(self) -> nn.Module:
        return FixedTextClassifier(self.spec)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(output, batch[1].to(torch.int64))


def _specs() -> list[FixedTextSpec]:
    lm = [FixedTextSpec(f"FixedLM_lm1b_patch128_{core.upper()}{h}_embed64_avg_bs128", LM_KIND, core, h, 64, 128, 128)
          for core, h in (("gru", 64), ("gru", 128), ("gru", 256), ("lstm", 128), ("lstm", 256))]
    c = "FixedTextRNNClassification_imdb_"
    cls = [
        FixedTextSpec(c + "patch32_LSTM128_bs128", CLS_KIND, "lstm", 128, 64, 32, 128),
        FixedTextSpec(c + "patch128_LSTM128_bs64", CLS_KIND, "lstm", 128, 64, 128, 64),
        FixedTextSpec(c + "patch32_LSTM128_E128_bs128", CLS_KIND, "lstm", 128, 128, 32, 128),
        FixedTextSpec(c + "patch128_LSTM128_embed128_bs64", CLS_KIND, "lstm", 128, 128, 128, 64),
        FixedTextSpec(c + "patch128_LSTM128_avg_bs64", CLS_KIND, "lstm", 128, 64, 128, 64, readout="avg"),
        FixedTextSpec(c + "patch32_GRU128_bs128", CLS_KIND, "gru", 128, 64, 32, 128),
        FixedTextSpec(c + "patch32_GRU64_avg_bs128", CLS_KIND, "gru", 64, 64, 32, 128, readout="avg"),
        FixedTextSpec(c + "patch32_VRNN128_tanh_bs128", CLS_KIND, "vrnn", 128, 64, 32, 128),
        FixedTextSpec(c + "patch32_VRNN64_tanh_avg_bs128", CLS_KIND, "vrnn", 64, 64, 32, 128, readout="avg"),
        FixedTextSpec(c + "patch32_VRNN64_relu_avg_bs128", CLS_KIND, "vrnn", 64, 64, 32, 128, activation="relu",
                      readout="avg"),
        FixedTextSpec(c + "patch32_IRNN64_relu_avg_bs128", CLS_KIND, "vrnn", 64, 64, 32, 128, activation="relu",
                      identity_init=True, readout="avg"),
        FixedTextSpec(c + "patch32_IRNN64_relu_last_bs128", CLS_KIND, "vrnn", 64, 64, 32, 128, activation="relu",
                      identity_init=True, readout="last"),
    ]
    return lm + cls


SPECS: dict[str, FixedTextSpec] = {s.name: s for s in _specs()}


def build_spec(spec: FixedTextSpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> Task:
    """The task of ``spec`` on its dataset (or the pydoc stand-in when allowed and absent)."""
    classify = spec.kind == CLS_KIND
    splits, substitute = load_text_dataset(spec.dataset, data_dir, offline_data, num_per_valid=NUM_PER_VALID)
    data = TextWindowData(splits, spec.patch_length, spec.batch_size, seed=config_seed({"name": spec.name}),
                          labels=classify)
    task: Task = FixedTextRNNClassificationTask(spec, data) if classify else FixedLMTask(spec, data)
    task.dataset_name = spec.dataset  # the dataset the code loads (the catalogue shows it)
    if substitute:
        task.data_substitute = substitute
    return task


register_fixed_tasks(SPECS.values(), build_spec, kind=lambda spec: spec.kind)
