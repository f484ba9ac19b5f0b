"""HPARAM_LIST end to end: collect tiny curves, learn the list, evaluate, use an entry."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import compose
from taskset_lab.cli import run_pipeline
from taskset_lab.errors import TasklabError
from taskset_lab.optim import hparam_list_optimizer

TINY = ["task_set=tiny", "search_space.num_configs=8", "total_steps=20", "eval_every=5",
        "hparam_list.length=4", "hparam_list.folds=2", "hparam_list.tpe.trials=4", "hparam_list.ks=[1,3]",
        "progress=false", "hparam_list.reference_lists.opt_list=3"]


def test_quickstart_with_tiny_overrides(tmp_path):
    out = tmp_path / "run"
    summary = run_pipeline(compose("quickstart", [*TINY, f"output_dir={out}"]))
    hlist = json.loads((out / "hparam_list.json").read_text())
    assert hlist["optimizer"] == "nadamw" and len(hlist["entries"]) == 4
    assert len({e["config_id"] for e in hlist["entries"]}) == 4
    assert len(hlist["tasks"]) == 7
    norm = pd.read_parquet(out / "normalized_losses.parquet")
    assert {"task", "config_id", "split", "value"} <= set(norm.columns)
    assert norm["value"].between(0, 1.5).all()
    evaluation = pd.read_csv(out / "evaluation.csv")
    assert {"list", "random", "best_single", "tpe"} <= set(evaluation["method"])
    assert "list" in summary["table"] and "random" in summary["table"]
    header = next(line for line in summary["table"].splitlines() if line.startswith("method"))
    assert header.split()[1:] == ["k=1", "k=3"]  # the table follows hparam_list.ks
    assert "opt_list" in set(evaluation["method"])  # opt_list's first entries, normalized together
    # an entry of the learned list is a ready optimizer that steps (two steps: a warmup's first
    # update has rate 0, as in opt_list's published schedule)
    p = torch.nn.Parameter(torch.ones(3))
    opt = hparam_list_optimizer([p], out / "hparam_list.json", index=0, total_steps=10)
    for _ in range(2):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
    assert not torch.equal(p.detach(), torch.ones(3))


def test_complete_store_by_curves_dir_still_gets_its_reference_list(tmp_path):
    """A finished CURVES store opened with curves_dir= is learned from as it is, and the
    index's collect_if_missing=true records opt_list on the store's own tasks: the table has
    its row (it used to be dropped, with a warning recommending the flag already set)."""
    store = tmp_path / "c" / "curves"
    run_pipeline(compose("curves_quickstart", ["task_set=tiny", "search_space.num_configs=8", "total_steps=20",
                                               "eval_every=5", "progress=false", f"output_dir={tmp_path / 'c'}"]))
    parts = {p.name: p.stat().st_mtime_ns for p in (store / "curves").glob("*.parquet")}
    assert len(parts) == 7 and not (store / "lists").exists()
    summary = run_pipeline(compose("quickstart", [*TINY, f"output_dir={tmp_path / 'h'}", f"curves_dir={store}"]))
    assert any(line.startswith("opt_list ") for line in summary["table"].splitlines())
    assert "opt_list" in set(pd.read_csv(tmp_path / "h" / "evaluation.csv")["method"])
    assert len(list((store / "lists" / "opt_list" / "curves").glob("*.parquet"))) == 7  # on the store's tasks
    assert {p.name: p.stat().st_mtime_ns for p in (store / "curves").glob("*.parquet")} == parts  # not rerun


def test_missing_store_without_collection_is_a_clear_error(tmp_path):
    cfg = compose("quickstart", [*TINY, f"output_dir={tmp_path}", "collect_if_missing=false"])
    with pytest.raises(TasklabError, match="no curve store"):
        run_pipeline(cfg)


def test_bad_split_is_named(tmp_path):
    cfg = compose("quickstart", [*TINY, f"output_dir={tmp_path}", "hparam_list.select_split=nope"])
    with pytest.raises(TasklabError, match="hparam_list.select_split"):
        run_pipeline(cfg)


def test_more_folds_than_tasks_is_refused_not_cut(tmp_path):
    out = tmp_path / "run"
    run_pipeline(compose("quickstart", [*TINY, f"output_dir={out}"]))
    cfg = compose("quickstart", [*TINY, f"output_dir={tmp_path / 'again'}", f"curves_dir={out / 'curves'}",
                                 "hparam_list.folds=100"])
    with pytest.raises(TasklabError, match=r"hparam_list.folds.*100 folds need at least as many tasks; the store has 7"):
        run_pipeline(cfg)


def test_tasks_where_no_run_beats_initialization_are_warned_about(tmp_path):
    import numpy as np

    from taskset_lab.hparam_list.checks import WARNINGS_FILE, check_curves, tasks_without_progress

    rows = []
    for task, finals in (("learns", [0.5, 0.9]), ("flat", [1.0, 1.0 + 1e-7]), ("worse", [1.2, np.nan])):
        for config, final in enumerate(finals):
            for step, value in ((0, 1.0), (10, final)):
                rows.append({"task": task, "config_id": config, "replica": 0, "step": step,
                             "valid_inner": value, "test": value})
    curves = pd.DataFrame(rows)
    runs = pd.DataFrame({"task": curves["task"], "config_id": curves["config_id"], "replica": 0,
                         "status": "ok"}).drop_duplicates()
    assert tasks_without_progress(curves, "test") == ["flat", "worse"]
    warnings = check_curves(curves, runs, tmp_path, "valid_inner", "test", tmp_path)
    assert sum("below the initial value" in w for w in warnings) == 2
    assert "task flat" in (tmp_path / WARNINGS_FILE).read_text()


def test_shards_collect_then_one_run_learns_with_the_scaling_table(tmp_path):
    """Shards of a parallel collection only collect (no list from a part of the store); the
    same command without shards then learns from the whole store, collects nothing more and
    writes the scaling table, whose full-size row is the main table's cv row."""
    store = tmp_path / "store"
    common = [*TINY, f"curves_dir={store}", "hparam_list.scaling.configs=[4,8]",
              "hparam_list.scaling.horizons=[10,null]", "~hparam_list.reference_lists"]
    for shard in (0, 1):
        out = tmp_path / f"shard{shard}"
        summary = run_pipeline(compose("quickstart", [*common, f"output_dir={out}", "num_shards=2",
                                                      f"shard_index={shard}"]))
        assert summary == {"collected_shard": shard, "num_shards": 2, "curves_dir": str(store)}
        assert not (out / "hparam_list.json").exists()
    parts = sorted(p.name for p in (store / "curves").glob("*.parquet"))
    assert len(parts) == 7  # 7 tasks x one chunk of 8 configs, split over the two shards
    out = tmp_path / "learn"
    run_pipeline(compose("quickstart", [*common, f"output_dir={out}"]))
    assert sorted(p.name for p in (store / "curves").glob("*.parquet")) == parts  # nothing collected again
    hlist = json.loads((out / "hparam_list.json").read_text())
    assert len(hlist["entries"]) == 4
    # the list file records its collection and its held-out results (what a shipped list states)
    assert hlist["collection"]["total_steps"] == 20 and hlist["collection"]["num_configs"] == 8
    assert hlist["collection"]["optimizer"] == "nadamw"
    scaling = pd.read_csv(out / "scaling.csv")
    assert sorted(set(scaling["configs"])) == [4, 8] and sorted(set(scaling["horizon"])) == [10, 20]
    assert scaling["list"].between(0, 1.5).all() and scaling["random"].between(0, 1.5).all()
    summary = pd.read_csv(out / "summary.csv")
    full = scaling[(scaling["configs"] == 8) & (scaling["horizon"] == 20)].set_index("k")
    for method in ("list", "random"):
        cv = summary[(summary["scheme"] == "cv") & (summary["method"] == method)].set_index("k")
        for k in (1, 3):
            assert full.loc[k, method] == pytest.approx(cv.loc[k, "mean"], abs=1e-12), (method, k)
            assert hlist["results"]["cv"][method][str(k)] == pytest.approx(cv.loc[k, "mean"], abs=1e-12)


