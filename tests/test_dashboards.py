"""What a researcher reads in W&B and TensorBoard, read back from the files the runs wrote
(offline W&B run files, TensorBoard event files): configs with their types, run names and
groups, summary metrics, tables, images and artifacts, per pipeline."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from conftest import compose
from taskset_lab.cli import run_pipeline
from taskset_lab.pipelines import dashboards
from wandb_offline import (offline_runs, read_offline_artifacts, read_offline_files, read_offline_run,
                           read_offline_summary, read_offline_table)

pytest.importorskip("wandb")
SPLITS = ["train", "valid_inner", "valid_outer", "test"]
#: a task set of six cheap tasks in two families (leave-one-family-out needs two)
TWO_FAMILIES = "[{family:quadratic_family,seeds:[0,3],overrides:{dims:4}},{family:losg_tasks_family,seeds:[0,3]}]"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path


# -- the shared module ------------------------------------------------------------------------
def test_flat_config_keeps_types_and_leaves_out_the_loggers():
    cfg = compose("train_quadratic", ["debug=train", "logger=wandb", "output_dir=/tmp/x"])
    flat = dashboards.flat_config(cfg)
    assert flat["total_steps"] == 20 and isinstance(flat["total_steps"], int)
    assert isinstance(flat["optimizer.lr"], float) and flat["optimizer.nesterov"] is False
    assert flat["task.config.dims"] == 20 and flat["trainer.max_steps"] == 20
    assert not any(k.startswith(("logger", "hydra")) for k in flat)
    assert dashboards.flat_config({"a": [1, 2], "b": [{"c": 3}], "d": {}}) == {"a": [1, 2], "b.0.c": 3, "d": "{}"}
    assert dashboards.tensorboard_value([1, 2]) == "[1, 2]" and dashboards.tensorboard_value(None) == "None"


def test_run_name_says_what_varies_and_group_is_the_experiment():
    cfg = compose("train_quadratic", ["debug=train"])
    given = ["pipeline=TRAIN", "index=train_quadratic", "debug=train", "optimizer.lr=0.1", "logger=wandb",
             "output_dir=/x", "task.config.dims=3"]
    assert dashboards.run_name(cfg, overrides=given) == "train_quadratic optimizer.lr=0.1 task.config.dims=3"
    assert dashboards.run_name(cfg, describe=["nadamw", "optimizer.lr=1"], overrides=given).split()[:2] == [
        "train_quadratic", "nadamw"]  # a described key given as an override is named once
    assert dashboards.run_group(cfg) == "train_quadratic"
    assert dashboards.artifact_name("hparam list", "quick/start") == "hparam-list-quick-start"


def test_a_multirun_job_is_named_by_its_overrides_and_grouped_with_its_sweep():
    """In a --multirun job Hydra's config says the mode, the sweep folder and the job's own
    overrides: the jobs of one sweep share a group apart from other sweeps, each named by what it varies."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from taskset_lab.cli import builtin_config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(builtin_config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name="entrance", overrides=["index=train_quadratic", "optimizer.lr=0.1",
                                                                "hydra.sweep.dir=/s/multirun_2026"],
                            return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.overrides.task = ["pipeline=TRAIN", "index=train_quadratic", "optimizer.lr=0.1", "logger=wandb"]
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    try:
        hydra_config.set_config(cfg)
        assert dashboards.run_group(cfg) == "train_quadratic/multirun_2026"
        assert dashboards.run_name(cfg) == "train_quadratic optimizer.lr=0.1"
    finally:
        hydra_config.cfg = before
    assert dashboards.run_group(cfg) == "train_quadratic"  # a single run: the experiment


