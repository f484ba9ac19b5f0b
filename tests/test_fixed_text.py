"""TaskSet's fixed text tasks: ``FixedLM`` (5, lm1b bytes) and ``FixedTextRNNClassification``
(12, imdb subwords8k).

Names and definitions are TaskSet's (google-research/google-research
``task_set/tasks/fixed/fixed_language_modeling.py``, ``fixed_text_rnn_classification.py``,
Apache License 2.0). Every name builds on the pydoc stand-in and trains 3 steps in the
population engine; parameter counts are derived by hand from TaskSet's code and Sonnet 1;
the losses (masked LM average, last/avg readouts) and Sonnet's default initializers are checked.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from taskset_lab.data import taskset_text as tt
from taskset_lab.engine import train_population
from taskset_lab.errors import DataError
from taskset_lab.tasks.base import SPLITS
from taskset_lab.tasks.fixed import text
from taskset_lab.tasks.registry import fixed_task_names, get_task

F64 = torch.float64
SMALL_VOCAB = 300  # stand-in subword vocabulary for tests (the real size is 8192)
REFERENCE = Path(__file__).parent / "data" / "taskset_reference" / "fixed_tasks.json"
LM_NAMES = [
    "FixedLM_lm1b_patch128_GRU64_embed64_avg_bs128", "FixedLM_lm1b_patch128_GRU128_embed64_avg_bs128",
    "FixedLM_lm1b_patch128_GRU256_embed64_avg_bs128", "FixedLM_lm1b_patch128_LSTM128_embed64_avg_bs128",
    "FixedLM_lm1b_patch128_LSTM256_embed64_avg_bs128",
]
CLS_NAMES = [
    "FixedTextRNNClassification_imdb_patch32_LSTM128_bs128",
    "FixedTextRNNClassification_imdb_patch128_LSTM128_bs64",
    "FixedTextRNNClassification_imdb_patch32_LSTM128_E128_bs128",
    "FixedTextRNNClassification_imdb_patch128_LSTM128_embed128_bs64",
    "FixedTextRNNClassification_imdb_patch128_LSTM128_avg_bs64",
    "FixedTextRNNClassification_imdb_patch32_GRU128_bs128",
    "FixedTextRNNClassification_imdb_patch32_GRU64_avg_bs128",
    "FixedTextRNNClassification_imdb_patch32_VRNN128_tanh_bs128",
    "FixedTextRNNClassification_imdb_patch32_VRNN64_tanh_avg_bs128",
    "FixedTextRNNClassification_imdb_patch32_VRNN64_relu_avg_bs128",
    "FixedTextRNNClassification_imdb_patch32_IRNN64_relu_avg_bs128",
    "FixedTextRNNClassification_imdb_patch32_IRNN64_relu_last_bs128",
]
KINDS = {**{n: "FixedLM" for n in LM_NAMES}, **{n: "FixedTextRNNClassification" for n in CLS_NAMES}}


@pytest.fixture(autouse=True, scope="module")
def one_thread_small_vocab_private_cache(tmp_path_factory):
    """One intra-op thread (shared cores); a small stand-in subword vocabulary cached in a
    per-session folder instead of the user's cache."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tt, "SUBWORD_VOCAB_SIZE", SMALL_VOCAB)
        mp.setenv("TASKLAB_DATA_DIR", str(tmp_path_factory.getbasetemp() / "fixed_text_cache"))
        yield
    torch.set_num_threads(before)


def _small(name: str, batch_size: int = 4, patch_length: int = 8):
    """The task on the stand-in with TaskSet's model and a small batch and window (CPU budget)."""
    spec = dataclasses.replace(text.SPECS[name], batch_size=batch_size, patch_length=patch_length)
    return text.build_spec(spec, offline_data="substitute")


def test_all_17_registered_under_taskset_names_and_kinds():
    assert set(fixed_task_names("FixedLM_*")) == set(LM_NAMES)
    assert set(fixed_task_names("FixedTextRNNClassification_*")) == set(CLS_NAMES)
    assert {n: s.kind for n, s in text.SPECS.items()} == KINDS
    if REFERENCE.is_file():  # TaskSet's list (tests/data/taskset_reference, Apache 2.0)
        groups = json.loads(REFERENCE.read_text())["groups"]
        assert groups["fixed_language_modeling"] == LM_NAMES
        assert groups["fixed_text_rnn_classification"] == CLS_NAMES


