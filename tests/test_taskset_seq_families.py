"""TaskSet's sequence families (char/word RNN LMs, RNN text classification, losg problems):
text loaders on tiny files in the real layouts, byte/subword encodings, the missing-data
error, seeds 0-7 training in the population engine, population == alone (float64)."""

from __future__ import annotations

import copy
import gzip
import math

import numpy as np
import pytest
import torch

from conftest import assert_population_equals_alone
from taskset_lab.data import taskset_text as tt
from taskset_lab.tasks.text_windows import TextWindowData
from taskset_lab.engine import train_population
from taskset_lab.errors import DataError
from taskset_lab.optim import get_optimizer_family
from taskset_lab.optim.base import OptimizerFamily
from taskset_lab.tasks.base import SPLITS
from taskset_lab.tasks.context import StepContext, step_context
from taskset_lab.tasks.families import taskset_losg
from taskset_lab.tasks.layers import SonnetCore
from taskset_lab.tasks.initializers import tf_init
from taskset_lab.tasks.registry import build_task, sample_task, sample_task_config
from taskset_lab.tasks.released import released_task_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

F64 = torch.float64
RNN_FAMILIES = ("char_rnn_language_model_family", "word_rnn_language_model_family",
                "rnn_text_classification_family")
SMALL_VOCAB = 300  # subword vocabulary for tests (the real size is 8192)




@pytest.fixture(autouse=True)
def _small_subwords(monkeypatch, tmp_path_factory):
    """Fast tokenizer training, cached in a per-session folder instead of the user's cache."""
    monkeypatch.setattr(tt, "SUBWORD_VOCAB_SIZE", SMALL_VOCAB)
    monkeypatch.setenv("TASKLAB_DATA_DIR", str(tmp_path_factory.getbasetemp() / "standin_cache"))


def shrink(config: dict, batch: int = 4, patch: int = 8) -> dict:
    """The same task with a small batch and window (training speed on 2 shared CPU cores)."""
    config = copy.deepcopy(config)
    if config["family"] in RNN_FAMILIES:
        cfg = config["dataset"][1]
        cfg["bs" if "bs" in cfg else "batch_size"] = batch
        cfg["patch_length"] = patch
    return config


# ------------------------------------------------------------------ encodings


def test_raw_bytes_are_the_same_encoder_without_the_padding_offset():
    """TRANSFER's byte LM reads raw bytes (offset 0, uint8, NUL is a byte); TaskSet's ids are the
    same bytes + 1."""
    from taskset_lab.transfer.text_data import decode_bytes as raw_decode, encode_bytes as raw_encode

    text = "naïve \x00 café ✓"
    raw = raw_encode(text)
    assert raw.dtype == np.uint8 and raw.tolist() == list(text.encode("utf-8"))
    assert (tt.encode_bytes(text) - 1).tolist() == raw.tolist()
    assert raw_decode(raw) == text and raw_decode(torch.tensor(raw.tolist())) == text  # the NUL kept


def test_byte_vocab_round_trip_and_clipping():
    text = "naïve café ✓ \x00\x7f"
    ids = tt.encode_bytes(text)
    assert ids.min() >= 1 and ids.max() <= 256 and len(ids) == len(text.encode("utf-8"))
    assert tt.decode_bytes(ids) == text
    assert tt.decode_bytes(torch.tensor([0, *ids.tolist(), 0])) == text  # padding dropped
    assert tt.encode_bytes("\u00ff").tolist() == [0xC3 + 1, 0xBF + 1]  # UTF-8 bytes, not code points
    # vocab 256: byte 0xFF (id 256) is clipped into id 255, as TaskSet's min(text, vocab - 1)
    config = sample_task_config("char_rnn_language_model_family", 0)
    task = build_task(shrink(config), offline_data="substitute")
    module = task.init_module(0)
    text_ids = torch.tensor([[256, 256, 5, 255, 255, 7, 1, 1]])
    clipped = torch.tensor([[255, 255, 5, 255, 255, 7, 1, 1]])
    torch.testing.assert_close(module(text_ids), module(clipped))
    assert torch.allclose(task.loss(module(text_ids), (text_ids,)), task.loss(module(clipped), (clipped,)))