# -- TRAIN ------------------------------------------------------------------------------------
def test_train_wandb_run_has_a_full_typed_config_ranked_summary_and_its_config_file(offline):
    out = offline / "run"
    summary = run_pipeline(compose("train_quadratic", ["debug=train", f"output_dir={out}", "logger=wandb",
                                                       "logger.wandb.project=tasklab-test"]))
    curve = pd.read_csv(out / "curve.csv")
    (run,) = offline_runs(out)
    info = read_offline_run(run)
    assert info["group"] == "train_quadratic" and info["job_type"] == "TRAIN" and info["name"] == "train_quadratic"
    config = info["config"]
    # the task config (sizes), the trainer's and learner's settings, the drawn optimizer values
    assert config["task_config.dims"] == 20 and config["task_family"] == "quadratic_family"
    assert config["trainer.max_steps"] == 20 and config["learner.eval_batches"] == 4
    assert isinstance(config["optimizer/lr"], float) and isinstance(config["total_steps"], int)
    assert len(config) > 60
    s = read_offline_summary(run)
    for split in SPLITS:
        assert s[f"final/{split}"] == pytest.approx(curve[split].iloc[-1], rel=1e-6)
        assert s[f"best/{split}"] == pytest.approx(curve[split].min(), rel=1e-6)
    assert s["diverged"] == 0 and s["steps"] == 20 == summary["steps"]
    assert "tasklab/config.yaml" in read_offline_files(run)
    saved = (run / "files" / "tasklab" / "config.yaml").read_text()
    assert saved == (out / "config.yaml").read_text() and "expr_name: train_quadratic" in saved
    table = read_offline_table(run, "curve")
    assert list(table.columns) == ["step", *SPLITS] and list(table["step"]) == list(curve["step"])