# ------------------------------------------------------------------ parameter counts
# Derived by hand from TaskSet's code and Sonnet 1 (H = core width, E = embedding size):
#   snt.Embed(V, E): V*E;  snt.Linear(n) on d inputs: d*n + n;
#   snt.GRU(H): W{z,r,h} 3*E*H + U{z,r,h} 3*H*H + b{z,r,h} 3*H;
#   snt.LSTM(H): W [E+H, 4H] + b [4H];  snt.VanillaRNN(H): Linear(E->H) + Linear(H->H);
#   initial_state(trainable=True): [1, H] per state tensor (GRU/VRNN 1, LSTM 2).
#   FixedLM GRU64, E 64: Embed(256) 16,384; GRU 3*64*64 + 3*64*64 + 192 = 24,768; init 64;
#     Linear(256) 64*256 + 256 = 16,640                                          -> 57,856
#   FixedLM LSTM128, E 64: 16,384; (64+128)*512 = 98,304 + 512; init 256;
#     128*256 + 256 = 33,024                                                     -> 148,480
#   FixedLM GRU256, E 64: 16,384; 3*64*256 = 49,152; 3*256*256 = 196,608; 768; init 256;
#     256*256 + 256 = 65,792                                                     -> 328,960
#   Classification LSTM128, E 64: Embed(10000) 640,000; 98,304 + 512; init 256;
#     Linear(2) 128*2 + 2 = 258                                                  -> 739,330
#   Classification LSTM128, E 128: 1,280,000; (128+128)*512 = 131,072 + 512; 256; 258
#                                                                                -> 1,412,098
#   Classification GRU128, E 64: 640,000; 3*64*128 = 24,576; 3*128*128 = 49,152; 384;
#     init 128; 258                                                              -> 714,498
#   Classification VRNN64 / IRNN64, E 64: 640,000; 64*64 + 64 = 4,160 (x2); init 64;
#     64*2 + 2 = 130                                                             -> 648,514
PARAM_COUNTS = {
    "FixedLM_lm1b_patch128_GRU64_embed64_avg_bs128": 57_856,
    "FixedLM_lm1b_patch128_LSTM128_embed64_avg_bs128": 148_480,
    "FixedLM_lm1b_patch128_GRU256_embed64_avg_bs128": 328_960,
    "FixedTextRNNClassification_imdb_patch32_LSTM128_bs128": 739_330,
    "FixedTextRNNClassification_imdb_patch128_LSTM128_embed128_bs64": 1_412_098,
    "FixedTextRNNClassification_imdb_patch32_GRU128_bs128": 714_498,
    "FixedTextRNNClassification_imdb_patch32_IRNN64_relu_last_bs128": 648_514,
}


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_counts_match_taskset(name):
    module = _small(name).init_module(0)
    assert sum(p.numel() for p in module.parameters()) == PARAM_COUNTS[name]


# ------------------------------------------------------------------ every task builds and trains


@pytest.mark.parametrize("name", sorted(KINDS))
def test_builds_offline_and_trains_3_steps_in_the_population_engine(name):
    spec = text.SPECS[name]
    task = get_task(name, offline_data="substitute")
    assert task.name == f"{name}_on_pydoc" and task.family == KINDS[name]
    batch = task.data.batch("train", 0)
    assert batch[0].shape == (spec.batch_size, spec.patch_length) and batch[0].dtype == torch.int64
    assert len(batch) == (2 if spec.kind == "FixedTextRNNClassification" else 1)
    small = _small(name)
    result = train_population(small, "adam1p", [{"lr": 1e-3}], total_steps=3, eval_every=3, eval_batches=1,
                              divergence_factor=math.inf)
    assert result.steps == [0, 3]
    for split in SPLITS:
        assert torch.isfinite(result.losses[split]).all(), (name, split)
    first = result.losses["train"][0, 0]
    assert 0.3 < float(first) < (8.0 if spec.kind == "FixedLM" else 3.0)  # ~ln 256 / ln 2 at init