def test_subword_tokenizer_round_trip_and_cache(tmp_path):
    texts = tt.read_stand_in()["train"][0][:400]
    cache = tmp_path / "subwords300.bpe.json"
    tok = tt.subword_tokenizer(texts, cache, vocab_size=SMALL_VOCAB)
    assert cache.is_file() and tok.get_vocab_size() == SMALL_VOCAB - 1
    sample = texts[3] + " ünïcode ✓"
    ids = tt.encode_subwords(tok, sample)
    assert ids.min() >= 1 and ids.max() <= SMALL_VOCAB - 1
    assert len(ids) < len(sample.encode("utf-8"))  # merges happened
    assert tt.decode_subwords(tok, ids.tolist()) == sample
    again = tt.subword_tokenizer(["unrelated"], cache, vocab_size=SMALL_VOCAB)  # read from the cache
    assert again.encode(sample).ids == tok.encode(sample).ids


# ------------------------------------------------------------------ loaders, real layouts


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_lm1b_loader(tmp_path):
    root = tmp_path / "lm1b" / "1-billion-word-language-modeling-benchmark-r13output"
    train = [f"train sentence number {i} ." for i in range(40)]
    _write(root / "training-monolingual.tokenized.shuffled" / "news.en-00001-of-00100", "\n".join(train[:25]) + "\n")
    _write(root / "training-monolingual.tokenized.shuffled" / "news.en-00002-of-00100", "\n".join(train[25:]) + "\n")
    _write(root / "heldout-monolingual.tokenized.shuffled" / "news.en.heldout-00000-of-00050", "held out one .\nheld two .\n")
    splits, sub = tt.load_text_dataset("lm1b/bytes", tmp_path, num_per_valid=3000, num_train=20)
    assert sub is None
    assert [len(splits[s]) for s in SPLITS] == [20, 4, 4, 2]  # valid capped at a tenth of 40
    assert tt.decode_bytes(splits["valid_inner"].example(0)) == train[0]
    assert tt.decode_bytes(splits["train"].example(0)) == train[8]
    assert tt.decode_bytes(splits["test"].example(1)) == "held two ."
    words, _ = tt.load_text_dataset("lm1b/subwords8k", tmp_path, num_per_valid=2)
    assert len(words["train"]) == 36 and (tmp_path / "lm1b" / f"subwords{SMALL_VOCAB}.bpe.json").is_file()


def test_imdb_loader_labels_and_hash_order(tmp_path):
    base = tmp_path / "imdb_reviews" / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            for i in range(10):
                _write(base / split / label / f"{i}_{7 if label == 'pos' else 2}.txt", f"{split} {label} review {i}")
    _write(base / "train" / "unsup" / "0_0.txt", "unlabelled, not part of tfds' train split")
    splits, _ = tt.load_text_dataset("imdb_reviews/bytes", tmp_path, num_per_valid=3000)
    assert [len(splits[s]) for s in SPLITS] == [16, 2, 2, 20]
    for s in SPLITS:
        c = splits[s]
        for i in range(len(c)):
            text = tt.decode_bytes(c.example(i))
            assert int(c.labels[i]) == (1 if " pos " in text else 0)
    assert {int(v) for v in splits["train"].labels} == {0, 1}  # hash order mixes the labels


def test_wikipedia_loader_paragraphs_and_split(tmp_path):
    import json

    folder = tmp_path / "wikipedia" / "20190301.hsb" / "AA"
    lines = [json.dumps({"id": str(i), "title": f"T{i}", "text": f"Title {i}\nParagraph one of {i}.\nshort\n\n"
                                                                 f"Paragraph two of {i}."}) for i in range(30)]
    _write(folder / "wiki_00", "\n".join(lines[:15]) + "\n")
    _write(folder / "wiki_01", "\n".join(lines[15:]) + "\n")
    raw = tt.read_source("wikipedia/20190301.hsb", "tokenized_wikipedia/20190301.hsb_bytes", tmp_path)
    train, test = raw["train"][0], raw["test"][0]
    assert len(train) + len(test) == 90 and len(train) % 3 == 0 and 0 < len(test) < len(train)
    assert "short" not in train + test and "Paragraph two of 0." in train + test
    splits, _ = tt.load_text_dataset("tokenized_wikipedia/20190301.hsb_bytes", tmp_path, num_per_valid=3)
    assert len(splits["valid_inner"]) == 3 and len(splits["test"]) == len(test)


