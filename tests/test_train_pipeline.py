"""The TRAIN pipeline end to end on the shipped index configs (debug=train: 20 CPU steps)."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pytest

from conftest import compose, interrupt_tasklab
from taskset_lab.cli import run_pipeline
from taskset_lab.errors import TasklabError

TRAIN_INDEXES = ["train_mlp_digits", "train_conv_digits", "train_char_rnn", "train_quadratic"]


def _train(index: str, out, *overrides: str) -> tuple[dict, pd.DataFrame]:
    cfg = compose(index, ["debug=train", f"output_dir={out}", *overrides])
    summary = run_pipeline(cfg)
    return summary, pd.read_csv(out / "curve.csv")


@pytest.mark.parametrize("index", TRAIN_INDEXES)
def test_train_index_runs_end_to_end(index, tmp_path):
    summary, curve = _train(index, tmp_path / "run")
    assert list(curve["step"]) == [0, 5, 10, 15, 20]
    splits = ["train", "valid_inner", "valid_outer", "test"]
    assert curve[splits].notna().all().all()
    assert curve["train"].iloc[-1] < curve["train"].iloc[0]  # 20 steps of NAdamW make progress
    assert summary["steps"] == 20 and summary["diverged_step"] is None
    # Lightning's own CSV logger saw the same evaluations.
    metrics = pd.read_csv(tmp_path / "run" / "csv" / "metrics.csv")
    logged = metrics.dropna(subset=["loss/test"])
    assert math.isclose(logged["loss/test"].iloc[0], curve["test"].iloc[0], rel_tol=1e-6)
    assert (tmp_path / "run" / "config.yaml").read_text().count(f"expr_name: {index}") == 1


def test_resume_continues_the_same_curve(tmp_path):
    _, full = _train("train_quadratic", tmp_path / "full")
    # stop after 10 of the 20 scheduled steps, then resume from the last checkpoint
    _train("train_quadratic", tmp_path / "part", "trainer.max_steps=10")
    summary, resumed = _train("train_quadratic", tmp_path / "part", "resume=true")
    assert list(resumed["step"]) == [0, 5, 10, 15, 20]
    pd.testing.assert_frame_equal(resumed, full, rtol=1e-6)
    assert summary["steps"] == 20
    # the CSV logger's metrics.csv keeps the rows logged before the interruption too
    metrics = {run: pd.read_csv(tmp_path / run / "csv" / "metrics.csv") for run in ("full", "part")}
    evals = {run: m.dropna(subset=["loss/test"]).set_index("step")["loss/test"] for run, m in metrics.items()}
    assert list(evals["part"].index) == [0, 5, 10, 15, 20]
    pd.testing.assert_series_equal(evals["part"], evals["full"], rtol=1e-6)
    assert metrics["part"]["train_loss"].notna().sum() == metrics["full"]["train_loss"].notna().sum()


def test_resume_without_checkpoint_names_the_field(tmp_path):
    with pytest.raises(TasklabError, match="'resume'"):
        run_pipeline(compose("train_quadratic", ["debug=train", f"output_dir={tmp_path}", "resume=true"]))


def test_non_finite_loss_stops_and_keeps_the_curve(tmp_path):
    summary, curve = _train("train_quadratic", tmp_path / "run", "optimizer.lr=1e30",
                            "task.config.output_fn=identity", "task.config.noise=null")
    assert summary["diverged_step"] is not None and summary["diverged_step"] < 20
    assert curve["step"].iloc[0] == 0 and math.isfinite(curve["train"].iloc[0])
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["diverged_step"] == summary["diverged_step"]


def test_wandb_offline_run_holds_the_logged_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    _, curve = _train("train_mlp_digits", tmp_path / "run", "logger=wandb", "logger.wandb.project=tasklab-test")
    from wandb_offline import read_offline_history

    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # W&B's service process writes the file; on a loaded machine it can still be flushing
    # when ``finish()`` has returned, so give it a while before reading what is there
    deadline = time.monotonic() + 60
    while True:
        try:
            history = read_offline_history(runs[0])
        except Exception:  # noqa: BLE001 - a record half written; read again
            if time.monotonic() > deadline:
                raise
            history = []
        test_losses = [row["loss/test"] for row in history if "loss/test" in row]
        if len(test_losses) >= len(curve) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(test_losses) == len(curve)
    assert test_losses == pytest.approx(list(curve["test"]), rel=1e-6)


def test_ctrl_c_writes_the_curve_so_far_and_says_how_to_resume(tmp_path):
    """SIGINT through the real CLI: Lightning shuts down, tasklab exits 130 with curve.csv kept."""
    out = tmp_path / "run"
    checkpoint = out / "checkpoints" / "last.ckpt"
    first_stamp: list[int] = []

    def second_checkpoint() -> bool:
        # the checkpoint of step 50 can land just before that step's evaluation: interrupt
        # after a later one, when the evaluations of steps 0 and 50 are surely in
        if not checkpoint.is_file():
            return False
        stamp = checkpoint.stat().st_mtime_ns
        if not first_stamp:
            first_stamp.append(stamp)
        return stamp != first_stamp[0]

    rc, stdout, stderr = interrupt_tasklab(
        ["pipeline=TRAIN", "index=train_mlp_digits", "total_steps=1000000", "eval_every=50", "logger=csv",
         f"output_dir={out}", "trainer.enable_progress_bar=false"], tmp_path, ready=second_checkpoint)
    assert rc == 130, stderr[-2000:]
    assert "tasklab: interrupted" in stderr and "Traceback" not in stderr
    assert f"resume=true output_dir={out}" in stdout + stderr
    curve = pd.read_csv(out / "curve.csv")
    assert len(curve) >= 2 and (curve["step"] % 50 == 0).all() and curve["step"].is_monotonic_increasing
    assert curve["train"].notna().all()


def test_train_honours_offline_data_and_trains_any_task_by_its_name(tmp_path):
    """misc.offline_data=substitute reaches TRAIN's task (the error that recommends it is true),
    and every task TASKS lists trains by name: task=<fixed task> or task=<family>_seed<N>."""
    import json

    from conftest import run_tasklab

    cases = [(["task=sampled", "task.family=mlp_family", "task.seed=12", "misc.offline_data=substitute"],
              "mlp_family_seed12_on_digits"),
             (["task=mnist_mlp", "misc.offline_data=substitute"], "_on_digits"),
             (["task=Copy_VRNN128_BS128_Length20_Tokens10"], "Copy_VRNN128_BS128_Length20_Tokens10"),
             (["task=mlp_family_seed12", "misc.offline_data=substitute"], "mlp_family_seed12_on_digits")]
    for i, (args, name) in enumerate(cases):
        out_dir = tmp_path / f"run{i}"
        out = run_tasklab(["pipeline=TRAIN", "index=train_mlp_digits", *args, "debug=train", "total_steps=4",
                           "eval_every=2", f"output_dir={out_dir}"], cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        task = json.loads((out_dir / "summary.json").read_text())["task"]
        assert task.endswith(name), (args, task)
    absent = run_tasklab(["pipeline=TRAIN", "index=train_mlp_digits", "task=mnist_mlp", "debug=train",
                          f"misc.data_dir={tmp_path / 'empty'}", f"output_dir={tmp_path / 'absent'}"], cwd=tmp_path)
    assert absent.returncode == 2 and "misc.offline_data=substitute" in absent.stderr
    bad = run_tasklab(["pipeline=TRAIN", "index=train_mlp_digits", "task=NoSuchTask", "debug=train"], cwd=tmp_path)
    assert bad.returncode == 2 and "unknown task 'NoSuchTask'" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
