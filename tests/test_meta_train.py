"""META_TRAIN and the outer loop: a killed run continues the same outer trajectory (library
checkpoint and `kill -9` of the real command), skipped steps and diverged runs are counted,
bad settings and a corrupt checkpoint give one line and exit 2."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch

from taskset_lab.errors import DataError
from taskset_lab.meta.outer import MetaSpec, MetaTrainer
from taskset_lab.optim.learned import load_checkpoint
from taskset_lab.tasks import sample_task

from conftest import compose, kill_tasklab, run_tasklab
from taskset_lab.cli import run_pipeline

SMALL = dict(architecture="small_fc_lopt", num_pairs=2, num_workers=2, truncation=3, min_unroll=4, max_unroll=8,
             outer_steps=6, sigma=0.05, outer_lr=0.01)


def _tasks():
    return [sample_task("lab_mlp", s, {"hidden": [8], "batch_size": 16}) for s in range(3)]


def test_resumed_outer_loop_equals_an_uninterrupted_one(tmp_path, one_torch_thread):
    """Stopped after 3 of 6 outer steps (some inner runs mid-unroll) and rebuilt from its
    checkpoint, the outer loop ends with the very same θ, Adam state and log as without the stop."""
    spec = MetaSpec(**SMALL)
    whole = MetaTrainer(spec, _tasks())
    whole.run()
    path = tmp_path / "meta.pt"
    first = MetaTrainer(spec, _tasks(), checkpoint_path=path)
    for _ in range(3):
        first.outer_step()
    first.save(path)
    assert any(w.run is not None and 0 < w.run.step < w.run.unroll_length for w in first.workers)
    second = MetaTrainer(spec, _tasks(), checkpoint_path=path)
    assert second.resumed_from == 3
    second.run()
    assert torch.equal(second.theta, whole.theta)
    assert not torch.equal(whole.theta, MetaTrainer(spec, _tasks()).theta), "θ moved"
    assert [r["meta_loss"] for r in second.state.rows] == [r["meta_loss"] for r in whole.state.rows]
    assert second.state.finished_runs == whole.state.finished_runs > 0
    with pytest.raises(DataError, match="other settings"):
        MetaTrainer(dataclasses.replace(spec, sigma=0.1), _tasks(), checkpoint_path=path)


def test_no_valid_pair_skips_the_step_and_counts_it(one_torch_thread):
    """Perturbations so large that every member diverges: no pair is averaged in, the update is
    skipped (θ unchanged), and the skip, the diverged pairs and the truncated runs are counted."""
    spec = MetaSpec(**dict(SMALL, sigma=1e4, outer_steps=2))
    trainer = MetaTrainer(spec, _tasks())
    theta0 = trainer.theta.detach().clone()
    trainer.run()
    assert torch.equal(trainer.theta.detach(), theta0)
    rows = trainer.state.rows
    assert [r["skipped"] for r in rows] == [1, 1] and trainer.state.skipped_steps == 2
    assert all(r["pairs"] == 0 for r in rows)
    assert trainer.state.diverged_pairs == 2 * 2 * 2 and trainer.state.truncated_runs == 4


ARGS = ["pipeline=META_TRAIN", "index=lopt_quickstart", "lopt.num_pairs=2", "lopt.num_workers=2", "lopt.truncation=3",
        "lopt.min_unroll=4", "lopt.max_unroll=8", "lopt.outer_steps=8", "lopt.evaluation.horizons=[]",
        "lopt.train_tasks.families=[{family: lab_mlp, seeds: [0, 3], overrides: {hidden: [8], batch_size: 16}}]"]


def _theta(folder):
    return load_checkpoint(folder / "learned_optimizer.pt").theta


def _steps_done(folder) -> int:
    path = folder / "meta_loss.csv"
    try:
        return len(list(csv.DictReader(path.open()))) if path.exists() else 0
    except OSError:
        return 0


def test_kill_9_then_the_same_command_continues_the_same_trajectory(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run_tasklab(ARGS + [f"output_dir={whole}", "logger=tensorboard"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((whole / "tensorboard").glob("events*"))))
    events.Reload()
    assert len(events.Scalars("meta/meta_loss")) == 8 and "meta/grad_stderr_norm" in events.Tags()["scalars"]
    code, _, _ = kill_tasklab(ARGS + [f"output_dir={killed}"], tmp_path, ready=lambda: _steps_done(killed) >= 3)
    assert code == -9 and not (killed / "learned_optimizer.pt").exists()
    again = run_tasklab(ARGS + [f"output_dir={killed}"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stderr + again.stdout
    assert torch.equal(_theta(killed), _theta(whole))
    rows = list(csv.DictReader((killed / "meta_loss.csv").open()))
    assert [r["meta_loss"] for r in rows] == [r["meta_loss"] for r in csv.DictReader((whole / "meta_loss.csv").open())]
    assert len(rows) == 8 and "outer step 8/8" in (done.stderr + done.stdout)


def test_bad_settings_and_a_corrupt_checkpoint_give_one_line_and_exit_2(tmp_path):
    bad = run_tasklab(ARGS + [f"output_dir={tmp_path / 'bad'}", "lopt.estimator=reinforce", "lopt.sigma=-1",
                              "lopt.architecture=lstm", "lopt.compile=sometimes"], tmp_path)
    assert bad.returncode == 2
    line = bad.stderr.strip().splitlines()[-1]
    assert "lopt.estimator" in line and "lopt.sigma" in line and "lopt.architecture" in line
    assert "lopt.compile" in line
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "meta_checkpoint.pt").write_bytes(b"not a checkpoint")
    corrupt = run_tasklab(ARGS + [f"output_dir={out}"], tmp_path)
    assert corrupt.returncode == 2
    assert "meta-training checkpoint" in corrupt.stderr.strip().splitlines()[-1]
    assert "Traceback" not in corrupt.stderr


def test_wandb_run_holds_the_meta_loss_curve_table_and_checkpoints(tmp_path, monkeypatch):
    """logger=wandb (offline): the meta-loss as a live history, the flat typed config, the
    meta-loss table equal to meta_loss.csv and the checkpoints as an artifact."""
    import pandas as pd

    from wandb_offline import (offline_runs, read_offline_artifacts, read_offline_history, read_offline_run,
                               read_offline_table)

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "run"
    args = [a for a in ARGS if not a.startswith(("pipeline=", "index="))]
    run_pipeline(compose("lopt_quickstart", [*args, "lopt.outer_steps=3", f"output_dir={out}", "logger=wandb",
                                             "logger.wandb.project=tasklab-test"]))
    (run,) = offline_runs(out)
    info = read_offline_run(run)
    assert info["job_type"] == "META_TRAIN" and info["config"]["lopt.num_pairs"] == 2
    history = [h for h in read_offline_history(run) if "meta/meta_loss" in h]
    assert len(history) == 3
    table = read_offline_table(run, "meta/loss")
    csv_rows = pd.read_csv(out / "meta_loss.csv")
    assert list(table["meta_loss"]) == pytest.approx(list(csv_rows["meta_loss"]))
    (artifact,) = [a for a in read_offline_artifacts(run).values() if a["type"] == "checkpoint"]
    assert artifact["files"]["learned_optimizer.pt"] == (out / "learned_optimizer.pt").stat().st_size
    assert "meta_checkpoint.pt" in artifact["files"]