def test_absent_dataset_raises_one_line_data_error(tmp_path):
    with pytest.raises(DataError) as err:
        get_task("FixedLM_lm1b_patch128_GRU64_embed64_avg_bs128", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "lm1b/bytes" in msg and "misc.offline_data=substitute" in msg
    with pytest.raises(DataError) as err:
        get_task("FixedTextRNNClassification_imdb_patch32_GRU128_bs128", data_dir=str(tmp_path))
    assert "imdb_reviews/subwords8k" in str(err.value)


# ------------------------------------------------------------------ what the tasks compute


def test_language_model_loss_averages_over_non_padding_targets_only():
    task = _small("FixedLM_lm1b_patch128_LSTM128_embed64_avg_bs128", batch_size=3, patch_length=10)
    module = task.init_module(0).double()
    text_ids = torch.tensor([[5, 70, 80, 90, 100, 3, 0, 0, 0, 0],
                             [256, 1, 2, 3, 4, 5, 6, 7, 8, 9],
                             [40, 41, 0, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        logits = module(text_ids)
        got = task.train_loss(module, (text_ids,), 0)
    assert logits.shape == (3, 9, 256)
    targets = text_ids[:, 1:].clamp(max=255)
    ce = F.cross_entropy(logits.reshape(-1, 256), targets.reshape(-1), reduction="none").reshape(3, 9)
    keep = targets != 0
    assert int(keep.sum()) == 5 + 9 + 1
    torch.testing.assert_close(got, ce[keep].mean(), rtol=1e-14, atol=0)
    assert not torch.isclose(got, ce.mean())  # padding targets do not count (TaskSet's mask)


@pytest.mark.parametrize("name,reduce", [("FixedTextRNNClassification_imdb_patch32_GRU64_avg_bs128", "avg"),
                                         ("FixedTextRNNClassification_imdb_patch32_GRU128_bs128", "last")])
def test_classifier_reads_out_last_or_average_with_vocab_10000(name, reduce):
    task = _small(name, batch_size=4, patch_length=6)
    module = task.init_module(0).double()
    text_ids, labels = task.data.batch("train", 0)
    text_ids = text_ids.clone()
    text_ids[0, 0] = 12_345  # clipped to row 9999 as TaskSet's min(text, vocab_size - 1)
    with torch.no_grad():
        outputs = module.core(module.embed(text_ids.clamp(max=9999)))
        pooled = outputs[:, -1] if reduce == "last" else outputs.mean(1)
        want = F.cross_entropy(pooled @ module.readout.w + module.readout.b, labels)
        got = task.train_loss(module, (text_ids, labels), 0)
    assert module.embed.embeddings.shape[0] == 10_000 and module.readout.w.shape[1] == 2
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    assert set(labels.tolist()) <= {0, 1}


def test_sonnet_default_initializers_and_trainable_initial_state():
    torch.manual_seed(0)
    lstm = text.FixedLanguageModel(text.SPECS["FixedLM_lm1b_patch128_LSTM256_embed64_avg_bs128"])
    for w, fan_in in ((lstm.core.w_gates, 64 + 256), (lstm.core.b_gates, 64 + 256), (lstm.readout.w, 256)):
        w = w.detach()
        std = 1 / math.sqrt(fan_in)  # truncated_normal(stddev=1/sqrt(fan_in)), cut at 2 stddevs
        assert float(w.abs().max()) <= 2 * std + 1e-7 and abs(float(w.std()) / std - 0.88) < 0.03
    assert float(lstm.readout.b.detach().abs().max()) == 0.0
    assert abs(float(lstm.embed.embeddings.detach().std()) - 1.0) < 0.02  # snt.Embed: N(0, 1)
    assert lstm.core.init_h.shape == lstm.core.init_c.shape == (1, 256)
    assert float(lstm.core.init_h.detach().abs().max()) == 0.0 and lstm.core.init_h.requires_grad
    gru = text.sonnet_default_core(text.SPECS["FixedLM_lm1b_patch128_GRU256_embed64_avg_bs128"])
    lim = math.sqrt(6 / (256 + 256))  # glorot_uniform on U [256, 256]; biases U(+-sqrt(3/256))
    uh, bz = float(gru.uh.detach().abs().max()), float(gru.bz.detach().abs().max())
    assert 0.95 * lim < uh <= lim and 0.9 * math.sqrt(3 / 256) < bz <= math.sqrt(3 / 256)


def test_irnn_is_relu_vanilla_rnn_with_identity_recurrence():
    irnn = text.sonnet_default_core(text.SPECS["FixedTextRNNClassification_imdb_patch32_IRNN64_relu_avg_bs128"])
    vrnn = text.sonnet_default_core(text.SPECS["FixedTextRNNClassification_imdb_patch32_VRNN64_tanh_avg_bs128"])
    assert torch.equal(irnn.w_hh.detach(), torch.eye(64)) and irnn.act_name == "relu"
    assert vrnn.act_name == "tanh" and not torch.equal(vrnn.w_hh.detach(), torch.eye(64))
    assert float(irnn.b_hh.detach().abs().max()) == float(irnn.b_ih.detach().abs().max()) == 0.0
    std = 1 / math.sqrt(64)  # in_to_hidden: snt.Linear default on E = 64 inputs
    assert float(irnn.w_ih.detach().abs().max()) <= 2 * std + 1e-7
    xs = torch.randn(2, 5, 64)
    h = irnn.init_h.expand(2, 64)
    for t in range(5):
        h = torch.relu(xs[:, t] @ irnn.w_ih + h)  # identity recurrence, zero biases
    torch.testing.assert_close(irnn(xs)[:, -1], h)
