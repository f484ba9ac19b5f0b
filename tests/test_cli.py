"""The `tasklab` command: pipeline/index lookup, clear one-line errors, Hydra's own flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import one_error_line, run_tasklab


def test_unknown_pipeline_lists_valid_ones(tmp_path):
    line = one_error_line(run_tasklab(["pipeline=NOPE", "index=x"], tmp_path))
    assert "unknown pipeline 'NOPE'" in line
    for name in ("TRAIN", "CURVES", "HPARAM_LIST"):
        assert name in line


def test_missing_and_unknown_index_list_available(tmp_path):
    line = one_error_line(run_tasklab(["pipeline=TRAIN"], tmp_path))
    assert "missing index" in line and "train_mlp_digits" in line
    line = one_error_line(run_tasklab(["pipeline=TRAIN", "index=nope"], tmp_path))
    assert "unknown index 'nope'" in line and "quickstart" in line


def test_index_for_another_pipeline(tmp_path):
    line = one_error_line(run_tasklab(["pipeline=CURVES", "index=train_mlp_digits"], tmp_path))
    assert "written for pipeline TRAIN" in line


def test_invalid_and_missing_fields_are_named(tmp_path):
    line = one_error_line(run_tasklab(["pipeline=TRAIN", "index=train_quadratic", "eval_every=0"], tmp_path))
    assert "'eval_every'" in line and "positive integer" in line
    line = one_error_line(run_tasklab(["pipeline=TRAIN", "index=train_quadratic", "~total_steps"], tmp_path))
    assert "total_steps" in line
    line = one_error_line(run_tasklab(["pipeline=TRAIN", "index=train_quadratic", "optimizer.lr=-1"], tmp_path))
    assert "'optimizer'" in line and "lr" in line


def test_cfg_job_prints_composed_config(tmp_path):
    proc = run_tasklab(["--cfg", "job", "pipeline=TRAIN", "index=train_mlp_digits"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pipeline: TRAIN" in proc.stdout
    assert "taskset_lab.optim.NAdamW" in proc.stdout
    assert not (tmp_path / "outputs").exists()  # printing the config runs nothing


def test_user_config_dir_adds_an_index(tmp_path):
    user = tmp_path / "my_configs"
    (user / "index").mkdir(parents=True)
    (user / "index" / "mine.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - train_quadratic\n  - _self_\n"
        "expr_name: mine\n"
    )
    out = tmp_path / "run"
    proc = run_tasklab(["--config-dir", str(user), "pipeline=TRAIN", "index=mine", "debug=train",
                        f"output_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "curve.csv").read_text().count("\n") == 1 + 5  # header + steps 0,5,10,15,20
    assert "expr_name: mine" in (out / "config.yaml").read_text()


def test_pyproject_ships_every_config_group():
    """A config group folder missing from pyproject's packages would not be installed."""
    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    repo = Path(__file__).resolve().parents[1]
    packages = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    groups = {p.name for p in (repo / "example_configs").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert groups and {f"taskset_lab.example_configs.{g}" for g in groups} <= packages


def test_pyproject_ships_every_python_package():
    """A Python package missing from pyproject's packages would be left out of a wheel install
    (an editable install would hide it)."""
    import pytest

    tomllib = pytest.importorskip("tomllib")
    repo = Path(__file__).resolve().parents[1]
    packages = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "taskset_lab").rglob("__init__.py")}
    assert found and found <= packages, sorted(found - packages)


def test_wandb_without_login_or_offline_mode_is_one_line(tmp_path):
    """No WANDB_MODE=offline and no credentials: one line saying how to log in or go offline,
    before any training (wandb would otherwise prompt or print a long traceback)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"HOME": str(tmp_path), "NETRC": str(tmp_path / "no-netrc")})
    command = [sys.executable, "-m", "taskset_lab", "pipeline=TRAIN", "index=train_quadratic", "debug=train",
               "logger=wandb", f"output_dir={tmp_path / 'run'}"]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "wandb login" in out.stderr and "WANDB_MODE=offline" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "curve.csv").exists()  # nothing trained


def test_slurm_launcher_without_slurm_is_one_line(tmp_path):
    import os

    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no sbatch here
    command = [sys.executable, "-m", "taskset_lab", "pipeline=CURVES", "index=curves_quickstart",
               "hydra/launcher=submitit_slurm", "--multirun"]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2 and "needs SLURM" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("override,says", [("+seed=42", "use global_seed="), ("+experiment=foo", "use index="),
                                           ("+nonsense=1", "no tasklab pipeline reads it"),
                                           ("trainer.max_epochs=1", "use total_steps=")])
def test_an_override_that_would_do_nothing_is_refused(tmp_path, override, says):
    out = run_tasklab(["pipeline=TRAIN", "index=train_quadratic", "debug=train", override,
                       f"output_dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "run" / "curve.csv").exists()


def test_a_clarena_users_index_gets_tasklabs_names(tmp_path):
    (tmp_path / "cfg" / "index").mkdir(parents=True)
    (tmp_path / "cfg" / "index" / "clarena_mtl.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /lightning_loggers: csv\n  - _self_\npipeline: MTL\n")
    out = run_tasklab(["--config-dir", str(tmp_path / "cfg"), "index=clarena_mtl"], cwd=tmp_path)
    assert out.returncode == 2 and "tasklab's logger group is `logger`" in out.stderr, out.stderr[-2000:]
    out = run_tasklab(["pipeline=MTL_EXPR", "index=mtl_quickstart"], cwd=tmp_path)
    assert out.returncode == 2 and "tasklab's pipeline=MTL" in out.stderr
