"""REPLAY through the real config and CLI: outputs on a hand-made store (the list's replay equals
HPARAM_LIST's list curve on the same folds, W&B tables with logger=wandb), and bad input as one
line with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import compose, one_error_line, run_tasklab
from test_replay import make_store
from taskset_lab.cli import run_pipeline
from taskset_lab.curves.store import read_curves, read_runs
from taskset_lab.hparam_list.baselines import order_curve
from taskset_lab.hparam_list.evaluate import cv_folds
from taskset_lab.hparam_list.normalize import loss_matrix, normalized_losses
from wandb_offline import offline_runs, read_offline_table


def test_replay_pipeline_outputs_and_list_equals_hparam_list(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    store = make_store(tmp_path / "store", configs=5)
    out = tmp_path / "out"
    run_pipeline(compose("replay_quickstart", [
        f"curves_dir={store}", f"output_dir={out}", "collect_if_missing=false", "progress=false",
        "replay.strategies=[random,list,asha,list_asha]", "replay.seeds=1", "replay.budget=4",
        "replay.budgets=[1,2,4]", "replay.folds=3", "replay.list_asha_entries=2", "replay.export.syne_tune=true",
        "replay.export.mf_prior_bench=true",
        "logger=wandb", "logger.wandb.project=tasklab-test"]))
    curves = pd.read_csv(out / "anytime_curves.csv")
    assert set(curves["method"]) == {"random", "list", "asha", "list_asha", "random_exact"}
    assert set(curves["scheme"]) == {"cv", "lofo"}
    pd.testing.assert_frame_equal(pd.read_parquet(out / "anytime_curves.parquet"), curves, check_dtype=False)
    # the replayed list, trial after trial to the end, is HPARAM_LIST's list curve on the same folds
    norm = normalized_losses(read_curves(store), read_runs(store), optimizer="toyopt")
    tasks, _, sel = loss_matrix(norm, "select")
    _, _, rep = loss_matrix(norm, "report")
    lists = json.loads((out / "replay.json").read_text())["lists_config_rows"]
    for fold, held in enumerate(cv_folds(len(tasks), 3, 0)):
        want = order_curve(sel[held], rep[held], lists[f"cv/{fold}"]).mean(axis=0)
        got = curves[(curves.scheme == "cv") & (curves.fold == fold) & (curves.method == "list")].set_index("budget")
        np.testing.assert_allclose(got.loc[[1.0, 2.0, 3.0, 4.0], "value"].to_numpy(), want[:4], rtol=0, atol=1e-12)
    table = pd.read_csv(out / "budget_table.csv")
    assert sorted(table["budget"].unique()) == [1.0, 2.0, 4.0]
    cv_table = table[table.scheme == "cv"].set_index(["method", "budget"])["mean"]
    summary = pd.read_csv(out / "anytime_summary.csv")
    assert cv_table["asha", 4.0] == pytest.approx(
        summary[(summary.scheme == "cv") & (summary.method == "asha") & (summary.budget == 4.0)]["mean"].iloc[0])
    assert (out / "anytime_cv.png").stat().st_size > 1000 and (out / "anytime_lofo.png").stat().st_size > 1000
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize

    assert sorted(deserialize(str(out / "syne_tune"))) == tasks
    assert len(list((out / "mf_prior_bench").glob("*.parquet"))) == len(tasks)
    (run,) = offline_runs(out)
    logged = read_offline_table(run, "replay/table")
    assert len(logged) == len(table) and set(logged["method"]) == set(table["method"])


def test_bad_settings_one_line_exit_2(tmp_path):
    store = make_store(tmp_path / "store")
    line = one_error_line(run_tasklab([
        "pipeline=REPLAY", "index=replay_quickstart", f"curves_dir={store}", "collect_if_missing=false",
        "replay.budget=0.5", "replay.strategies=[random,nope]", "replay.select_split=valid"], tmp_path))
    assert "replay.budget" in line and "at least 1" in line
    assert "unknown strategies ['nope']" in line and "replay.select_split" in line


def test_store_without_report_split_one_line_exit_2(tmp_path):
    store = make_store(tmp_path / "store", drop_split="test")
    line = one_error_line(run_tasklab([
        "pipeline=REPLAY", "index=replay_quickstart", f"curves_dir={store}", "collect_if_missing=false",
        f"output_dir={tmp_path / 'out'}"], tmp_path))
    assert "lacks a split" in line and "test" in line
