"""The MTL pipeline end to end on the shipped index configs, with tiny overrides (CPU)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import compose
from taskset_lab.cli import run_pipeline
from taskset_lab.errors import TasklabError
from taskset_lab.mtl.compare import to_markdown, write_compare
from taskset_lab.mtl.metrics import delta_m
from taskset_lab.pipelines.mtl import read_final_metrics

TINY = ["trainer=debug", "total_steps=4", "eval_every=2", "mtl_dataset.pairs_per_image=1",
        "backbone.hidden=[16]", "logger=csv"]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("mtl") / "quick"
    summary = run_pipeline(compose("mtl_quickstart", [*TINY, f"output_dir={out}"]))
    return out, summary


def test_quickstart_end_to_end(quickstart):
    out, summary = quickstart
    assert summary["method"] == "EW" and summary["optimizer"] == "AdaTaskAdam" and summary["steps"] == 4
    metrics = pd.read_csv(out / "metrics.csv")
    assert sorted(metrics["step"].unique()) == [0, 2, 4]
    assert set(metrics["split"]) == {"val", "test"}
    assert set(metrics["task_name"]) == {"left_digit", "right_digit", "digit_sum", "average"}
    last = metrics[(metrics.step == 4) & (metrics.split == "test")]
    acc = last.set_index(["task_name", "metric"])["value"]
    assert 0.0 <= acc["left_digit", "accuracy"] <= 1.0 and acc["digit_sum", "mse"] > 0
    assert acc["average", "accuracy"] == pytest.approx((acc["left_digit", "accuracy"] + acc["right_digit", "accuracy"]) / 2)
    # Δm recomputed from the two final_metrics files equals delta_m.csv and the summary
    final, base = read_final_metrics(out / "final_metrics.csv"), read_final_metrics(out / "stl_baseline" / "final_metrics.csv")
    row = pd.read_csv(out / "delta_m.csv").iloc[0]
    assert row["delta_m"] == pytest.approx(delta_m(final, base)) == pytest.approx(summary["delta_m"])
    assert row["left_digit/accuracy/stl"] == pytest.approx(base[1]["accuracy"])
    # AU: every shared layer and task at each evaluation after the first step; rAU sums to 1
    au = pd.read_csv(out / "au.csv")
    assert set(au["layer"]) == {"backbone.layers.0"} and sorted(au["step"].unique()) == [2, 4]
    assert au.groupby(["step", "layer"])["rau"].sum().tolist() == pytest.approx([1.0, 1.0])
    for png in ("rau_heatmap.png", "metrics.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "pipeline: MTL" in (out / "config.yaml").read_text()
    # the Lightning CSV logger got the same evaluations
    logged = pd.read_csv(out / "csv" / "metrics.csv")
    col = "test/left_digit/accuracy"
    assert logged[col].dropna().tolist() == pytest.approx(
        metrics[(metrics.split == "test") & (metrics.task_name == "left_digit") & (metrics.metric == "accuracy")]["value"].tolist())


def test_baseline_folder_is_reused_and_compare_table(quickstart, tmp_path):
    out, first = quickstart
    run = tmp_path / "runs" / "pcgrad"
    summary = run_pipeline(compose("mtl_quickstart", [*TINY, f"output_dir={run}", "mtl_algorithm=pcgrad",
                                                      "optimizer=mtl_adam", f"baseline={out / 'stl_baseline'}"]))
    assert not (run / "stl_baseline").exists()  # nothing retrained
    assert summary["baseline"] == first["baseline"]
    assert summary["method"] == "PCGrad" and summary["optimizer"] == "MTLAdam"
    (tmp_path / "runs" / "ew").symlink_to(out, target_is_directory=True)
    table = write_compare(tmp_path / "runs")
    assert list(table["method"]) == ["STL (each task alone)", "EW + AdaTaskAdam", "PCGrad + MTLAdam"]
    assert table["delta_m%"].tolist() == pytest.approx([0.0, first["delta_m"], summary["delta_m"]])
    assert table.loc[1, "right_digit/accuracy"] == pytest.approx(first["final"][2]["accuracy"])
    assert "| PCGrad + MTLAdam |" in to_markdown(table)
    assert (tmp_path / "runs" / "compare.csv").is_file()


def test_single_task_algorithm_trains_each_task_alone(tmp_path):
    summary = run_pipeline(compose("mtl_quickstart", [*TINY, f"output_dir={tmp_path}", "mtl_algorithm=stl",
                                                      "train_tasks=[1,3]", "eval_tasks=[3]"]))
    assert summary["method"] == "STL" and summary["delta_m"] == 0.0
    assert (tmp_path / "task_1" / "metrics.csv").is_file() and (tmp_path / "task_3" / "metrics.csv").is_file()
    assert list(summary["final"]) == [3]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["tasks"] == {"3": "digit_sum"}


@pytest.mark.parametrize("override, field", [
    ("eval_tasks=[4]", "eval_tasks"), ("train_tasks=0", "train_tasks"), ("train_tasks=[1,1]", "train_tasks"),
    ("eval_every=100", "eval_every"), ("baseline=/no/such/folder", "baseline"),
])
def test_bad_fields_are_named(tmp_path, override, field):
    with pytest.raises(TasklabError, match=f"'{field}'"):
        run_pipeline(compose("mtl_quickstart", [*TINY, f"output_dir={tmp_path}", override]))


def test_unknown_task_of_the_dataset_is_named(tmp_path):
    with pytest.raises(TasklabError, match="'train_tasks'.*do not exist"):
        run_pipeline(compose("mtl_quickstart", [*TINY, f"output_dir={tmp_path}", "train_tasks=5", "eval_tasks=2",
                                                "baseline=none"]))


@pytest.mark.parametrize("index", ["mtl_compare", "mtl_compare_synthetic", "mtl_multimnist", "mtl_multifashion",
                                   "mtl_cityscapes"])
def test_shipped_indexes_compose(index):
    cfg = compose(index)
    assert cfg.pipeline == "MTL" and cfg.mtl_dataset._target_.startswith("taskset_lab.mtl.datasets.")
    assert cfg.optimizer._partial_ is True


def test_wandb_offline_run_holds_the_evaluations(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "run"
    run_pipeline(compose("mtl_quickstart", [*TINY, f"output_dir={out}", "logger=wandb", "baseline=none",
                                            "logger.wandb.project=tasklab-test"]))
    from wandb_offline import read_offline_history

    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    rows = read_offline_history(runs[0])
    history = [row for row in rows if "test/digit_sum/mse" in row]
    metrics = pd.read_csv(out / "metrics.csv")
    want = metrics[(metrics.split == "test") & (metrics.task_name == "digit_sum") & (metrics.metric == "mse")]
    assert [row["test/digit_sum/mse"] for row in history] == pytest.approx(want["value"].tolist())
    assert any(key.startswith("rau/backbone.layers.0/") for row in rows for key in row)
    assert not (out / "delta_m.csv").exists()  # baseline=none: no Δm


def test_cityscapes_index_trains_the_segnet_on_tiny_files(tmp_path):
    from test_mtl_data import _write_cityscapes

    _write_cityscapes(tmp_path / "cs")
    out = tmp_path / "run"
    summary = run_pipeline(compose("mtl_cityscapes", [
        "trainer=debug", "total_steps=2", "eval_every=1", f"output_dir={out}", f"mtl_dataset.root={tmp_path / 'cs'}",
        "mtl_dataset.height=8", "mtl_dataset.width=16", "mtl_dataset.batch_size=2", "backbone.channels=[4,8]",
        "baseline=none", "logger=none"]))
    final = summary["final"]
    assert set(final[1]) == {"loss", "miou", "pix_acc"} and set(final[2]) == {"loss", "abs_err", "rel_err"}
    assert 0.0 <= final[1]["miou"] <= 1.0 and final[2]["abs_err"] > 0
    au = pd.read_csv(out / "au.csv")
    assert "backbone.encoder.0.0.0" in set(au["layer"])  # the first conv of the encoder is a shared layer
    assert au.groupby(["step", "layer"])["rau"].sum().round(6).eq(1.0).all()


def test_mtl_prints_no_lightning_noise(tmp_path):
    """No Lightning tips, GPU/TPU lines or deprecation warnings (they were 14 lines with
    callbacks=default); a trainer mistake names its cause."""
    from conftest import run_tasklab

    out = run_tasklab(["pipeline=MTL", "index=mtl_quickstart", "total_steps=40", "eval_every=20", "callbacks=default",
                       "trainer.enable_checkpointing=true", f"output_dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    for noise in ("GPU available", "TPU available", "Tip:", "deprecated", "Warning", "pre-optimization"):
        assert noise not in text, noise
    bad = run_tasklab(["pipeline=MTL", "index=mtl_quickstart", "total_steps=40", "eval_every=20", "callbacks=default",
                       f"output_dir={tmp_path / 'bad'}"], cwd=tmp_path)
    assert bad.returncode == 2 and "enable_checkpointing" in bad.stderr