def test_amazon_loader_tsv_gz(tmp_path):
    header = ["marketplace", "customer_id", "review_id", "product_id", "product_parent", "product_title",
              "product_category", "star_rating", "helpful_votes", "total_votes", "vine", "verified_purchase",
              "review_headline", "review_body", "review_date"]
    rows = ["\t".join(header)]
    for i in range(50):
        rows.append("\t".join(["US", str(i), f"R{i}", "P", "1", "title", "Camera", str(i % 5 + 1), "0", "0", "N",
                               "Y", "head", f"body of review {i} stars {i % 5 + 1}", "2015-08-31"]))
    folder = tmp_path / "amazon_reviews"
    folder.mkdir()
    with gzip.open(folder / "amazon_reviews_us_Camera_v1_00.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    raw = tt.read_source("amazon_reviews/Camera_v1_00", "tokenized_amazon_reviews/Camera_v1_00_bytes", tmp_path)
    texts, labels = raw["train"]
    assert len(texts) + len(raw["test"][0]) == 50 and len(raw["test"][0]) > 0
    for text, label in zip(texts, labels):
        assert text.endswith(f"stars {label + 1}")
    splits, _ = tt.load_text_dataset("tokenized_amazon_reviews/Camera_v1_00_bytes", tmp_path, num_per_valid=2)
    assert splits["train"].labels is not None and len(splits["valid_outer"]) == 2


def test_text_classification_loads_imdb_whatever_the_name(tmp_path):
    """TaskSet's quirk: an amazon/bytes name trains on IMDB subwords8k."""
    base = tmp_path / "imdb_reviews" / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            for i in range(12):
                _write(base / split / label / f"{i}_1.txt", f"a {label} film, number {i}")
    config = sample_task_config("rnn_text_classification_family", 0)
    assert config["dataset"][0].startswith("tokenized_amazon_reviews/")
    task = build_task(shrink(config), data_dir=str(tmp_path))
    assert getattr(task, "data_substitute", None) is None
    text, label = task.data.batch("train", 0)
    assert text.shape == (4, 8) and set(label.tolist()) <= {0, 1}
    assert (tmp_path / "imdb_reviews" / f"subwords{SMALL_VOCAB}.bpe.json").is_file()


def test_missing_data_is_one_line_error(tmp_path):
    config = sample_task_config("char_rnn_language_model_family", 5)  # lm1b/bytes
    with pytest.raises(DataError) as err:
        build_task(config, data_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "lm1b/bytes" in msg and str(tmp_path / "lm1b") in msg
    assert "misc.data_dir" in msg and "misc.offline_data=substitute" in msg
    task = build_task(config, data_dir=str(tmp_path), offline_data="substitute")
    assert task.data_substitute == "pydoc"


def test_windows_are_pure_and_padded():
    corpus = tt.bytes_corpus(["abcdefghij", "xy"])
    data = TextWindowData({s: corpus for s in SPLITS}, patch_length=4, batch_size=64, seed=3)
    a, b = data.batch("train", 5)[0], data.batch("train", 5)[0]
    assert torch.equal(a, b) and not torch.equal(a, data.batch("train", 6)[0])
    for row in a.tolist():
        text = tt.decode_bytes(row)
        assert text == "xy" and row[2:] == [0, 0] or text in {"abcdefghij"[i:i + 4] for i in range(6)}
    starts = {tt.decode_bytes(r)[0] for r in a.tolist() if r[2] != 0}
    assert "g" not in starts and len(starts) > 2  # TF's exclusive maxval: the last window is never drawn


# ------------------------------------------------------------------ initializers and cores


def test_tf_initializers_and_core_biases():
    torch.manual_seed(0)
    assert abs(tf_init(["he_normal", None], (400, 300)).std().item() - math.sqrt(2 / 400)) < 0.003
    assert tf_init(["he_normal", None], (400, 300)).abs().max() <= 2 * math.sqrt(2 / 400) / 0.8796256 + 1e-6
    lim = math.sqrt(6 / 700)
    w = tf_init(["glorot_uniform", None], (400, 300))
    assert w.abs().max() <= lim and w.abs().max() > 0.99 * lim
    assert abs(tf_init(["truncated_normal", 3.0], (400, 300)).std().item() - 3.0) < 0.03  # TaskSet: plain normal
    assert abs(tf_init(["variance_scaling", 2.0], (400, 300)).std().item() - math.sqrt(2.0 / 400)) < 0.003
    q = tf_init(["orthogonal", 0.5], (30, 50)).double()
    torch.testing.assert_close(q @ q.T, 0.25 * torch.eye(30, dtype=F64), atol=1e-5, rtol=0)
    gru = SonnetCore(["gru", {"core_dim": 50, **{k: ["he_uniform", None] for k in
                                                ("wh", "wz", "wr", "uh", "uz", "ur")}}], 8, False)
    assert gru.bz.abs().max() <= math.sqrt(3 / 50) and gru.bz.abs().max() > 0.5 * math.sqrt(3 / 50)
    lstm = SonnetCore(["lstm", {"core_dim": 6, "w_gates": ["glorot_uniform", None]}], 4, True)
    assert lstm.w_gates.shape == (10, 24) and lstm.init_h.shape == lstm.init_c.shape == (1, 6)
    assert lstm(torch.randn(3, 5, 4)).shape == (3, 5, 6)


# ------------------------------------------------------------------ losg gradient noise


def test_losg_noise_changes_gradient_not_value():
    task = sample_task("losg_tasks_family", 37)  # sparse_problems on dependency_chain, noise 1.72
    assert task.config["kind"] == "sparse_problems" and task.problem.zero_probability > 0.9
    released = released_task_config("losg_tasks_family_seed37")[0]  # TaskSet's [kind, config, seed]
    assert taskset_losg.to_released(task.config) == released
    assert taskset_losg.from_released(released) == {k: v for k, v in task.config.items() if k != "family"}
    module = task.init_module(0).double()
    batch = task.data.batch("train", 0)
    p = module.p0
    u = torch.rand(p.shape, dtype=F64)
    n = torch.randn(p.shape, dtype=F64)
    with step_context(StepContext(train=True, noise={"losg.zero.p0": u, "losg.noise.p0": n})):
        noisy = module(*batch)
    g_noisy, = torch.autograd.grad(noisy, p)
    with step_context(StepContext(train=False)):
        clean = module(*batch)
    g_clean, = torch.autograd.grad(clean, p)
    assert noisy.item() == clean.item()
    keep = (u >= task.problem.zero_probability).to(F64)
    torch.testing.assert_close(g_noisy, keep * (g_clean + task.problem.noise_stdev * n))
    assert 0 < keep.sum() < keep.numel() or keep.numel() < 10


# ------------------------------------------------------------------ training


class PlainSGD(OptimizerFamily):
    """SGD: the cheapest update, so the 8-seed test spends its time in the tasks (a word LM's
    1k-30k vocabulary makes an adam8p update cost more than its RNN; adam8p is trained in the
    float64 equivalence tests)."""

    name = "plain_sgd_test"
    hparam_names = ("lr",)

    def sample(self, seed: int):
        return {"lr": 10.0 ** -(2 + seed % 3)}

    def update(self, p, g, state, step, hp, total_steps):
        return p - hp["lr"] * g, {}


@pytest.mark.parametrize("family", RNN_FAMILIES + ("losg_tasks_family",))
def test_seeds_0_to_7_build_and_train(family):
    sgd = PlainSGD()
    hps = [sgd.sample(0)]
    for seed in range(8):
        config = sample_task_config(family, seed)
        full = build_task(config, offline_data="substitute")  # the released config, full size
        if family in RNN_FAMILIES:
            assert full.data_substitute == "pydoc"
        task = build_task(shrink(config, batch=2, patch=4), offline_data="substitute")
        # no divergence rule: it would NaN a config from step 0 whose first minibatch loss is far
        # above the one evaluation batch (seed 7's relu VRNN: minibatch losses 0-140 at init),
        # and this test asks only that the task's losses at init are finite
        result = train_population(task, sgd, hps, total_steps=20, eval_every=20, eval_batches=1, max_chunk=1,
                                  divergence_factor=math.inf)
        assert result.steps == [0, 20]
        for s in SPLITS:
            assert torch.isfinite(result.losses[s][:, 0]).all(), (family, seed, s)


EQUIVALENCE_SEEDS = {"char_rnn_language_model_family": 0,  # gru, trainable initial state
                     "word_rnn_language_model_family": 1,  # vrnn
                     "rnn_text_classification_family": 1,  # lstm, trainable, avg readout
                     "losg_tasks_family": 37}  # sparse gradients + gradient noise + data


@pytest.mark.parametrize("family", sorted(EQUIVALENCE_SEEDS))
def test_population_matches_alone_float64(family):
    config = sample_task_config(family, EQUIVALENCE_SEEDS[family])
    task = build_task(shrink(config, batch=3, patch=5), offline_data="substitute")
    adam = get_optimizer_family("adam8p")
    hps = [adam.sample(i) for i in range(2)]
    assert_population_equals_alone(task, hps, rtol=1e-9, check=[1])
    if family == "losg_tasks_family":  # the noise is per config id: same hparams, other curve
        same = train_population(task, adam, [hps[0], hps[0]], total_steps=4, eval_every=2, eval_batches=1,
                                dtype=F64)
        assert not torch.equal(same.losses["train"][0], same.losses["train"][1])
