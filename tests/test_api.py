"""The Python API for optimizer research: tasks by name in a plain PyTorch loop (the README's
example is run as written), the TASKS catalogue."""

from __future__ import annotations

import re

import pytest
import torch

import taskset_lab
from conftest import REPO, run_tasklab
from taskset_lab.registry import UnknownNameError


def _readme_loop() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## TaskSet's tasks in your own training loop"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_training_loop_runs_and_learns(capsys):
    code = _readme_loop()
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 — the README's own example
    task, model = scope["task"], scope["model"]
    first = task.eval_loss(task.init_module(0), task.data.batch("test", 0), "test")
    last = task.eval_loss(model, task.data.batch("test", 0), "test")
    assert last < first  # 100 SGD steps made progress on the copy task
    assert "test loss" in capsys.readouterr().out


def test_task_names_and_unknown_name():
    names = taskset_lab.task_names("TwoD_*")
    assert "TwoD_Rosenbrock" in names and all(n.startswith("TwoD_") for n in names)
    assert taskset_lab.task_names("lab_mlp_seed*", seeds=range(3)) == ["lab_mlp_seed0", "lab_mlp_seed1", "lab_mlp_seed2"]
    with pytest.raises(UnknownNameError, match="unknown task 'NoSuchTask'"):
        taskset_lab.get_task("NoSuchTask")
    task = taskset_lab.get_task("lab_mlp_seed3")
    assert task.name == "lab_mlp_seed3" and task.family == "lab_mlp"


def test_tasks_catalogue_and_description(tmp_path):
    out = run_tasklab(["pipeline=TASKS", "pattern=TwoD_*"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("TwoD_")]
    assert len(rows) == 8 and all(r[1] == "TwoD" and r[2] == "2" for r in rows)
    out = run_tasklab(["pipeline=TASKS", "name=Copy_VRNN128_BS128_Length20_Tokens10"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "parameters:  19,724" in out.stdout and "FLOPs/step" in out.stdout and "time/step" in out.stdout
    bad = run_tasklab(["pipeline=TASKS", "name=NoSuchTask"], cwd=tmp_path)
    assert bad.returncode == 2 and "unknown task 'NoSuchTask'" in bad.stderr
    assert "Traceback" not in bad.stderr
