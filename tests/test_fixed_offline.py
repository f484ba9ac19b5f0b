"""TaskSet's 26 fixed tasks that generate their own data: ``TwoD_*``, ``Associative_*``, ``Copy_*``.

Task names are TaskSet's (google-research/google-research ``task_set/tasks/fixed/fixed_2d.py``
and ``task_set/tasks/synthetic_sequence.py``, Apache License 2.0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_population_equals_alone
from taskset_lab.engine import train_population
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.base import SPLITS
from taskset_lab.tasks.fixed import synthetic_sequence as seq
from taskset_lab.tasks.fixed import two_d
from taskset_lab.tasks.registry import build_fixed_task, fixed_task_names, get_task

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """One intra-op thread: on a CPU shared by many jobs, ops big enough to be split across
    threads (the RNNs' [H, 4H] gradient sums) wait on descheduled threads, 30-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

TWO_D = ["TwoD_Bowl1", "TwoD_Bowl10", "TwoD_Bowl100", "TwoD_Bowl1000", "TwoD_Rosenbrock", "TwoD_Ackley",
         "TwoD_Beale", "TwoD_StyblinskiTang"]
SEQUENCE = [
    "Associative_LSTM128_BS128_Pairs5_Tokens20", "Associative_LSTM128_BS128_Pairs20_Tokens50",
    "Associative_LSTM256_BS128_Pairs40_Tokens100", "Associative_LSTM128_BS128_Pairs10_Tokens50",
    "Associative_GRU128_BS128_Pairs10_Tokens50", "Associative_VRNN128_BS128_Pairs10_Tokens50",
    "Associative_LSTM256_BS128_Pairs20_Tokens50", "Associative_GRU256_BS128_Pairs20_Tokens50",
    "Associative_VRNN256_BS128_Pairs20_Tokens50",
    "Copy_LSTM128_BS128_Length5_Tokens10", "Copy_LSTM128_BS128_Length20_Tokens20",
    "Copy_LSTM128_BS128_Length50_Tokens5", "Copy_LSTM128_BS128_Length20_Tokens10",
    "Copy_GRU128_BS128_Length20_Tokens10", "Copy_VRNN128_BS128_Length20_Tokens10",
    "Copy_LSTM256_BS128_Length40_Tokens50", "Copy_GRU256_BS128_Length40_Tokens50",
    "Copy_VRNN256_BS128_Length40_Tokens50",
]


# ------------------------------------------------------------------ registry


def test_all_26_registered_under_taskset_names_and_build():
    registered = set(fixed_task_names("TwoD_*") + fixed_task_names("Associative_*") + fixed_task_names("Copy_*"))
    assert registered == set(TWO_D + SEQUENCE)
    for name in TWO_D + SEQUENCE:
        task = get_task(name)
        assert task.name == name
        assert task.family == name.split("_")[0]


# ------------------------------------------------------------------ parameter counts
# Derived by hand from TaskSet's code: the input is one-hot of size V = tokens + 2 (no
# embedding), the core is Sonnet 1's, the readout is snt.Linear(V) with a bias.
#   snt.LSTM(H):       w_gates [V + H, 4H] + b_gates [4H]          = 4H(V + H) + 4H
#   snt.GRU(H):        wz, wr, wh [V, H]; uz, ur, uh [H, H]; bz, br, bh [H] = 3(VH + H^2 + H)
#   snt.VanillaRNN(H): in_to_hidden Linear [V, H] + [H]; hidden_to_hidden [H, H] + [H]
#                                                                  = VH + H + H^2 + H
#   readout:           [H, V] + [V]                                = HV + V
PARAM_COUNTS = {
    # V = 22, H = 128: 150*512 + 512 = 77,312; readout 128*22 + 22 = 2,838
    "Associative_LSTM128_BS128_Pairs5_Tokens20": 80_150,
    # V = 52, H = 128: 3*(6,656 + 16,384 + 128) = 69,504; readout 6,656 + 52 = 6,708
    "Associative_GRU128_BS128_Pairs10_Tokens50": 76_212,
    # V = 52, H = 256: 13,312 + 256 + 65,536 + 256 = 79,360; readout 13,312 + 52 = 13,364
    "Associative_VRNN256_BS128_Pairs20_Tokens50": 92_724,
    # V = 12, H = 128: 140*512 + 512 = 72,192; readout 128*12 + 12 = 1,548
    "Copy_LSTM128_BS128_Length20_Tokens10": 73_740,
    # V = 12, H = 128: 3*(1,536 + 16,384 + 128) = 54,144; readout 1,548
    "Copy_GRU128_BS128_Length20_Tokens10": 55_692,
    # V = 12, H = 128: 1,536 + 128 + 16,384 + 128 = 18,176; readout 1,548
    "Copy_VRNN128_BS128_Length20_Tokens10": 19_724,
}


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_counts_match_taskset(name):
    module = build_fixed_task(name).init_module(0)
    assert sum(p.numel() for p in module.parameters()) == PARAM_COUNTS[name]


def test_sonnet_initializer_scales():
    torch.manual_seed(0)
    lstm = seq.SonnetLSTM(vocab=52, hidden=256)
    std = 1 / math.sqrt(52 + 256)
    assert lstm.w_gates.abs().max() <= 2 * std  # truncated at two standard deviations
    assert abs(lstm.w_gates.std().item() / std - 0.88) < 0.03  # a 2-sigma truncated normal's std
    gru = seq.SonnetGRU(vocab=52, hidden=256)
    assert gru.bz.abs().max() <= math.sqrt(3 / 256) and gru.bz.abs().max() > 0.9 * math.sqrt(3 / 256)
    assert gru.wz.abs().max() <= math.sqrt(6 / (52 + 256))
    vrnn = seq.SonnetVanillaRNN(vocab=12, hidden=128)
    assert (vrnn.b_ih == 0).all() and (vrnn.b_hh == 0).all()


# ------------------------------------------------------------------ the 2-D problems


def _value(name: str, point) -> float:
    return float(two_d.SPECS[name].fn(torch.tensor(point, dtype=F64)))


def test_two_d_values_at_known_points():
    assert _value("TwoD_Rosenbrock", [1.0, 1.0]) == 0.0
    assert _value("TwoD_Rosenbrock", [0.0, 0.0]) == 1.0
    assert _value("TwoD_Beale", [3.0, 0.5]) == 0.0
    assert _value("TwoD_Beale", [0.0, 0.0]) == pytest.approx(1.5**2 + 2.25**2 + 2.625**2)
    assert _value("TwoD_Ackley", [0.0, 0.0]) == pytest.approx(0.0, abs=1e-12)
    # at (1, 0) the cosine term is exp(0.5 * (1 + 1)) = e, which cancels TaskSet's + e
    assert _value("TwoD_Ackley", [1.0, 0.0]) == pytest.approx(20 - 20 * math.exp(-0.2 * math.sqrt(0.5)))
    # TaskSet's Styblinski-Tang: 0.5 * sum(x^4 - 16x^2 + 5x) + 80; minimum at x_i = -2.903534
    per_coordinate = (-2.903534) ** 4 - 16 * 2.903534**2 + 5 * -2.903534
    assert _value("TwoD_StyblinskiTang", [-2.903534] * 2) == pytest.approx(per_coordinate + 80.0, rel=1e-12)
    assert _value("TwoD_StyblinskiTang", [-2.903534] * 2) == pytest.approx(1.667669, abs=1e-5)
    for c in (1, 10, 100, 1000):  # 0.5 * ||diag(sqrt(c), 1) x||^2
        assert _value(f"TwoD_Bowl{c}", [1.0, 2.0]) == pytest.approx(0.5 * (c + 4.0), rel=1e-12)


def test_ackley_gradient_is_finite_at_its_minimum():
    x = torch.zeros(2, dtype=F64, requires_grad=True)
    two_d.ackley(x).backward()
    assert torch.isfinite(x.grad).all()


def test_philox_known_answers():
    # Random123's published Philox-4x32-10 known-answer vectors.
    assert two_d.philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert two_d.philox4x32_10((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert two_d.philox4x32_10((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


# TaskSet's initial points as float32 bit patterns, computed with TensorFlow 2.21 in
# tf.compat.v1 graph mode (no graph seed) from the ops TaskSet's problems build with op seed
# 123: tf.random_normal((2, 1)) for the bowls, tf.random_uniform((2,), lo, hi) otherwise.
TF_INITIAL_BITS = {
    "TwoD_Bowl1": (0x401C62EC, 0x3F273E86),
    "TwoD_Bowl10": (0x401C62EC, 0x3F273E86),
    "TwoD_Bowl100": (0x401C62EC, 0x3F273E86),
    "TwoD_Bowl1000": (0x401C62EC, 0x3F273E86),
    "TwoD_Rosenbrock": (0xC08C6950, 0xBFEFD4CC),  # [-5, 10]
    "TwoD_Ackley": (0xC1F0BF7E, 0xC198DF0A),  # [-32.768, 32.768]
    "TwoD_Beale": (0xC0843F30, 0xC027F30A),  # [-4.5, 4.5]
    "TwoD_StyblinskiTang": (0xC092F0E0, 0xC03A9C44),  # [-5, 5]
}


@pytest.mark.parametrize("name", TWO_D)
def test_two_d_initial_point_is_taskset_s(name):
    task = build_fixed_task(name)
    x = task.init_module(0).x.detach().numpy()
    assert tuple(int(b) for b in x.view(np.uint32)) == TF_INITIAL_BITS[name]
    # TaskSet's init does not depend on the run: every replica starts at the same point
    assert torch.equal(task.init_module(5).x, task.init_module(0).x)


# ------------------------------------------------------------------ sequence data


def test_sequence_batches_are_pure_functions_of_split_and_step():
    for name in ("Associative_GRU128_BS128_Pairs10_Tokens50", "Copy_VRNN128_BS128_Length20_Tokens10"):
        data = build_fixed_task(name).data
        spec = seq.SPECS[name]
        a, b = data.batch("train", 3), data.batch("train", 3)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert all(t.shape == (128, spec.seq_len) for t in a)
        assert a[0].dtype == torch.long and a[1].dtype == torch.long and a[2].dtype == torch.float32
        assert not torch.equal(a[0], data.batch("train", 4)[0])
        assert not torch.equal(a[0], data.batch("test", 3)[0])
        moved = data.to("cpu", F64)
        assert moved.batch("train", 3)[2].dtype == F64 and torch.equal(moved.batch("train", 3)[0], a[0])


def test_copy_batches_have_taskset_structure():
    spec = seq.SPECS["Copy_LSTM128_BS128_Length20_Tokens20"]
    n, length = spec.tokens, spec.length
    inputs, targets, mask = build_fixed_task(spec.name).data.batch("valid_inner", 7)
    assert inputs.shape == (128, 2 * length + 1)
    assert (inputs[:, :length] < n).all() and (inputs[:, :length] >= 0).all()
    assert (inputs[:, length] == n).all()  # one separator
    assert (inputs[:, length + 1:] == n + 1).all()  # emit tokens
    assert torch.equal(targets[:, length + 1:], inputs[:, :length])  # the copy after the separator
    assert (targets[:, :length + 1] == 0).all()  # TaskSet's zeros_like outputs before it
    assert (mask[:, :length + 1] == 0).all() and (mask[:, length + 1:] == 1).all()
    assert len(torch.unique(inputs[:, :length])) == n  # every token shows up in a batch


def test_associative_batches_have_taskset_structure():
    spec = seq.SPECS["Associative_LSTM128_BS128_Pairs20_Tokens50"]
    n, pairs = spec.tokens, spec.length
    inputs, targets, mask = build_fixed_task(spec.name).data.batch("train", 0)
    assert inputs.shape == (128, 2 * pairs + 2)
    keys, values = inputs[:, 0:2 * pairs:2], inputs[:, 1:2 * pairs:2]
    assert all(len(torch.unique(row)) == pairs for row in keys)  # distinct keys
    assert (keys < n).all() and (values < n).all()
    assert (inputs[:, 2 * pairs] == n + 1).all()  # query marker
    query = inputs[:, -1]
    hit = keys == query[:, None]
    assert (hit.sum(1) == 1).all()  # the queried key is one of the row's keys
    assert torch.equal(targets[:, -1], values[hit])  # the answer is the value paired with it
    assert (targets[:, :-1] == n).all()  # empty token elsewhere
    assert (mask[:, -1] == 1).all() and (mask[:, :-1] == 0).all()
    assert len(torch.unique(query)) > 10 and len(torch.unique(targets[:, -1])) > 10


def test_masked_cross_entropy_averages_only_masked_positions():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 9, generator=gen)
    targets = torch.randint(0, 9, (4, 6), generator=gen)
    mask = torch.zeros(4, 6)
    mask[:, 3:] = 1.0
    expected = F.cross_entropy(logits[:, 3:].reshape(-1, 9), targets[:, 3:].reshape(-1))
    torch.testing.assert_close(seq.masked_cross_entropy(logits, targets, mask), expected)
    other = logits.clone()
    other[:, :3] += 100.0 * torch.randn(4, 3, 9, generator=gen)
    torch.testing.assert_close(seq.masked_cross_entropy(other, targets, mask), expected)


def test_gru_follows_sonnet_update_convention():
    torch.manual_seed(0)
    gru = seq.SonnetGRU(vocab=5, hidden=3)
    tokens = torch.tensor([[1, 4]])
    h = torch.zeros(1, 3)
    for t in range(2):
        x = F.one_hot(tokens[:, t], 5).float()
        z = torch.sigmoid(x @ gru.wz + h @ gru.uz + gru.bz)
        r = torch.sigmoid(x @ gru.wr + h @ gru.ur + gru.br)
        h = (1 - z) * h + z * torch.tanh(x @ gru.wh + (r * h) @ gru.uh + gru.bh)
    torch.testing.assert_close(gru(tokens)[:, -1], h)


def test_lstm_follows_sonnet_gate_order_and_forget_bias():
    torch.manual_seed(0)
    lstm = seq.SonnetLSTM(vocab=5, hidden=3)
    tokens = torch.tensor([[2, 0, 3]])
    h, c = torch.zeros(1, 3), torch.zeros(1, 3)
    for t in range(3):
        gates = torch.cat([F.one_hot(tokens[:, t], 5).float(), h], 1) @ lstm.w_gates + lstm.b_gates
        i, j, f, o = gates.split(3, dim=1)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
        h = torch.tanh(c) * torch.sigmoid(o)
    torch.testing.assert_close(lstm(tokens)[:, -1], h)


# ------------------------------------------------------------------ engine


def _adam8p_configs(n: int) -> tuple[object, list[dict]]:
    fam = get_optimizer_family("adam8p")
    return fam, [fam.sample(i) for i in range(n)]


def _small(name: str):
    """The task; sequence tasks with TaskSet's model and sizes but a batch of 2 (CPU budget)."""
    return seq.SequenceTask(seq.SPECS[name], batch_size=2) if name in seq.SPECS else build_fixed_task(name)


@pytest.mark.parametrize("name", TWO_D + SEQUENCE)
def test_trains_five_steps_in_the_population_engine(name):
    fam, configs = _adam8p_configs(1)
    result = train_population(_small(name), fam, configs, total_steps=5, eval_every=5, eval_batches=1, max_chunk=1)
    assert result.steps == [0, 5]
    for split in SPLITS:
        assert torch.isfinite(result.losses[split]).all()
    assert not torch.equal(result.losses["train"][0, 0], result.losses["train"][0, 1])
    if name in seq.SPECS:  # a fresh model predicts near chance: cross entropy ~ log(vocabulary)
        vocab = seq.SPECS[name].vocab
        assert 0.5 * math.log(vocab) < float(result.losses["test"][0, 0]) < 2.0 * math.log(vocab)


@pytest.mark.parametrize("name", ["TwoD_Beale", "Copy_LSTM128_BS128_Length5_Tokens10"])
def test_config_in_population_equals_config_alone_in_float64(name):
    fam, configs = _adam8p_configs(2)
    assert_population_equals_alone(_small(name), configs, optimizer=fam, rtol=1e-9, configs_differ=True)
