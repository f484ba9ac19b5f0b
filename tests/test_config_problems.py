"""Every problem of a config in one run: missing fields together, then invalid ones together
(each run costs seconds of start-up; one at a time made a user pay it per mistake)."""

from __future__ import annotations

import pytest

from conftest import compose, run_tasklab
from taskset_lab.cli import run_pipeline
from taskset_lab.errors import ConfigError, ConfigErrors, ConfigProblems


def test_problems_collects_config_errors_and_lets_others_through():
    problems = ConfigProblems()
    with problems:
        raise ConfigError("a", "bad")
    with problems:
        pass
    with problems:
        raise ConfigErrors([ConfigError("b", "worse"), ConfigError("c", "worst")])
    with pytest.raises(ZeroDivisionError):
        with problems:
            1 / 0
    with pytest.raises(ConfigErrors) as info:
        problems.raise_all()
    assert [e.field for e in info.value.errors] == ["a", "b", "c"]
    assert str(info.value) == "3 config problems: 'a': bad; 'b': worse; 'c': worst"
    problems.raise_all()  # emptied: nothing more to raise


def _fields(cfg) -> list[str]:
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg)
    return [e.field for e in getattr(info.value, "errors", [info.value])]


def test_missing_required_fields_are_named_together(tmp_path):
    assert _fields(compose("train_mlp_digits", ["expr_name=null", "output_dir=null", "global_seed=null"])) == \
        ["expr_name", "output_dir", "global_seed"]


def test_hparam_list_invalid_fields_are_named_together(tmp_path):
    cfg = compose("quickstart", [f"output_dir={tmp_path}", "hparam_list.select_split=nope", "hparam_list.cap=-1",
                                 "hparam_list.folds=1", "hparam_list.length=40", "global_seed=-3"])
    assert _fields(cfg) == ["global_seed", "hparam_list.select_split", "hparam_list.cap", "hparam_list.length",
                            "hparam_list.folds"]
    assert not (tmp_path / "curves").exists()  # nothing collected


def test_curves_invalid_collection_fields_are_named_together(tmp_path):
    cfg = compose("curves_quickstart", [f"output_dir={tmp_path}", "total_steps=0", "learner.eval_batches=0",
                                        "misc.offline_data=bogus", "learner.dtype=int8"])
    assert _fields(cfg) == ["total_steps", "learner.eval_batches", "learner.dtype", "misc.offline_data"]


def test_mtl_bad_seed_and_learning_rate_refused_before_training(tmp_path):
    cfg = compose("mtl_quickstart", [f"output_dir={tmp_path}", "global_seed=-1", "optimizer.lr=-1", "eval_tasks=[9]"])
    assert _fields(cfg) == ["global_seed", "eval_tasks", "optimizer"]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no baseline, no model trained


def test_train_bad_learning_rate_refused_before_training(tmp_path):
    cfg = compose("train_mlp_digits", [f"output_dir={tmp_path}", "optimizer.lr=-1", "eval_every=0"])
    assert _fields(cfg) == ["eval_every", "optimizer"]


def test_transfer_invalid_fields_are_named_together(tmp_path):
    cfg = compose("transfer_quickstart", [f"output_dir={tmp_path}", "total_steps=-1", "table_ks=[0]",
                                          "methods.list.trials=0"])
    assert _fields(cfg) == ["total_steps", "methods.list.trials", "table_ks"]


def test_cli_prints_all_problems_in_one_line_exit_2(tmp_path):
    proc = run_tasklab(["pipeline=HPARAM_LIST", "index=quickstart", f"output_dir={tmp_path / 'o'}",
                        "hparam_list.select_split=nope", "hparam_list.folds=1"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == ["tasklab: error: 2 config problems: 'hparam_list.select_split': must be one of "
                      "('train', 'valid_inner', 'valid_outer', 'test'), got 'nope'; 'hparam_list.folds': must be an "
                      "integer >= 2, got 1"], proc.stderr
    assert "Traceback" not in proc.stderr
