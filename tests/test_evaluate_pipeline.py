"""EVALUATE end to end on two tiny tasks: the known ranking, a diverging optimizer as a miss,
the population path equal to the one-at-a-time path (float64), the baseline store reused and
refused when its horizon differs, bad input as one line (exit 2, nothing written), a kill -9
then the same command completing the run without redoing finished work, and the scoring
recomputed by hand from the stored curves."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from conftest import compose, kill_tasklab, one_error_line, run_tasklab
from taskset_lab.cli import run_pipeline
from taskset_lab.curves.store import list_parts, read_curves, read_runs
from taskset_lab.evaluate.entries import parse_entries
from taskset_lab.evaluate.metrics import AdamEnvelope, ema

TASKS = "task_set.fixed=[TwoD_Bowl10,quadratic_family_seed8]"
SMALL = [TASKS, "total_steps=20", "eval_every=5", "seeds=2", "learner.eval_batches=1", "n_jobs=1",
         "progress=false", "plot_tasks=2", "learner.dtype=float64", "learner.device=cpu", "task_split.by=none"]
ENTRIES = ("+optimizers={"
           "frozen: {_target_: torch.optim.Adam, lr: 1e-9},"
           "blown: {_target_: torch.optim.SGD, lr: 1e6},"
           "adam1p_alone: {_target_: taskset_lab.optim.Adam1p, lr: 0.03, total_steps: 20},"
           "adam1p_population: {family: adam1p, hparams: {lr: 0.03}},"
           "adam_tuned: {list: adam_lr_grid, k: 15},"
           "opt_list@3: {list: opt_list, k: 3},"
           "nadamw@4x2: {search_space: nadamw, trials: 4, studies: 2}}")


def _args(out, baselines=None, entries=ENTRIES):
    return [*SMALL, "~optimizers", entries, f"output_dir={out}", f"baselines_dir={baselines or out / 'baselines'}"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    summary = run_pipeline(compose("evaluate_quickstart", _args(out)))
    return out, summary


def _frame(out):
    return pd.read_parquet(out / "per_task.parquet")


def test_a_known_ranking_is_recovered_and_a_diverging_optimizer_is_a_miss(evaluated):
    out, summary = evaluated
    frame = _frame(out)
    assert len(frame) == 7 * 2 * 2  # entries x tasks x seeds
    board = pd.read_csv(out / "leaderboard.csv").set_index("optimizer")
    # Adam at 1e-9 never leaves its start: speedup ~0, normalized loss ~1, ranked below every
    # optimizer that learns
    frozen = frame[frame["optimizer"] == "frozen"]
    assert frozen["speedup"].max() < 0.2 and (frozen["normalized_test"] > 0.9).all()
    learners = ["adam_tuned", "adam1p_population", "opt_list@3", "nadamw@4x2"]
    assert (board.loc[learners, "speedup_iqm"] > board.loc["frozen", "speedup_iqm"]).all()
    assert board.index[-1] in ("frozen", "blown")
    # SGD at 1e6 diverges: a miss everywhere, never a good score
    blown = frame[frame["optimizer"] == "blown"]
    assert (blown["diverged"] == 1.0).all() and (blown["speedup"] == 0.0).all()
    assert np.isinf(blown["steps_to_target"]).all() and (blown["normalized_test"] == 1.5).all()
    assert board.loc["blown", "diverged_fraction"] == 1.0 and board.loc["blown", "profile_score"] == 0.0
    # Adam tuned by the select split over the reference's own grid scores about 1 against it
    assert 0.5 < board.loc["adam_tuned", "speedup_median"] <= 1.0 + 1e-9
    for name, row in board.iterrows():
        assert row["speedup_iqm_low"] <= row["speedup_iqm"] <= row["speedup_iqm_high"], name
    assert set(summary) >= {"leaderboard", "tasks", "collection", "profile_score_tuned_adam"}
    assert summary["profile_score_tuned_adam"] > 0
    for name in ("leaderboard.md", "families.csv", "win_rates.csv", "per_task.csv", "profiles.png",
                 "families.png", "curves.png", "evaluation_summary.json"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "leaderboard.md").read_text()
    assert "| frozen |" in md and "tuned Adam" in md


def test_population_path_equals_one_config_at_a_time(evaluated):
    """The same adam1p config on the population engine and as a torch.optim class, float64."""
    frame = _frame(evaluated[0]).set_index(["task", "seed"])
    alone, population = (frame[frame["optimizer"] == n].sort_index() for n in ("adam1p_alone", "adam1p_population"))
    for column in ("final_train", "final_test", "best_test", "speedup", "normalized_test", "steps_to_target"):
        np.testing.assert_allclose(alone[column].to_numpy(), population[column].to_numpy(), rtol=1e-9,
                                   err_msg=column)


def test_scores_recomputed_by_hand_from_the_stored_curves(evaluated):
    """The frozen entry's speedup and the tuned entry's pick, recomputed from the raw stores."""
    out, _ = evaluated
    frame = _frame(out)
    task = "TwoD_Bowl10"
    adam = read_curves(out / "baselines", tasks=task).sort_values(["config_id", "replica", "step"])
    steps = np.sort(adam["step"].unique()).astype(float)
    train = adam["train"].to_numpy().reshape(15, 2, len(steps))
    envelope = AdamEnvelope.from_curves(steps, train)
    entry = parse_entries({"frozen": {"_target_": "torch.optim.Adam", "lr": 1e-9}})[0]
    mine = read_curves(out / "curves" / entry.label(), tasks=task).sort_values(["replica", "step"])
    for seed in (0, 1):
        curve = mine[mine["replica"] == seed]["train"].to_numpy()
        expected = float(envelope.speedup(ema(curve)[-1], steps[-1]))
        got = frame[(frame["optimizer"] == "frozen") & (frame["task"] == task) & (frame["seed"] == seed)]
        assert got["speedup"].item() == pytest.approx(expected, rel=1e-12)
    # the tuned entry picks, per seed, the learning rate with the lowest valid_inner loss among
    # the runs that did not diverge
    valid = adam["valid_inner"].to_numpy().reshape(15, 2, len(steps))
    runs = read_runs(out / "baselines", tasks=task).sort_values(["config_id", "replica"])
    diverged = (runs["status"].to_numpy() == "diverged").reshape(15, 2)
    for seed in (0, 1):
        score = np.where(np.isnan(valid[:, seed]), np.inf, valid[:, seed]).min(axis=1)
        best = int(np.argmin(np.where(diverged[:, seed], np.inf, score)))
        got = frame[(frame["optimizer"] == "adam_tuned") & (frame["task"] == task) & (frame["seed"] == seed)]
        assert got["config"].item() == best


def test_a_run_that_diverged_is_never_picked_over_one_that_did_not():
    """pick_configs: per study and seed the lowest select loss wins, NaN and diverged runs never
    (config 0 was best before it diverged); a study where all diverged keeps its first config."""
    from taskset_lab.evaluate.report import pick_configs

    nan = np.nan
    valid = np.array([[[1.0, 0.1, nan]], [[1.0, 0.5, 0.4]], [[1.0, 0.6, 0.3]],  # study 0: configs 0-2
                      [[1.0, nan, nan]], [[1.0, 2.0, 3.0]]])                     # study 1: configs 3-4
    diverged = np.array([[True], [False], [False], [True], [True]])
    assert pick_configs(valid, 3, 1, diverged).tolist() == [[2]]
    assert pick_configs(valid, 3, 1).tolist() == [[0]]  # without the divergence record: the early low
    assert pick_configs(valid[3:], 2, 1, diverged[3:]).tolist() == [[0]]


def test_rerun_reuses_everything_and_baselines_are_shared(evaluated, tmp_path):
    out, first = evaluated
    # a second evaluation naming the same baselines_dir trains no baseline run
    again = run_pipeline(compose("evaluate_quickstart", _args(tmp_path / "second", out / "baselines",
                                                              "+optimizers={frozen: {_target_: torch.optim.Adam, lr: 1e-9}}")))
    assert again["collection"]["parts_skipped"] >= 4  # the 2 tasks x 2 seeds of the baseline
    second = pd.read_parquet(tmp_path / "second" / "per_task.parquet")
    firsts = _frame(out)
    np.testing.assert_allclose(second.sort_values(["task", "seed"])["speedup"].to_numpy(),
                               firsts[firsts["optimizer"] == "frozen"].sort_values(["task", "seed"])["speedup"]
                               .to_numpy(), rtol=1e-12)


def _nothing_but_hydra(out) -> bool:
    """Nothing computed or written under ``out`` (Hydra's own record of the command aside)."""
    return not out.exists() or {p.name for p in out.iterdir()} <= {".hydra"}


def test_an_unknown_optimizer_class_is_one_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "run"
    proc = run_tasklab(["pipeline=EVALUATE", "index=evaluate_quickstart", *SMALL, "~optimizers",
                        "+optimizers={x: {_target_: torch.optim.NoSuchOptimizer, lr: 0.1}}",
                        f"output_dir={out}", f"baselines_dir={tmp_path / 'baselines'}"], tmp_path)
    assert "cannot import 'torch.optim.NoSuchOptimizer'" in one_error_line(proc)
    assert _nothing_but_hydra(out) and not (tmp_path / "baselines").exists()


@pytest.mark.parametrize("entry,expected", [
    ("{x: {_target_: torch.nn.Linear}}", "is not a torch.optim.Optimizer class"),
    ("{x: {_target_: torch.optim.SGD, lr: -1.0}}", "fails: ValueError"),
    ("{x: {family: nadamw, hparams: {lr: -1.0}}}", "optimizers.x.hparams"),
    ("{x: {list: opt_list, k: 5000}}", "has 1000 entries"),
    ("{x: {search_space: nadamw, trials: 0}}", "optimizers.x.trials"),
    ("{x: {search_space: nadamw, trials: 2, colour: red}}", "optimizers.x.colour"),
    ("{x: {list: opt_list, family: nadamw}}", "exactly one of"),
])
def test_bad_entries_are_refused_before_anything_runs(tmp_path, entry, expected):
    from taskset_lab.errors import ConfigError
    from taskset_lab.pipelines.evaluate import EvaluatePipeline

    cfg = compose("evaluate_quickstart", [*SMALL, "~optimizers", f"+optimizers={entry}", f"output_dir={tmp_path}/run",
                                          f"baselines_dir={tmp_path}/baselines"])
    with pytest.raises(ConfigError, match=re.escape(expected)):
        EvaluatePipeline(cfg).sanity_check()
    assert not list(tmp_path.iterdir())


def test_a_baseline_store_of_another_horizon_is_refused(evaluated, tmp_path):
    out, _ = evaluated
    before = sorted(p.name for p in (out / "baselines" / "curves").iterdir())
    proc = run_tasklab(["pipeline=EVALUATE", "index=evaluate_quickstart", *SMALL, "total_steps=30",
                        f"output_dir={tmp_path / 'run'}", f"baselines_dir={out / 'baselines'}"], tmp_path)
    line = one_error_line(proc)
    assert "baselines_dir" in line and "total_steps=30" in line
    assert _nothing_but_hydra(tmp_path / "run")
    assert sorted(p.name for p in (out / "baselines" / "curves").iterdir()) == before


def test_killed_then_the_same_command_completes_without_redoing_finished_work(evaluated, tmp_path):
    """kill -9 while the torch.optim entries train; the same command then finishes, keeps the
    parts written before the kill untouched and reports what an uninterrupted run reports."""
    ref_out, _ = evaluated
    out = tmp_path / "run"
    torch_entries = ("+optimizers={frozen: {_target_: torch.optim.Adam, lr: 1e-9}, "
                     "blown: {_target_: torch.optim.SGD, lr: 1e6}}")
    args = ["pipeline=EVALUATE", "index=evaluate_quickstart", *_args(out, ref_out / "baselines", torch_entries)]
    store = out / "curves"
    rc, _, stderr = kill_tasklab(args, tmp_path,
                                 ready=lambda: sum(len(list_parts(p)) for p in store.glob("*")) >= 1)
    assert rc == -9, "the run finished before it could be killed: " + stderr[-1000:]
    kept = {p: p.stat().st_mtime_ns for p in store.glob("*/curves/*.parquet")}
    assert kept
    proc = run_tasklab(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished parts were not trained again
    resumed, reference = _frame(out), _frame(ref_out)
    reference = reference[reference["optimizer"].isin(["frozen", "blown"])]
    key = ["optimizer", "task", "seed"]
    pd.testing.assert_frame_equal(resumed.sort_values(key).reset_index(drop=True),
                                  reference.sort_values(key).reset_index(drop=True))
    summary = json.loads((out / "evaluation_summary.json").read_text())
    assert summary["tasks"] == 2 and math.isfinite(summary["profile_score_tuned_adam"])


def test_the_benchmark_reports_finite_ratios_against_its_peers(capsys):
    """One quick run of benchmarks/bench_evaluate.py: every rate measured, the ratios finite."""
    from benchmark_module import load_benchmark

    report = load_benchmark("bench_evaluate").main(["--steps", "10", "--seeds", "1", "--k", "2", "--jobs", "1",
                                                   "--tasks", "TwoD_Bowl10", "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report
    for key in ("curves_cfg_steps_per_s", "family_cfg_steps_per_s", "plain_cfg_steps_per_s", "torch_cfg_steps_per_s"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    assert math.isfinite(report["family_over_curves"]) and math.isfinite(report["torch_over_plain"])


def test_wandb_run_holds_the_leaderboard_tables_plots_and_results(evaluated, tmp_path, monkeypatch):
    """logger=wandb (offline): the run's typed config, the leaderboard and per-task tables equal
    the files, the plots, the summary values and the results artifact."""
    from wandb_offline import (offline_runs, read_offline_artifacts, read_offline_files, read_offline_run,
                               read_offline_summary, read_offline_table)

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    ref_out, _ = evaluated
    out = tmp_path / "run"
    run_pipeline(compose("evaluate_quickstart", [*_args(out, ref_out / "baselines",
                                                        "+optimizers={frozen: {_target_: torch.optim.Adam, lr: 1e-9}, "
                                                        "tuned: {list: adam_lr_grid, k: 15}}"),
                                                  "logger=wandb", "logger.wandb.project=tasklab-test"]))
    (run,) = offline_runs(out)
    info = read_offline_run(run)
    assert info["job_type"] == "EVALUATE" and info["group"] == "evaluate_quickstart"
    assert info["config"]["total_steps"] == 20 and info["config"]["seeds"] == 2
    assert info["config"]["optimizers.frozen.lr"] == 1e-9
    board = read_offline_table(run, "evaluate/leaderboard")
    pd.testing.assert_frame_equal(board, pd.read_csv(out / "leaderboard.csv"), check_dtype=False)
    per_task = read_offline_table(run, "evaluate/per_task")
    assert len(per_task) == 2 * 2 * 2 and set(per_task["optimizer"]) == {"frozen", "tuned"}
    summary = read_offline_summary(run)
    assert summary["tuned/speedup_iqm"] == pytest.approx(board.set_index("optimizer").loc["tuned", "speedup_iqm"])
    assert any(p.startswith("media/images/evaluate/profiles") for p in read_offline_files(run))
    (artifact,) = [a for a in read_offline_artifacts(run).values() if a["type"] == "evaluation"]
    assert artifact["files"]["leaderboard.csv"] == (out / "leaderboard.csv").stat().st_size


def test_a_list_learned_on_the_train_tasks_is_scored_on_the_test_tasks(tmp_path):
    """learn_list: learned (HPARAM_LIST's greedy list) on the split's train tasks only, written as
    hparam_list.json, scored on the test tasks; the report holds only the test tasks."""
    from taskset_lab.optim.hparam_list import load_hparam_list

    out = tmp_path / "run"
    run_pipeline(compose("evaluate_quickstart", [
        *_args(out, tmp_path / "baselines", "+optimizers={learned: {learn_list: nadamw, configs: 4, k: 2}}"),
        "task_set.fixed=[TwoD_Bowl10,mlp_ae_family_seed25,quadratic_family_seed8,losg_tasks_family_seed15]",
        "task_split.by=names", "task_split.test=[TwoD_Bowl10,mlp_ae_family_seed25]", "misc.offline_data=substitute"]))
    listed = load_hparam_list(out / "entries" / "learned.hparam_list.json")
    assert sorted(listed["tasks"]) == ["losg_tasks_family_seed15", "quadratic_family_seed8"]
    assert listed["optimizer"] == "nadamw" and len(listed["entries"]) == 2
    assert {e["config_id"] for e in listed["entries"]} <= set(range(4))
    frame = _frame(out)
    # a task on an offline stand-in is recorded (and reported) under its stand-in name
    assert set(frame["task"]) == {"TwoD_Bowl10", "mlp_ae_family_seed25_on_digits"} and set(frame["split"]) == {"test"}
    assert set(frame["config"]) <= {0, 1}  # the list's first two entries


def test_a_learned_list_without_train_tasks_is_refused():
    from taskset_lab.errors import ConfigError
    from taskset_lab.pipelines.evaluate import EvaluatePipeline

    cfg = compose("evaluate_quickstart", [*SMALL, "~optimizers", "+optimizers={l: {learn_list: nadamw, k: 2}}",
                                          "task_split.by=none", "output_dir=/tmp/unused"])
    with pytest.raises(ConfigError, match="train tasks"):
        EvaluatePipeline(cfg).sanity_check()


def test_a_shipped_learned_optimizer_is_an_entry_like_any_torch_optimizer():
    """{_target_: taskset_lab.optim.LearnedOptimizer, checkpoint: <shipped name>} is checked and
    built like any torch.optim class; an unknown checkpoint is refused before anything runs."""
    import torch

    from taskset_lab.errors import TasklabError
    from taskset_lab.optim import LearnedOptimizer, learned_optimizer_names

    name = learned_optimizer_names()[0]
    entry = parse_entries({"lopt": {"_target_": "taskset_lab.optim.LearnedOptimizer", "checkpoint": name}})[0]
    assert entry.form == "torch" and not entry.on_population
    param = torch.nn.Parameter(torch.ones(3))
    opt = entry.factory()([param])
    assert isinstance(opt, LearnedOptimizer)
    param.grad = torch.ones(3)
    opt.step()
    assert not torch.equal(param.detach(), torch.ones(3))  # it moved the parameter
    with pytest.raises(TasklabError, match="no-such-checkpoint"):
        parse_entries({"lopt": {"_target_": "taskset_lab.optim.LearnedOptimizer", "checkpoint": "no-such-checkpoint"}})
