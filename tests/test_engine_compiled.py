"""The compiled population step (taskset_lab/engine/compiled.py): same curves as the eager
step, config-in-population equal to config-alone, the eager fallback, the K probe and the
allocator settings. Compiled tests use dynamo's ``aot_eager`` backend (the same graph capture
and autograd tracing as Inductor without a C++ build, which takes 30-100 s per shape on the
shared CPU); one case runs Inductor itself."""

from __future__ import annotations

import math

import pytest
import torch

from taskset_lab.engine import train_population
from taskset_lab.engine.compiled import CompiledStep, compile_available
from taskset_lab.engine.driver import (apply_allocator_settings, compile_mode, probe_population_size,
                                       should_compile)
from taskset_lab.engine.population import Population
from taskset_lab.engine.single import train_single
from taskset_lab.errors import ConfigError
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks import sample_task

from conftest import run_population
from small_tasks import small_task

F64 = torch.float64
# lab_mlp, a noisy quadratic and a character RNN, small (tests/small_tasks.py)


def _configs(fam_name: str) -> list[dict]:
    fam = get_optimizer_family(fam_name)
    return [fam.sample(1), fam.sample(2), dict(fam.sample(3), lr=1e4)]


def _run(pop: Population, step, n: int):
    return run_population(pop, step, pop.init(), n)


@pytest.mark.parametrize("task_family,opt", [("mlp", "adam4p"), ("quadratic", "nadamw"), ("char_rnn", "adam8p")])
def test_compiled_step_equals_eager(task_family, opt):
    task = small_task(task_family)
    pop = Population(task, opt, _configs(opt), 6, dtype=F64, eval_batches=1)
    compiled = CompiledStep(pop, backend="aot_eager")
    eager_losses, eager_state = _run(pop, pop.step, 6)
    comp_losses, comp_state = _run(pop, compiled.step, 6)
    assert compiled.compiled, "the compiled path fell back to eager"
    torch.testing.assert_close(comp_losses, eager_losses, rtol=1e-10, atol=1e-12, equal_nan=True)
    for name in eager_state.params:
        torch.testing.assert_close(comp_state.params[name], eager_state.params[name], rtol=1e-10, atol=1e-12)
    assert torch.equal(comp_state.diverged_step, eager_state.diverged_step)
    assert bool(eager_state.diverged[2]) or task_family != "mlp"  # lr=1e4 exercises the freeze


def test_compiled_population_matches_config_alone(monkeypatch):
    monkeypatch.setenv("TASKLAB_COMPILE_BACKEND", "aot_eager")
    task = small_task("mlp")
    fam = get_optimizer_family("adam4p")
    configs = _configs("adam4p")
    pop = train_population(task, fam, configs, total_steps=8, eval_every=4, eval_batches=2, dtype=F64,
                           compile=True)
    assert pop.extra["compiled"] is True
    for k, hp in enumerate(configs):
        alone = train_single(task, (fam, hp), 8, 4, eval_batches=2, dtype=F64)
        for split, values in pop.losses.items():
            torch.testing.assert_close(values[k], alone.losses[split].reshape(-1), rtol=1e-9, atol=1e-12, equal_nan=True)
    assert bool(pop.diverged[2])


@pytest.mark.skipif(not compile_available(torch.device("cpu"), "inductor"), reason="Inductor is not used on this CPU here (no C++ compiler, or ATEN_CPU_CAPABILITY forces a kernel set)")
def test_inductor_step_equals_eager():
    task = small_task("mlp")
    pop = Population(task, "adam1p", _configs("adam1p")[:2], 3, dtype=F64, eval_batches=1)
    compiled = CompiledStep(pop, backend="inductor")
    eager_losses, _ = _run(pop, pop.step, 3)
    comp_losses, _ = _run(pop, compiled.step, 3)
    assert compiled.compiled
    torch.testing.assert_close(comp_losses, eager_losses, rtol=1e-9, atol=1e-12)


def test_compile_failure_falls_back_to_eager():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler today")

    task = small_task("quadratic")
    pop = Population(task, "adam4p", _configs("adam4p"), 4, dtype=F64, eval_batches=1)
    stepper = CompiledStep(pop, backend=broken_backend)
    fallback_losses, _ = _run(pop, stepper.step, 4)
    eager_losses, _ = _run(pop, pop.step, 4)
    assert stepper.compiled is False
    torch.testing.assert_close(fallback_losses, eager_losses, equal_nan=True)