def test_a_bad_scaling_setting_is_one_line(tmp_path):
    cfg = compose("quickstart", [*TINY, f"output_dir={tmp_path}", "hparam_list.scaling.configs=[0]"])
    with pytest.raises(TasklabError, match="hparam_list.scaling"):
        run_pipeline(cfg)


def test_the_headline_index_asks_for_what_the_headline_states(tmp_path):
    """index=taskset_cpu: TaskSet's 1000 nadamw_grid configs, at least 100 TaskSet tasks with
    every sampled family represented, 300 steps, k up to 100, the scaling table; it passes the
    pipeline's checks as composed (nothing runs)."""
    from taskset_lab.pipelines import get_pipeline
    from taskset_lab.pipelines.curves import task_specs
    from taskset_lab.tasks.registry import released_samplers

    cfg = compose("taskset_cpu", [f"output_dir={tmp_path}", f"curves_dir={tmp_path / 'store'}"])
    get_pipeline("HPARAM_LIST")(cfg).sanity_check()
    specs = task_specs(cfg)
    families = {spec.to_dict().get("name", "").rsplit("_seed", 1)[0] for spec in specs}
    assert len(specs) >= 100 and len({s.to_dict()["name"] for s in specs}) == len(specs)
    assert set(released_samplers()) <= families  # every TaskSet family TaskSet released configs of
    assert cfg.search_space.family == "nadamw" and cfg.search_space.num_configs == 1000
    assert cfg.total_steps >= 300 and max(cfg.hparam_list.ks) == 100 and cfg.hparam_list.length >= 100
    assert list(cfg.hparam_list.scaling.configs) == [32, 100, 300, 1000]
