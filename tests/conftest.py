"""Shared test helpers: compose the real shipped configs with small overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")

REPO = Path(__file__).resolve().parents[1]


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
