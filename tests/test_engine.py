"""The population engine against the one-config engine, divergence, chunking, no host sync."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from taskset_lab.engine import eval_steps, train_population, train_single
from taskset_lab.engine.driver import auto_chunk, estimate_config_bytes
from taskset_lab.engine.state import divergence_bound
from taskset_lab.optim.base import OptimizerFamily
from taskset_lab.tasks.base import SPLITS, Task, TensorData

F64 = torch.float64


# ----------------------------------------------------------------- a tiny task and family


class TinyRegression(Task):
    """3 -> 4 -> 1 tanh network, squared error on random data."""

    def make_module(self) -> nn.Module:
        return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))

    def loss(self, output, batch):
        return ((output.squeeze(-1) - batch[1]) ** 2).mean()


def tiny_task(seed: int = 0) -> TinyRegression:
    gen = torch.Generator().manual_seed(seed)
    splits = {s: (torch.randn(40, 3, generator=gen), torch.randn(40, generator=gen)) for s in SPLITS}
    return TinyRegression({"family": "tiny_regression", "seed": seed}, TensorData(splits, 8, seed=seed))


class HeavyBall(OptimizerFamily):
    """SGD with momentum, written like ``torch.optim.SGD(momentum=...)``."""

    name = "heavy_ball_test"
    hparam_names = ("lr", "momentum")
    state_names = ("buf",)

    def sample(self, seed: int):
        rng = np.random.default_rng(seed)
        return {"lr": float(10 ** rng.uniform(-3, -1)), "momentum": float(rng.uniform(0.0, 0.9))}

    def update(self, p, g, state, step, hp, total_steps):
        buf = hp["momentum"] * state["buf"] + g
        return p - hp["lr"] * buf, {"buf": buf}


HEAVY_BALL = HeavyBall()


def assert_same_curve(pop, k, single, rtol=1e-9, atol=1e-12):
    assert pop.steps == single.steps
    assert int(pop.diverged_step[k]) == int(single.diverged_step[0])
    for s in SPLITS:
        torch.testing.assert_close(pop.losses[s][k], single.losses[s][0], rtol=rtol, atol=atol,
                                   equal_nan=True, msg=lambda m: f"split {s}, config {k}: {m}")


# ----------------------------------------------------------------- schedule and bound


def test_eval_steps_include_start_and_end():
    assert eval_steps(25, 10) == [0, 10, 20, 25]
    assert eval_steps(20, 10) == [0, 10, 20]
    assert eval_steps(3, 10) == [0, 3]
    with pytest.raises(ValueError):
        eval_steps(0, 1)


def test_divergence_bound_definition():
    l0 = torch.tensor([2.0, -3.0, 0.0, math.inf], dtype=F64)
    bound = divergence_bound(l0, 10.0)
    assert bound[0] == 2.0 + 10.0 * 2.0
    assert bound[1] == -3.0 + 10.0 * 3.0
    assert 0.0 < bound[2] < 1e-9  # a zero initial loss still gets a (tiny) bound
    assert torch.isnan(bound[3])  # a non-finite start diverges at once


# ----------------------------------------------------------------- equivalence, tiny task


def test_population_matches_single_tiny_task_and_torch_sgd():
    task = tiny_task()
    configs = [HEAVY_BALL.sample(i) for i in range(4)]
    pop = train_population(task, HEAVY_BALL, configs, total_steps=23, eval_every=5, eval_batches=3,
                           dtype=F64)
    assert pop.steps == [0, 5, 10, 15, 20, 23]
    for k, hp in enumerate(configs):
        alone = train_single(task, (HEAVY_BALL, hp), 23, 5, eval_batches=3, dtype=F64)
        assert_same_curve(pop, k, alone)
        # the same update through plain torch.optim gives the same curve too
        sgd = train_single(task, lambda p, hp=hp: torch.optim.SGD(p, lr=hp["lr"], momentum=hp["momentum"]),
                           23, 5, eval_batches=3, dtype=F64)
        assert_same_curve(pop, k, sgd)
    # every config starts from the same initialisation; training makes them differ
    start = pop.losses["train"][:, 0]
    assert torch.all(start == start[0])
    assert len(set(pop.losses["train"][:, -1].tolist())) == len(configs)
    assert torch.all(pop.diverged_step == -1)


def test_divergence_frozen_and_masked_without_disturbing_others():
    task = tiny_task(1)
    good = [HEAVY_BALL.sample(i) for i in range(3)]
    bad = {"lr": 50.0, "momentum": 0.9}
    configs = [good[0], bad, good[1], good[2]]
    pop = train_population(task, HEAVY_BALL, configs, 30, 5, eval_batches=2, dtype=F64,
                           divergence_factor=10.0)
    ref = train_population(task, HEAVY_BALL, good, 30, 5, eval_batches=2, dtype=F64, divergence_factor=10.0)
    d = int(pop.diverged_step[1])
    assert d > 0 and pop.diverged.tolist() == [False, True, False, False]
    steps = torch.tensor(pop.steps)
    for s in SPLITS:
        row = pop.losses[s][1]
        assert torch.all(torch.isnan(row[steps >= d])) and torch.all(torch.isfinite(row[steps < d]))
        torch.testing.assert_close(pop.losses[s][[0, 2, 3]], ref.losses[s], rtol=1e-9, atol=1e-12)
    assert_same_curve(pop, 1, train_single(task, (HEAVY_BALL, bad), 30, 5, 2, dtype=F64,
                                           divergence_factor=10.0))


def test_non_finite_loss_diverges_and_stays_out_of_other_configs():
    task = tiny_task(2)
    configs = [HEAVY_BALL.sample(0), {"lr": 1e30, "momentum": 0.0}, HEAVY_BALL.sample(1)]
    pop = train_population(task, HEAVY_BALL, configs, 12, 4, eval_batches=2, dtype=F64,
                           divergence_factor=math.inf)  # only NaN/inf count
    assert int(pop.diverged_step[1]) >= 0
    assert torch.all(torch.isfinite(pop.losses["test"][[0, 2]]))
    assert torch.all(pop.diverged_step[[0, 2]] == -1)


# ----------------------------------------------------------------- chunking, replicas, RNG


def test_chunks_give_the_same_result():
    task = tiny_task(3)
    configs = [HEAVY_BALL.sample(i) for i in range(5)]
    whole = train_population(task, HEAVY_BALL, configs, 10, 5, eval_batches=2, dtype=F64)
    chunked = train_population(task, HEAVY_BALL, configs, 10, 5, eval_batches=2, dtype=F64, max_chunk=2)
    tiny_budget = train_population(task, HEAVY_BALL, configs, 10, 5, eval_batches=2, dtype=F64,
                                   memory_budget=1)
    assert whole.extra["chunk"] == 5 and chunked.extra["chunk"] == 2 and tiny_budget.extra["chunk"] == 1
    for s in SPLITS:
        torch.testing.assert_close(chunked.losses[s], whole.losses[s], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(tiny_budget.losses[s], whole.losses[s], rtol=1e-9, atol=1e-12)


def test_auto_chunk_from_memory_estimate():
    task = tiny_task()
    module = task.make_module()
    per = estimate_config_bytes(task, module, num_state=2, dtype=torch.float32)
    n_params = sum(p.numel() for p in module.parameters())
    assert per >= n_params * 4 * 8  # params, grads, new params, kept copies and 2x2 state
    assert auto_chunk(1000, per, 10 * per) == 10
    assert auto_chunk(3, per, 10 * per) == 3
    assert auto_chunk(3, per, 0) == 1


def test_replicas_differ_and_global_rng_untouched():
    task = tiny_task()
    rng_before = torch.random.get_rng_state()
    r0 = train_population(task, HEAVY_BALL, [HEAVY_BALL.sample(0)], 5, 5, eval_batches=2, replica=0)
    r1 = train_population(task, HEAVY_BALL, [HEAVY_BALL.sample(0)], 5, 5, eval_batches=2, replica=1)
    again = train_population(task, HEAVY_BALL, [HEAVY_BALL.sample(0)], 5, 5, eval_batches=2, replica=0)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert r0.losses["train"][0, 0] != r1.losses["train"][0, 0]
    assert torch.equal(r0.losses["train"], again.losses["train"])


def test_step_loop_never_syncs_with_host(monkeypatch):
    """Reading a tensor's value on the host (item, bool, float, tolist) fails inside the run;
    only the final copy of the results to the CPU is allowed."""
    task = tiny_task()
    configs = [HEAVY_BALL.sample(i) for i in range(3)] + [{"lr": 50.0, "momentum": 0.9}]

    def forbidden(*_a, **_k):
        raise AssertionError("host sync inside the population run")

    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    result = train_population(task, HEAVY_BALL, configs, 12, 3, eval_batches=2, max_chunk=4)
    monkeypatch.undo()
    assert result.losses["train"].shape == (4, 5)
    assert bool(result.diverged[3]) and not bool(result.diverged[:3].any())


# ----------------------------------------------------------------- every real task x optimizer family

# lab_mlp (the one toy family kept) and small TaskSet tasks of the other architectures: a
# convnet, a character RNN, a noisy quadratic, a 2-D toy problem (tests/small_tasks.py)
SMALL_TASKS = ["mlp", "conv", "char_rnn", "quadratic", "TwoD_Rosenbrock"]


@pytest.mark.parametrize("task_name", SMALL_TASKS)
def test_population_matches_single_for_every_family(task_name):
    from small_tasks import small_task
    from taskset_lab.optim import optimizer_family_names, get_optimizer_family

    task = small_task(task_name)
    seen_divergence = 0
    for opt_name in optimizer_family_names():
        fam = get_optimizer_family(opt_name)
        configs = [fam.sample(1), fam.sample(2), dict(fam.sample(3), lr=1e4)]
        pop = train_population(task, fam, configs, total_steps=12, eval_every=4, eval_batches=2, dtype=F64)
        for k, hp in enumerate(configs):  # the same config id: the quadratic's noise is drawn per id
            alone = train_single(task, (fam, hp), 12, 4, eval_batches=2, dtype=F64, config_id=k)
            assert_same_curve(pop, k, alone)
        seen_divergence += int(pop.diverged[2])
        assert torch.isfinite(pop.losses["train"][:, 0]).all()
    assert seen_divergence >= 1, f"lr=1e4 never diverged on {task.config}"


# ----------------------------------------------------------------- benchmark smoke run


def test_benchmark_quick_json(capsys):
    from benchmark_module import load_benchmark

    bench = load_benchmark("bench_population")
    bench.main(["--device", "cpu", "--json", "--quick", "--cases", "small_mlp"])
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu"
    case = report["cases"]["small_mlp"]
    for key in ("population_cfg_steps_per_s", "sequential_cfg_steps_per_s", "lightning_cfg_steps_per_s",
                "speedup_vs_sequential"):
        assert case[key] > 0, key


def test_benchmark_step_split_counts_the_gemms_and_the_update_bytes(monkeypatch):
    """The compiled step's split: GEMM time from the profiler, the update's floor from the
    bytes Adam must move (θ, g, m, v read; θ, m, v written) at the measured bandwidth."""
    from benchmark_module import load_benchmark

    monkeypatch.setenv("TASKLAB_COMPILE_BACKEND", "aot_eager")  # same tracing, no C++ build
    bench = load_benchmark("bench_population")
    task = bench.small_mlp(True)
    runner = bench.CompiledRunner(task, 4, "cpu")
    assert runner.stepper.compiled
    split = bench.step_split(runner, steps=2, quick=True)
    per_config = sum(p.numel() for p in task.init_module(0).parameters())
    moved = 4 * per_config * 4 * 7
    assert split["update_floor_ms"] == pytest.approx(moved / split["inplace_bandwidth_bytes_per_s"] * 1e3)
    assert 0 < split["matmul_ms"] < split["step_ms"]  # the MLP's bmm GEMMs, within the step
    assert split["floor_ms"] == pytest.approx(split["matmul_ms"] + split["update_floor_ms"])
    assert split["other_ms"] == pytest.approx(split["step_ms"] - split["matmul_ms"])
    assert [bench._is_matmul_op(n) for n in ("aten::bmm", "aten::mkldnn_convolution", "aten::add_")] == \
        [True, True, False]
