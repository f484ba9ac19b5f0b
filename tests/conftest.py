"""Shared test helpers: compose the real shipped configs with small overrides; the test
layers (markers) by file.

Layers (``pytest -m <layer>``; registered in pyproject.toml): ``unit`` (one module's
behaviour on small data, the default), ``contract`` (every registered task family, fixed
task or optimizer family keeps the same contract), ``reference`` (TaskSet's released
configs and opt_list's optimizer entries, entry for entry), ``integration`` (pipelines and
the ``tasklab`` command end to end, faults: kills, full disks, concurrent writers),
``benchmark`` (one quick run of a benchmark script). ``slow`` marks the unit and contract
tests that ``make test-fast`` leaves out. A file's own ``pytestmark`` layer wins over the
table below.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")

REPO = Path(__file__).resolve().parents[1]

LAYERS = ("unit", "contract", "reference", "integration", "benchmark")

#: the layer of each test file that does not say (fnmatch patterns); the rest are "unit"
LAYER_OF_FILE: dict[str, tuple[str, ...]] = {
    "reference": ("test_released_*.py", "test_optim_reference.py"),
    "contract": ("test_*_contract.py",),
    "benchmark": ("test_bench_*.py", "test_*_bench.py"),
    "integration": ("test_*_pipeline.py", "test_cli.py", "test_api.py", "test_config_problems.py", "test_faults*.py",
                    "test_train_*.py", "test_transfer.py", "test_transfer_ddp.py", "test_multirun.py",
                    "test_dashboards*.py", "test_meta_train.py", "test_run_*.py", "test_taskset_curves.py"),
}

#: tests in other layers' files that run a benchmark script (node-id prefixes under tests/)
BENCHMARK_TESTS: tuple[str, ...] = ("test_engine.py::test_benchmark_", "test_curve_store.py::test_store_benchmark_")

#: unit, contract and reference tests ``make test-fast`` leaves out (node-id prefixes under
#: tests/): those that take seconds each on 2 cores (``pytest --durations``), so the rest runs
#: in under 2 minutes
SLOW: tuple[str, ...] = (
    "test_stand_ins.py::test_the_best_of_a_few_configs_learns_the_stand_in",
    "test_task_contract.py::test_task_builds_and_trains",
    "test_engine.py::test_population_matches_single_for_every_family",
    "test_engine_compiled.py::",
    "test_optimizer_contract.py::test_compiled_step_equals_the_eager_step",
    "test_optimizer_contract.py::test_torch_optim_front_end_equals_the_batched_form",
    "test_optimizer_contract.py::test_a_family_with_only_a_pure_update_and_vector_hparams_runs_in_every_front_end",
    "test_optim_reference.py::test_adam_families_match_taskset_update_for_600_steps",
    "test_optim_reference.py::test_opt_list_first_20_entries_match_reference_update_for_1000_steps",
    "test_task_map.py::test_tasks_cli_draws_the_map_and_refuses_a_missing_store",
    "test_task_map.py::test_catalogue_plot_states_the_spread_of_parameter_counts",
    "test_data.py::test_corrupt_mnist_files_are_one_line_through_the_cli",
    "test_stateful_tasks.py::test_config_in_population_of_4_equals_config_alone",
    "test_curve_store.py::test_killed_collection_resumes_to_the_same_store",
    "test_curve_store.py::test_a_claim_left_by_a_killed_writer_is_cleared_and_a_live_one_kept",
    "test_fixed_image_conv.py::test_builds_on_the_stand_in_and_trains_in_the_population_engine",
    "test_fixed_offline.py::test_trains_five_steps_in_the_population_engine",
    "test_taskset_image_families.py::test_seeds_0_to_7_build_offline_and_train",
    "test_taskset_seq_families.py::test_seeds_0_to_7_build_and_train",
    "test_taskset_mlp_ae_vae.py::test_seeds_0_to_7_build_offline_and_train_20_steps",
    "test_hparam_list.py::test_wandb_offline_logging_reads_back",
    "test_task_interface.py::test_curves_refuses_a_bad_override_before_training",
    "test_optim.py::test_samplers_in_range_and_deterministic",
)


def _layer(filename: str) -> str:
    import fnmatch

    for layer, patterns in LAYER_OF_FILE.items():
        if any(fnmatch.fnmatch(filename, pattern) for pattern in patterns):
            return layer
    return "unit"


def pytest_collection_modifyitems(config, items):
    """Give every test its layer marker (by file, unless the file marks one itself) and mark
    the slow ones."""
    for item in items:
        node = item.nodeid.split("tests/", 1)[-1]
        if node.startswith(BENCHMARK_TESTS):
            item.add_marker(pytest.mark.benchmark)
        elif not any(item.get_closest_marker(layer) for layer in LAYERS):
            item.add_marker(getattr(pytest.mark, _layer(item.path.name)))
        if node.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


def compose(index: str, overrides: list[str] | None = None, pipeline: str | None = None):
    """The config `tasklab pipeline=<pipeline> index=<index> <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from taskset_lab.cli import builtin_config_dir

    GlobalHydra.instance().clear()
    args = [f"index={index}", *(overrides or [])]
    if pipeline:
        args.append(f"pipeline={pipeline}")
    with initialize_config_dir(config_dir=str(builtin_config_dir()), version_base="1.3"):
        return hydra_compose(config_name="entrance", overrides=args)


def _tasklab(args: list[str], env: dict | None = None) -> tuple[list[str], dict]:
    """The command line and environment of the real `tasklab` entry point in a subprocess."""
    return [sys.executable, "-m", "taskset_lab", *args], {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}


def run_tasklab(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None):
    """Run the real `tasklab` entry point in a subprocess."""
    command, full_env = _tasklab(args, env)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def one_error_line(proc) -> str:
    """The one line a finished `tasklab` process wrote to stderr for a user's mistake: exit
    status 2, no traceback, exactly one non-empty line (the assertions say what it wrote)."""
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def interrupt_tasklab(args: list[str], cwd: Path, ready, wait: float = 180):
    """Start `tasklab <args>`, send SIGINT (Ctrl-C) once ``ready()`` is true; returns the
    finished process's ``(returncode, stdout, stderr)``."""
    import signal
    import time

    def as_in_a_terminal() -> None:
        # a test runner started in the background (``cmd &`` in a script) ignores SIGINT, and an
        # ignored signal stays ignored across exec: the child would never see the Ctrl-C
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    command, env = _tasklab(args)
    proc = subprocess.Popen(command, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=as_in_a_terminal)
    deadline = time.time() + wait
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def kill_tasklab(args: list[str], cwd: Path, ready, delay: float = 0.0, wait: float = 180):
    """Start `tasklab <args>`, kill it with SIGKILL (kill -9) ``delay`` seconds after ``ready()``
    is true; returns ``(returncode, stdout, stderr)`` (returncode -9 when it was killed)."""
    import time

    command, env = _tasklab(args)
    proc = subprocess.Popen(command, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + wait
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is None:
        proc.kill()
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout, stderr


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a test module of many small tasks: on a 2-core machine a second
    thread mostly adds synchronisation (an LSTM backward went from 85 ms to 2.6 ms here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests: on a shared 2-core machine two threads mostly
    wait on each other (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_population(pop, step, state, n: int, snapshots: list | None = None):
    """``n`` steps of ``step`` from ``state`` (evaluated first), evaluating after each:
    ``(losses [K, n, 4], final state)``; copies of the parameters after each step go to
    ``snapshots`` when given."""
    import torch

    state = pop.evaluate(state)[1]
    losses = []
    for _ in range(n):
        state = step(state)
        values, state = pop.evaluate(state)
        losses.append(values)
        if snapshots is not None:
            snapshots.append({k: v.clone() for k, v in state.params.items()})
    return torch.stack(losses, 1), state


def assert_population_equals_alone(task, configs=None, *, optimizer="adam8p", steps: int = 4, eval_every: int = 2,
                                   eval_batches: int = 1, config_ids=None, check=None, rtol: float = 1e-10,
                                   atol: float = 1e-12, equal_nan: bool = False, configs_differ: bool = False):
    """Config k trained inside a float64 population equals config k trained alone with the same
    config id (every split's curve, to ``rtol``/``atol``): the engines' shared semantics
    (docs/design.md §One training semantics). ``configs`` default to two Adam configs that
    differ only in the learning rate; ``check`` lists the population positions trained alone
    (all by default); ``configs_differ`` also asserts that the first two configs' train curves
    differ. Returns the population's result."""
    import torch

    from taskset_lab.engine import train_population, train_single
    from taskset_lab.optim import get_optimizer_family
    from taskset_lab.tasks import SPLITS

    family = get_optimizer_family(optimizer) if isinstance(optimizer, str) else optimizer
    if configs is None:
        configs = [family.sample(3), dict(family.sample(3), lr=3e-3)]  # neither diverges in a few steps
    ids = list(range(len(configs))) if config_ids is None else list(config_ids)
    pop = train_population(task, family, configs, total_steps=steps, eval_every=eval_every,
                           eval_batches=eval_batches, dtype=torch.float64, config_ids=ids)
    if configs_differ:
        assert not torch.equal(pop.losses["train"][0], pop.losses["train"][1])
    for k in (range(len(configs)) if check is None else check):
        alone = train_single(task, (family, configs[k]), steps, eval_every, eval_batches=eval_batches,
                             dtype=torch.float64, config_id=ids[k])
        assert pop.steps == alone.steps
        for split in SPLITS:
            torch.testing.assert_close(pop.losses[split][k], alone.losses[split][0], rtol=rtol, atol=atol,
                                       equal_nan=equal_nan)
    return pop


def config_differences(got, want, where: str = "") -> list[str]:
    """Places where ``got`` differs from the released ``want``: same keys in the same order,
    same nesting and JSON types, equal values, floats equal to 1e-12 relative."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            return [f"{where}: keys {list(got) if isinstance(got, dict) else got!r} != {list(want)}"]
        return [d for key in want for d in config_differences(got[key], want[key], f"{where}/{key}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{where}: {got!r} != {want!r}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in config_differences(g, w, f"{where}/{i}")]
    if type(got) is not type(want):
        return [f"{where}: {type(got).__name__} {got!r} != {type(want).__name__} {want!r}"]
    if isinstance(want, float):
        ok = math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0 if want else 1e-300)
        return [] if ok else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def random_state(fam, p, g):
    """An optimizer state of ``fam``'s shapes for ``p`` (``init_state``'s), filled with
    uniform numbers (float64)."""
    import torch

    return {k: torch.rand(v.shape, generator=g, dtype=torch.float64) for k, v in fam.init_state(p).items()}
