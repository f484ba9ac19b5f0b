"""What a run does with its settings and how it fails: every multirun job in its own folder
with a sweep summary, resume keeping a finished run and refusing other settings, invalid
values refused (not adjusted), all-NaN tasks warned and all-diverged stores refused, help and
version, drawn hparams reaching the loggers; and every bad input (composition errors, bad
paths, devices, loggers, stores) ends with exit 2 and one line on stderr, never a traceback.
Corrupted parts, two writers and a full disk are in tests/test_faults.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskset_lab.cli import run_pipeline
from taskset_lab.curves.store import part_name, write_part
from taskset_lab.errors import DataError, TasklabError
from taskset_lab.tasks.base import SPLITS

from conftest import compose, one_error_line, run_tasklab

TRAIN = ["debug=train", "logger=csv"]
NO_REFERENCES = ["hparam_list.reference_lists={}"]


def _store(root: Path, losses: dict[str, float], diverged: bool = False, optimizer: str = "nadamw") -> Path:
    """A small curve store in the real format: per task, 3 configs x 3 evaluations of a loss
    scaled by ``losses[task]`` (NaN for a task that is NaN from the start)."""
    for t, (task, scale) in enumerate(losses.items()):
        family = task.rsplit("_", 1)[0]
        steps = [0, 10, 20]
        configs = range(3)
        rows = [{"task": task, "task_family": family, "optimizer": optimizer, "config_id": c, "replica": 0,
                 "step": s, **{sp: scale * (1.0 + c) / (1.0 + s) for sp in SPLITS}} for c in configs for s in steps]
        runs = [{"task": task, "task_family": family, "task_config": "{}", "optimizer": optimizer, "config_id": c,
                 "replica": 0, "hparams": json.dumps({"lr": 10.0 ** -c}), "config_seed": c,
                 "status": "diverged" if diverged else "ok", "diverged_step": 10 if diverged else -1,
                 "total_steps": 20, "eval_every": 10, "seconds": 0.1, "device": "cpu"} for c in configs]
        write_part(root, part_name(task, optimizer, 0, 0), pd.DataFrame(rows), pd.DataFrame(runs))
    return root


# -- every multirun job in its own folder, and a summary of the sweep -------------------------
def test_multirun_jobs_get_their_own_folders_and_a_sweep_summary(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_tasklab(["pipeline=TRAIN", "index=train_quadratic", *TRAIN, "optimizer.lr=1e-3,1e-1",
                        f"hydra.sweep.dir={sweep}", "--multirun"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lrs = [json.loads((sweep / str(i) / "summary.json").read_text())["optimizer_hparams"]["lr"] for i in (0, 1)]
    assert lrs == [1e-3, 1e-1]
    curves = [pd.read_csv(sweep / str(i) / "curve.csv") for i in (0, 1)]
    assert curves[0]["test"].iloc[-1] != curves[1]["test"].iloc[-1]
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["status"]) == ["ok", "ok"]
    assert table["overrides"].str.contains("optimizer.lr=0.1").tolist() == [False, True]
    assert table["final.test"].tolist() == pytest.approx([c["test"].iloc[-1] for c in curves])


# -- resume: a finished run is a no-op; other settings refused before anything is written ------
def test_resume_keeps_a_finished_run_and_refuses_other_settings(tmp_path, capsys):
    run = tmp_path / "run"
    first = run_pipeline(compose("train_quadratic", [*TRAIN, f"output_dir={run}"]))
    before = {name: (run / name).read_bytes() for name in ("curve.csv", "config.yaml", "summary.json")}
    again = run_pipeline(compose("train_quadratic", [*TRAIN, f"output_dir={run}", "resume=true"]))
    assert "already finished" in capsys.readouterr().out
    assert again["final"] == first["final"]
    with pytest.raises(TasklabError, match="'optimizer.lr'.*run being resumed"):
        run_pipeline(compose("train_quadratic", [*TRAIN, f"output_dir={run}", "resume=true", "optimizer.lr=0.5"]))
    with pytest.raises(TasklabError, match="'task.*run being resumed"):
        run_pipeline(compose("train_quadratic", [*TRAIN, f"output_dir={run}", "resume=true", "task=mlp_digits"]))
    assert {name: (run / name).read_bytes() for name in before} == before


def test_resume_hint_carries_the_run_overrides(monkeypatch):
    from taskset_lab.pipelines import train

    monkeypatch.setattr(train, "explicit_overrides", lambda: ["pipeline=TRAIN", "index=train_quadratic",
                                                              "debug=train", "output_dir=out/x", "optimizer.lr=0.1"])
    hint = train.resume_hint(Path("out/x"))
    assert hint == ("tasklab pipeline=TRAIN index=train_quadratic debug=train optimizer.lr=0.1 "
                    "resume=true output_dir=out/x")


# -- silent adjustments are refused, naming the field -------------------------------------------
@pytest.mark.parametrize("override, field", [
    (["search_space.num_configs=8", "hparam_list.length=30"], "hparam_list.length"),
    (["hparam_list.length=10", "hparam_list.ks=[0,100]"], "hparam_list.ks"),
    (["hparam_list.tpe.trials=-3"], "hparam_list.tpe.trials"),
    (["learner.divergence_factor=-1"], "learner.divergence_factor"),
])
def test_invalid_values_are_refused_not_adjusted(tmp_path, override, field):
    cfg = compose("quickstart", [f"output_dir={tmp_path}", *NO_REFERENCES, *override])
    with pytest.raises(TasklabError, match=f"'{field}'"):
        run_pipeline(cfg)
    assert not (tmp_path / "curves").exists()  # refused before any collection


# -- no learning from a store without a finite run; a warning per all-NaN task ----------------
def test_all_nan_task_warned_and_all_diverged_store_refused(tmp_path, caplog):
    from taskset_lab.curves.store import read_curves, read_runs
    from taskset_lab.hparam_list.checks import WARNINGS_FILE, check_curves

    store = _store(tmp_path / "mixed", {"quadratic_family_0000aaaa": 1.0, "quadratic_family_0000bbbb": float("nan")})
    caplog.set_level("WARNING")
    warnings = check_curves(read_curves(store), read_runs(store), store, "valid_inner", "test", tmp_path / "out")
    assert len(warnings) == 1 and "quadratic_family_0000bbbb" in warnings[0]
    assert "quadratic_family_0000bbbb" in (tmp_path / "out" / WARNINGS_FILE).read_text()
    assert any("quadratic_family_0000bbbb" in r.getMessage() for r in caplog.records)

    dead = _store(tmp_path / "dead", {"quadratic_family_0000aaaa": 1.0, "quadratic_family_0000cccc": 2.0}, diverged=True)
    cfg = compose("quickstart", [f"output_dir={tmp_path / 'o'}", f"curves_dir={dead}", "collect_if_missing=false",
                                 "search_space.num_configs=3", "hparam_list.length=2", "hparam_list.ks=[1,2]",
                                 "hparam_list.folds=2", "hparam_list.tpe.enabled=false", *NO_REFERENCES])
    with pytest.raises(DataError, match="nothing to learn"):
        run_pipeline(cfg)


# -- traceback cases: exit 2, one line ---------------------------------------------------------
def test_help_and_version_speak_of_tasklab(tmp_path):
    for args in (["--help"], ["-h", "pipeline=TRAIN"]):
        proc = run_tasklab(args, tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stdout.startswith("usage: tasklab") and "powered by Hydra" not in proc.stdout
        assert "train_quadratic" in proc.stdout and "HPARAM_LIST" in proc.stdout
    proc = run_tasklab(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("tasklab ")


def test_hydra_composition_errors_are_one_line(tmp_path):
    line = one_error_line(run_tasklab(["pipeline=TRAIN", "index=train_quadratic", "trainer=nope"], tmp_path))
    assert "trainer/nope" in line and "debug, default" in line
    line = one_error_line(run_tasklab(["pipeline=TRAIN", "index=train_quadratic", "optimizr.lr=3"], tmp_path))
    assert "'optimizr" in line


def test_bad_paths_devices_loggers_and_stores_are_one_line(tmp_path):
    import torch

    a_file = tmp_path / "a_file"
    a_file.write_text("not a store")
    line = one_error_line(run_tasklab(["pipeline=HPARAM_LIST", "index=quickstart", f"curves_dir={a_file}",
                                        f"output_dir={tmp_path / 'o1'}"], tmp_path))
    assert "curves_dir" in line and "is a file" in line
    store = _store(tmp_path / "nadamw_store", {"quadratic_family_0000aaaa": 1.0, "quadratic_family_0000bbbb": 2.0})
    line = one_error_line(run_tasklab(["pipeline=HPARAM_LIST", "index=quickstart", f"curves_dir={store}",
                                        "search_space=adam8p", "collect_if_missing=false", *NO_REFERENCES,
                                        "search_space.num_configs=3", "hparam_list.length=2", "hparam_list.ks=[1,2]",
                                        f"output_dir={tmp_path / 'o2'}"], tmp_path))
    assert "nadamw, not adam8p" in line
    # the CLI prints any TasklabError as one line (tests/test_cli.py); these are raised before a run starts
    with pytest.raises(TasklabError, match="'logger'.*CURVES logs to W&B only.*tensorboard"):  # W&B is allowed
        run_pipeline(compose("curves_quickstart", ["logger=tensorboard", f"output_dir={tmp_path / 'o3'}"]))
    if not torch.cuda.is_available():
        with pytest.raises(TasklabError, match="'learner.device'.*no CUDA GPU"):
            run_pipeline(compose("curves_quickstart", ["learner.device=cuda", f"output_dir={tmp_path / 'o4'}"]))
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


# -- what a user expected: hyperparameters reach the loggers and summary.json ---------------------
def test_drawn_hparams_reach_tensorboard_and_summary(tmp_path, monkeypatch):
    import yaml

    from taskset_lab.pipelines import train

    out = tmp_path / "run"
    summary = run_pipeline(compose("train_quadratic", ["debug=train", "logger=tensorboard", "optimizer=sampled",
                                                       "optimizer.seed=3", f"output_dir={out}"]))
    drawn = summary["optimizer_hparams"]
    assert drawn["family"] == "nadamw" and 0 < drawn["lr"] < 1
    assert json.loads((out / "summary.json").read_text())["optimizer_hparams"] == drawn
    logged = yaml.safe_load(next(out.rglob("hparams.yaml")).read_text())
    assert logged["optimizer/lr"] == pytest.approx(drawn["lr"]) and logged["task_family"] == "quadratic_family"
    # the W&B run name says what varies: the experiment and the overrides that change the run
    monkeypatch.setattr(train, "explicit_overrides", lambda: ["pipeline=TRAIN", "index=train_quadratic",
                                                              "debug=train", "optimizer.lr=0.1", "logger=wandb"])
    assert train.run_name(compose("train_quadratic", [])) == "train_quadratic optimizer.lr=0.1"
