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


def test_bad_task_names_are_one_clear_error():
    from taskset_lab.errors import TasklabError

    for bad, says in ((None, "non-empty string"), (5, "non-empty string"), ("", "non-empty string"),
                      ("mlp_family_seed99999999999", "must be an integer in [0, 4294967295]"),
                      ("mlp_family_seed4294967295", "out of range for mlp_family"),
                      ("mlp_family", "is a task family, not a task")):
        with pytest.raises(TasklabError) as err:
            taskset_lab.get_task(bad)
        assert says in str(err.value) and "\n" not in str(err.value), bad


def test_tasks_cli_bad_names_exit_2_in_one_line(tmp_path):
    for name, says in (("mlp_family_seed99999999999", "must be an integer"), ("NoSuchTask", "unknown task")):
        out = run_tasklab(["pipeline=TASKS", f"name={name}"], cwd=tmp_path)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_catalogue_says_which_dataset_a_stand_in_task_needs():
    """A fixed task that runs on a stand-in here needs real data: the catalogue names it and
    never calls it `generated` (the kinds that used to be mislabelled, one task each)."""
    from taskset_lab.pipelines.tasks import task_row

    for name in ("FixedImageConv_mnist_32x64x64_fc_64_bs128", *taskset_lab.task_names("FixedImageConvAE_*")[:1],
                 *taskset_lab.task_names("FixedImageConvVAE_*")[:1], *taskset_lab.task_names("FixedLM_*")[:1],
                 *taskset_lab.task_names("FixedNVP_*")[:1], *taskset_lab.task_names("FixedMAF_*")[:1],
                 "FixedTextRNNClassification_imdb_patch32_GRU64_avg_bs128"):
        row = task_row(taskset_lab.get_task(name, offline_data="substitute"))
        assert row["dataset"] != "generated" and row["data_present"] is False, (name, row)
    for name in ("TwoD_Bowl1", "Copy_VRNN128_BS128_Length20_Tokens10"):  # these do generate their data
        row = task_row(taskset_lab.get_task(name))
        assert row["dataset"] == "generated" and row["data_present"] is True


def test_tasks_writes_nothing_in_the_current_folder(tmp_path):
    """A catalogue is read-only: no outputs/<date>/<time>, no .hydra, no log, no tokenizer (the
    stand-in's tokenizer is cached under TASKLAB_CACHE_DIR, never in the data folder)."""
    cache = tmp_path / "cache"
    work = tmp_path / "work"
    work.mkdir()
    env = {"TASKLAB_CACHE_DIR": str(cache)}
    for args in (["pipeline=TASKS", "pattern=TwoD_B*"],
                 ["pipeline=TASKS", "name=FixedTextRNNClassification_imdb_patch32_GRU64_avg_bs128",
                  "misc.offline_data=substitute"]):
        out = run_tasklab(args, cwd=work, env=env)
        assert out.returncode == 0, out.stderr
    assert list(work.iterdir()) == []


def test_a_family_and_a_search_space_are_described_with_their_sampled_ranges(tmp_path):
    out = run_tasklab(["pipeline=TASKS", "name=mlp_family", "samples=40"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("  ")}
    assert set(lines) == {"layer_sizes", "activation", "w_init", "dataset", "center_data"}
    assert "lists of 1..6 ints" in lines["layer_sizes"] and "allowed:" in lines["layer_sizes"]
    assert "True" in lines["center_data"] and "False" in lines["center_data"]
    out = run_tasklab(["pipeline=TASKS", "name=nadamw", "samples=200"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lr = next(line for line in out.stdout.splitlines() if line.split()[:1] == ["lr"])
    low, high = (float(v) for v in re.search(r"float (\S+) \.\. (\S+)", lr).groups())
    assert 1e-5 <= low < 1e-4 and 0.1 < high <= 1.0 and "log scale" in lr  # nadamw: lr ~ log-uniform [1e-5, 1]
    bad = run_tasklab(["pipeline=TASKS", "name=mlp_family", "samples=0"], cwd=tmp_path)
    assert bad.returncode == 2 and "samples" in bad.stderr