def read_tensorboard(folder):
    """The scalars (tag -> values) and the HParams experiment and session records of the event
    files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    scalars, experiment, session = {}, None, None
    for path in sorted(folder.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = [e.value for e in acc.Scalars(tag)]
        try:
            contents = acc.PluginTagToContent("hparams").values()
        except KeyError:  # an event file without the HParams record
            contents = []
        for content in contents:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.HasField("experiment"):
                experiment = data.experiment
            if data.HasField("session_start_info"):
                session = data.session_start_info
    return scalars, experiment, session


def test_train_tensorboard_hparams_hold_real_final_and_best_losses(tmp_path):
    out = tmp_path / "run"
    run_pipeline(compose("train_quadratic", ["debug=train", f"output_dir={out}", "logger=tensorboard",
                                             "optimizer.lr=0.05"]))
    curve = pd.read_csv(out / "curve.csv")
    scalars, experiment, session = read_tensorboard(out / "tensorboard")
    assert experiment is not None and session is not None
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert "hp_metric" not in metrics and "hp_metric" not in scalars
    assert {"final/test", "best/test", "final/valid_inner", "best/train", "diverged"} <= set(metrics)
    assert scalars["final/test"] == [pytest.approx(curve["test"].iloc[-1], rel=1e-6)]
    assert scalars["best/valid_inner"] == [pytest.approx(curve["valid_inner"].min(), rel=1e-6)]
    assert session.hparams["optimizer/lr"].number_value == pytest.approx(0.05)
    assert session.hparams["task_config.dims"].number_value == 20
    assert session.hparams["task_family"].string_value == "quadratic_family"


def test_wandb_that_cannot_start_is_one_line_and_the_run_is_kept(offline, monkeypatch, caplog):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("wandb.init broke\nwith a long traceback")

    monkeypatch.setattr(wandb, "init", broken_init)
    out = offline / "run"
    with caplog.at_level(logging.WARNING):
        summary = run_pipeline(compose("train_quadratic", ["debug=train", f"output_dir={out}", "logger=csv_wandb"]))
    assert summary["steps"] == 20 and json.loads((out / "summary.json").read_text())["steps"] == 20
    assert len(pd.read_csv(out / "curve.csv")) == 5
    assert pd.read_csv(out / "csv" / "metrics.csv")["loss/test"].notna().sum() == 5  # the other logger kept
    lines = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert len(lines) == 1 and "wandb.init broke" in lines[0] and "\n" not in lines[0]
    # a pipeline with a W&B run of its own (no Lightning logger) goes on the same way: CURVES
    caplog.clear()
    curves = offline / "curves_run"
    with caplog.at_level(logging.WARNING):
        summary = run_pipeline(compose("curves_quickstart", [
            "task_set=tiny", f"task_set.families={TWO_FAMILIES}", "search_space.num_configs=2", "total_steps=4",
            "eval_every=2", "learner.eval_batches=1", "progress=false", f"output_dir={curves}", "logger=wandb"]))
    assert summary["parts_done"] == 6 and json.loads((curves / "curves_summary.json").read_text())["runs"] == 12
    lines = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert len(lines) == 1 and "starting the run failed" in lines[0]
    assert not list(curves.rglob("offline-run-*"))


# -- HPARAM_LIST --------------------------------------------------------------------------------
HPARAM_TINY = ["task_set=tiny", f"task_set.families={TWO_FAMILIES}", "search_space.num_configs=6",
               "total_steps=10", "eval_every=5", "learner.eval_batches=1", "hparam_list.length=3",
               "hparam_list.folds=2", "hparam_list.tpe.enabled=false", "hparam_list.ks=[1,2]",
               "hparam_list.reference_lists.opt_list=2", "progress=false"]


def test_hparam_list_run_has_typed_list_evaluation_tables_plots_and_the_list_artifact(offline):
    out = offline / "run"
    result = run_pipeline(compose("quickstart", [*HPARAM_TINY, f"output_dir={out}", "logger=wandb",
                                                 "logger.wandb.project=tasklab-test"]))
    hlist = json.loads((out / "hparam_list.json").read_text())
    (run,) = offline_runs(out)
    info = read_offline_run(run)
    assert info["job_type"] == "HPARAM_LIST" and info["group"] == "quickstart"
    assert info["name"] == "quickstart nadamw hparam_list.length=3"  # what the run is, not only the experiment
    config = info["config"]
    assert config["hparam_list.length"] == 3 and config["hparam_list.ks"] == [1, 2]
    assert config["search_space.num_configs"] == 6 and config["store.tasks"] == len(hlist["tasks"])
    assert isinstance(config["hparam_list.cap"], float) and config["search_space.family"] == "nadamw"
    # the list: one typed column per hyperparameter, in the list's order
    entries = read_offline_table(run, "hparam_list/entries")
    hp_keys = sorted(hlist["entries"][0]["hparams"])
    assert list(entries.columns) == ["rank", "config_id", *hp_keys]
    assert list(entries["config_id"]) == [e["config_id"] for e in hlist["entries"]]
    assert entries["lr"].tolist() == pytest.approx([e["hparams"]["lr"] for e in hlist["entries"]])
    # the evaluation per fold and per held-out family, every method and k
    evaluation = pd.read_csv(out / "evaluation.csv")
    logged = read_offline_table(run, "hparam_list/evaluation")
    assert list(logged.columns) == list(evaluation.columns) and len(logged) == len(evaluation)
    assert set(logged["method"]) == {"list", "random", "best_single", "opt_list"} and set(logged["fold"]) >= {0, 1}
    families = read_offline_table(run, "hparam_list/families")
    assert set(families["held_out_family"]) == set(hlist["task_families"]) and set(families["scheme"]) == {"lofo"}
    summary = read_offline_summary(run)
    for family in hlist["task_families"]:
        assert summary[f"hparam_list/family/{family}_table/_type"] == "table-file"  # a line plot per family
    # summary scalars at the ks asked for (and not at the defaults)
    s = pd.read_csv(out / "summary.csv").set_index(["scheme", "method", "k"])["mean"]
    assert summary["hparam_list/cv/list/k2"] == pytest.approx(s[("cv", "list", 2)])
    assert summary["hparam_list/lofo/random/k1"] == pytest.approx(s[("lofo", "random", 1)])
    assert not any(k.endswith("/k10") for k in summary)
    # plots as images, the list and the result tables as artifacts
    images = {p.rsplit("/", 1)[-1].split("_")[0] for p in read_offline_files(run) if p.startswith("media/images/")}
    assert {"trials", "families"} <= images and len(result["plots"]) == 3
    artifacts = read_offline_artifacts(run)
    (list_artifact,) = [a for a in artifacts.values() if a["type"] == "hparam_list"]
    assert list_artifact["files"] == {"hparam_list.json": (out / "hparam_list.json").stat().st_size}
    (results,) = [a for a in artifacts.values() if a["type"] == "results"]
    assert {"evaluation.csv", "summary.csv", "speedup.csv", "config.yaml"} <= set(results["files"])


# -- CURVES -------------------------------------------------------------------------------------
def test_curves_shard_run_has_collection_config_task_table_sampled_curves_and_manifest(offline, monkeypatch):
    from taskset_lab.curves.store import read_curves, read_runs
    from taskset_lab.pipelines import curves_dashboard

    monkeypatch.setattr(curves_dashboard, "MAX_CONFIGS", 3)
    out = offline / "run"
    summary = run_pipeline(compose("curves_quickstart", [
        "task_set=tiny", f"task_set.families={TWO_FAMILIES}", "search_space.num_configs=5", "total_steps=10",
        "eval_every=5", "learner.eval_batches=1", "progress=false", "num_shards=2", "shard_index=0",
        f"output_dir={out}", "logger=wandb", "logger.wandb.project=tasklab-test"]))
    (run,) = offline_runs(out)
    info = read_offline_run(run)
    assert info["job_type"] == "CURVES" and info["group"] == "curves_quickstart"
    assert info["name"] == "curves_quickstart nadamw search_space.num_configs=5 shard 0/2"
    config = info["config"]
    assert config["collection.num_configs"] == 5 and config["collection.total_steps"] == 10
    assert config["collection.num_shards"] == 2 and config["collection.tasks"] == 6
    assert config["collection.optimizer"] == "nadamw" and isinstance(config["collection.divergence_factor"], float)
    # this shard's tasks (work items 0, 2 and 4 of six: one chunk per task), with their best losses
    runs, curves = read_runs(out / "curves"), read_curves(out / "curves")
    tasks = read_offline_table(run, "curves/tasks")
    assert list(tasks.columns) == ["task", "family", "configs", "replicas", "runs", "diverged_fraction",
                                   *[f"best_{s}" for s in SPLITS], "initial_train", "seconds"]
    order = list(dict.fromkeys(runs.sort_values("task")["task"]))
    assert len(tasks) == 3 == summary["parts_done"] and set(tasks["task"]) <= set(order)
    for row in tasks.itertuples():
        mine = curves[curves["task"] == row.task]
        assert row.best_valid_inner == pytest.approx(mine["valid_inner"].min(), rel=1e-6)
        assert row.diverged_fraction == pytest.approx((runs[runs["task"] == row.task]["status"] == "diverged").mean())
        assert row.configs == 5
    # the curves, three of five configs per task (first and last kept), every step
    sampled = read_offline_table(run, "curves/curves")
    assert list(sampled.columns) == ["task", "config_id", "replica", "step", *SPLITS]
    for task, part in sampled.groupby("task"):
        assert sorted(part["config_id"].unique()) == [0, 2, 4] and sorted(part["step"].unique()) == [0, 5, 10]
    s = read_offline_summary(run)
    assert s["curves/runs"] == 15 and s["curves/parts_done"] == 3 and s["progress/tasks_done"] == 3
    assert s["progress/config_steps"] == 150 and s["progress/config_steps_per_s"] > 0
    assert s[f"curves/plot/{tasks['task'].iloc[0]}_table/_type"] == "table-file"
    manifest = [a for a in read_offline_artifacts(run).values() if a["type"] == "curve_store_manifest"]
    assert len(manifest) == 1
    assert manifest[0]["files"]["manifest.json"] == (out / "curves" / "manifest.json").stat().st_size
    assert {"config_shard-0-of-2.yaml", "curves_summary_shard-0-of-2.json"} <= set(manifest[0]["files"])


# -- TRANSFER -----------------------------------------------------------------------------------
def test_transfer_trials_and_the_aggregate_run_compare_methods(offline, one_thread):
    from test_transfer import tiny, write_list

    list_path = write_list(offline / "hparam_list.json")
    out = offline / "run"
    for trial in ("list:0", "adam_default:0"):  # each run ends by aggregating what is finished
        run_pipeline(compose("transfer_quickstart", tiny(out, list_path, f"trial={trial}", "pair=pydoc_transformer",
                                                         "logger=wandb", "logger.wandb.project=tasklab-test")))
    trial_dir = out / "pydoc_transformer" / "trials" / "list-k000"
    (trial_run,) = offline_runs(trial_dir)
    info = read_offline_run(trial_run)
    assert info["group"] == "transfer_quickstart/pydoc_transformer" and info["job_type"] == "TRANSFER"
    config = info["config"]
    assert config["trial.method"] == "list" and config["trial.k"] == 0 and config["trial.pair"] == "pydoc_transformer"
    assert config["trial.optimizer.hparams.lr"] == pytest.approx(3e-3) and config["total_steps"] == 2
    record = json.loads((out / "pydoc_transformer" / "trials" / "list-k000.json").read_text())
    summary = read_offline_summary(trial_run)
    assert summary["final/test"] == pytest.approx(record["test"], rel=1e-6) and summary["diverged"] == 0
    # the aggregate run: the methods side by side, a plot per pair, the results as an artifact
    runs = [r for r in offline_runs(out) if not r.is_relative_to(out / "pydoc_transformer")]
    (agg,) = [r for r in runs if read_offline_run(r)["config"]["results.methods"] == 2]  # the second aggregate
    info = read_offline_run(agg)
    assert info["name"] == "transfer_quickstart/transfer" and info["group"] == "transfer_quickstart"
    assert info["config"]["results.methods"] == 2 and info["config"]["total_steps"] == 2
    compare = read_offline_table(agg, "transfer/compare")
    assert list(compare.columns) == ["pair", "method", "trials", "test_loss@k1", "test_loss@k3", "test_loss@k5",
                                     "valid_loss@k1", "valid_loss@k3", "valid_loss@k5", "diverged"]  # table_ks
    table = pd.read_csv(out / "transfer.csv").set_index(["method", "k"])
    rows = compare.set_index("method")
    assert set(rows.index) == {"list", "adam_default"} and rows.loc["list", "trials"] == 1
    assert rows.loc["adam_default", "test_loss@k1"] == pytest.approx(table.loc[("adam_default", 1), "test_loss"])
    assert rows.loc["list", "valid_loss@k1"] == pytest.approx(table.loc[("list", 1), "valid_loss"])
    assert pd.isna(rows.loc["list", "test_loss@k3"])  # one list trial only: null, not a number
    assert rows.loc["list", "diverged"] == 0
    s = read_offline_summary(agg)
    assert s["transfer/pydoc_transformer/list/k1"] == pytest.approx(table.loc[("list", 1), "test_loss"])
    assert s["transfer/plot/pydoc_transformer_table/_type"] == "table-file"
    assert any(p.startswith("media/images/transfer_plot") for p in read_offline_files(agg))
    (results,) = [a for a in read_offline_artifacts(agg).values() if a["type"] == "results"]
    assert {"transfer.csv", "summary.json", "pydoc_transformer/trials/list-k000.json",
            "pydoc_transformer/trials/adam_default-k000.json"} <= set(results["files"])


# -- MTL ------------------------------------------------------------------------------------------
MTL_TINY = ["trainer=debug", "total_steps=4", "eval_every=2", "mtl_dataset.pairs_per_image=1", "backbone.hidden=[16]"]


def test_mtl_runs_log_results_and_the_multirun_table_compares_methods(offline):
    from omegaconf import OmegaConf, open_dict

    from taskset_lab.mtl.compare import CompareTable

    sweep = offline / "sweep"
    cache = offline / "stl"
    for i, algorithm in enumerate(("ew", "uw")):
        run_pipeline(compose("mtl_quickstart", [*MTL_TINY, f"mtl_algorithm={algorithm}", f"output_dir={sweep / str(i)}",
                                                f"baseline_cache_dir={cache}", "logger=wandb",
                                                "logger.wandb.project=tasklab-test"]))
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    (run,) = offline_runs(sweep / "0")
    info = read_offline_run(run)
    assert info["job_type"] == "MTL" and info["group"] == "mtl_quickstart"
    assert info["config"]["total_steps"] == 4 and info["config"]["backbone.hidden"] == [16]
    s = read_offline_summary(run)
    assert s["delta_m"] == pytest.approx(summary["delta_m"]) and s["diverged"] == 0
    assert s["final/digit_sum/mse"] == pytest.approx(summary["final"]["3"]["mse"])
    compare = read_offline_table(run, "mtl/compare")
    assert list(compare["method"]) == ["STL (each task alone)", "EW + AdaTaskAdam"]
    assert compare["delta_m%"].tolist() == pytest.approx([0.0, summary["delta_m"]])
    images = {p.split("/")[-1].split("_")[0] for p in read_offline_files(run) if p.startswith("media/images/")}
    assert {"metrics", "rau"} <= images
    (results,) = [a for a in read_offline_artifacts(run).values() if a["type"] == "results"]
    assert {"metrics.csv", "final_metrics.csv", "delta_m.csv", "summary.json", "config.yaml"} <= set(results["files"])
    # the multirun's callback: one more run with every method side by side
    cfg = compose("mtl_quickstart", ["logger=wandb", "logger.wandb.project=tasklab-test"])
    with open_dict(cfg):
        cfg.hydra = OmegaConf.create({"sweep": {"dir": str(sweep)}})
    CompareTable().on_multirun_end(cfg)
    (cmp_run,) = [r for r in offline_runs(sweep) if r.parent.parent == sweep]
    info = read_offline_run(cmp_run)
    assert info["name"] == "mtl_quickstart/compare" and info["group"] == "mtl_quickstart/sweep"
    table = read_offline_table(cmp_run, "mtl/compare")
    assert list(table["method"]) == ["STL (each task alone)", "EW + AdaTaskAdam", "UW + AdaTaskAdam"]
    assert table["delta_m%"].tolist() == pytest.approx(pd.read_csv(sweep / "compare.csv")["delta_m%"].tolist())
    assert read_offline_summary(cmp_run)["delta_m%/UW + AdaTaskAdam"] == pytest.approx(
        json.loads((sweep / "1" / "summary.json").read_text())["delta_m"])
    (artifact,) = [a for a in read_offline_artifacts(cmp_run).values() if a["type"] == "results"]
    assert {"compare.csv", "0/summary.json", "1/summary.json"} <= set(artifact["files"])


def test_mtl_tensorboard_hparams_hold_the_final_task_metrics(tmp_path):
    out = tmp_path / "run"
    summary = run_pipeline(compose("mtl_quickstart", [*MTL_TINY, f"output_dir={out}", "logger=tensorboard",
                                                      "baseline=none"]))
    scalars, experiment, session = read_tensorboard(out / "tensorboard")
    assert experiment is not None and "hp_metric" not in scalars
    tags = {m.name.tag for m in experiment.metric_infos}
    assert {"final/digit_sum/mse", "final/left_digit/accuracy", "diverged"} <= tags
    assert scalars["final/digit_sum/mse"] == [pytest.approx(summary["final"][3]["mse"], rel=1e-6)]
    assert session.hparams["total_steps"].number_value == 4