def test_compiled_step_updates_in_place_and_first_call_leaves_the_given_state():
    task = small_task("mlp")
    pop = Population(task, "adam4p", _configs("adam4p"), 4, dtype=F64, eval_batches=1)
    stepper = CompiledStep(pop, backend="aot_eager")
    start = pop.evaluate(pop.init())[1]
    kept = start.copy()
    first = stepper.step(start)
    # the compiling call worked on a copy: the given (flat) state is as it was
    for name in kept.params:
        assert torch.equal(start.params[name], kept.params[name])
    second = stepper.step(first)
    # later calls update the state's own tensors: same objects, new values
    name = next(iter(first.params))
    assert second.params[name] is first.params[name]
    assert second.opt_state[name]["m"] is first.opt_state[name]["m"]
    eager = pop.step(pop.step(kept.copy()))
    for n in eager.params:
        torch.testing.assert_close(second.params[n], eager.params[n], rtol=1e-10, atol=1e-12)
        for key, value in eager.opt_state[n].items():
            torch.testing.assert_close(second.opt_state[n][key], value, rtol=1e-10, atol=1e-12)


def test_fallback_after_a_failed_first_call_starts_from_the_intact_state():
    calls = []

    def fails_when_run(gm, example_inputs):
        def run(*args):
            calls.append(1)
            for a in args:  # scribble over the parameters first, as a half-done step would
                if isinstance(a, torch.Tensor) and tuple(a.shape) in param_shapes:
                    a.add_(1.0)
            raise RuntimeError("kernel crashed")
        return run

    task = small_task("mlp")
    pop = Population(task, "adam4p", _configs("adam4p"), 3, dtype=F64, eval_batches=1)
    stepper = CompiledStep(pop, backend=fails_when_run)
    start = pop.evaluate(pop.init(flat=False))[1]  # tensors of its own: nothing copies them
    param_shapes = {tuple(p.shape) for p in start.params.values()}
    after_fallback = stepper.step(start)
    eager = pop.step(pop.evaluate(pop.init(flat=False))[1])
    assert calls and stepper.compiled is False
    for name in eager.params:
        torch.testing.assert_close(after_fallback.params[name], eager.params[name], rtol=0, atol=0)


def test_compile_mode_and_auto_threshold():
    assert compile_mode(True) == "true" and compile_mode("Auto") == "auto" and compile_mode(False) == "false"
    with pytest.raises(ConfigError):
        compile_mode("sometimes")
    cpu = torch.device("cpu")
    assert should_compile("false", cpu, 1e9) is False
    if compile_available(cpu, "inductor"):
        assert should_compile("auto", cpu, 1.0) is False  # short runs stay eager
        assert should_compile("auto", cpu, 1e6) is True
        assert should_compile("true", cpu, 0.0) is True


def test_probe_picks_fastest_k_within_cap():
    task = small_task("mlp")
    configs = [get_optimizer_family("adam4p").sample(i) for i in range(40)]
    made: list[int] = []

    def make(n: int) -> Population:
        made.append(n)
        return Population(task, "adam4p", configs[:n], 10, eval_batches=1)

    k, step_s = probe_population_size(make, len(configs), memory_cap=20, ks=(8, 16, 64), steps=1)
    assert set(made) <= {8, 16, 20} and max(made) <= 20
    assert k in made and step_s > 0
    assert probe_population_size(make, 3, 100, ks=(8,), need_time=False) == (3, 0.0)


def test_train_population_auto_k_logs_choice(caplog):
    task = small_task("quadratic")
    configs = [get_optimizer_family("adam1p").sample(i) for i in range(12)]
    with caplog.at_level("INFO", logger="taskset_lab.engine.driver"):
        res = train_population(task, "adam1p", configs, total_steps=200, eval_every=100, eval_batches=1,
                               compile=False)
        short = train_population(task, "adam1p", configs, total_steps=3, eval_every=3, eval_batches=1,
                                 compile=False)
    assert res.extra["chunk"] in (8, 12) and res.extra["compiled"] is False
    assert short.extra["chunk"] == 12  # too short to probe: the memory bound's K
    assert any("timing probe" in r.getMessage() for r in caplog.records)
    assert any("population size K=" in r.getMessage() for r in caplog.records)
    assert torch.isfinite(res.losses["train"][:, 0]).all() and not math.isnan(res.seconds)


def test_allocator_settings_apply_once_on_glibc(monkeypatch):
    import platform

    monkeypatch.setenv("TASKLAB_MALLOPT", "0")
    assert apply_allocator_settings() is False
    monkeypatch.setenv("TASKLAB_MALLOPT", "1")
    applied = apply_allocator_settings()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied is True
    assert apply_allocator_settings() is applied


def test_train_population_changes_no_process_setting(monkeypatch):
    """The allocator is the caller's opt-in (the CLI takes it): a library call leaves it alone."""
    import taskset_lab.engine.driver as driver

    monkeypatch.setattr(driver, "_ALLOCATOR_APPLIED", None)
    calls = []
    monkeypatch.setattr(driver.ctypes, "CDLL", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(OSError()))
    task = sample_task("quadratic_family", 0)
    res = train_population(task, get_optimizer_family("nadamw"), _configs("nadamw")[:2], total_steps=3, eval_every=3)
    assert res.num_configs == 2 and driver._ALLOCATOR_APPLIED is None and calls == []


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_inductor_is_not_tried_when_a_kernel_set_is_forced(monkeypatch, capability):
    """Under ATEN_CPU_CAPABILITY=default Inductor still emits at::vec code that does not build,
    and under avx2 its step drifted from the eager one: the engine then trains eagerly from the
    start instead of compiling (a backend that builds nothing is still tried)."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", capability)
    monkeypatch.delenv("TASKLAB_COMPILE_BACKEND", raising=False)
    assert compile_available(torch.device("cpu"), "inductor") is False
    assert should_compile("true", torch.device("cpu"), 1e9) is False
    assert compile_available(torch.device("cpu"), "aot_eager") is True


def _truncations(compile: bool, replica: int = 0):
    """Two PES truncations of small_fc_lopt on a small lab_mlp (float64)."""
    from taskset_lab.meta.unroll import InnerRun
    from taskset_lab.optim.learned import SMALL_FC_LOPT

    task = small_task("mlp")
    theta = SMALL_FC_LOPT.designed_theta()
    eps = torch.randn(3, SMALL_FC_LOPT.num_weights, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.1
    run = InnerRun(SMALL_FC_LOPT, task, unroll_length=8, num_pairs=3, lr=0.05, dtype=F64, replica=replica,
                   compile=compile)
    return run, [run.truncation(theta, eps, 4) for _ in range(2)]


@pytest.mark.parametrize("replica", [0, 1])
def test_compiled_inner_run_equals_eager(monkeypatch, replica):
    """InnerRun(compile=True) (the batched gradient and the learned update through
    torch.compile) gives the eager run's meta-losses and parameters; the compiled gradient is
    cached per task, so a second replica reuses the first one's."""
    monkeypatch.setenv("TASKLAB_COMPILE_BACKEND", "aot_eager")
    from taskset_lab.engine import compiled as compiled_module

    eager_run, eager = _truncations(False, replica)
    comp_run, comp = _truncations(True, replica)
    assert comp_run._grad.compiled and comp_run._update.compiled, "fell back to eager"
    for a, b in zip(eager, comp):
        torch.testing.assert_close(b.loss_pos, a.loss_pos, rtol=1e-10, atol=1e-12, equal_nan=True)
        torch.testing.assert_close(b.loss_neg, a.loss_neg, rtol=1e-10, atol=1e-12, equal_nan=True)
        assert torch.equal(b.valid, a.valid)
    for name, p in eager_run.state.params.items():
        torch.testing.assert_close(comp_run.state.params[name], p, rtol=1e-10, atol=1e-12)
    grads = [v for k, v in compiled_module._GRADS.items() if v[0] is comp_run.task]
    assert len(grads) == 1, "one compiled gradient per task, whatever the replica"


def test_compiled_inner_run_falls_back_to_eager(monkeypatch, caplog):
    """A compiler that fails: one warning each for the gradient and the update, then the eager
    functions, with the eager results."""
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setenv("TASKLAB_COMPILE_BACKEND", "aot_eager")
    from taskset_lab.engine import compiled as compiled_module

    monkeypatch.setattr(compiled_module, "default_backend", lambda: broken)
    monkeypatch.setattr(compiled_module, "_UPDATES", {})
    monkeypatch.setattr(compiled_module, "_GRADS", {})
    _, eager = _truncations(False)
    with caplog.at_level("WARNING"):
        run, comp = _truncations(True)
    assert not run._update.compiled and not run._grad.compiled
    messages = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(messages) == 2 and all("using the eager" in m for m in messages), messages
    for a, b in zip(eager, comp):
        torch.testing.assert_close(b.loss_pos, a.loss_pos, rtol=0, atol=0, equal_nan=True)
