"""The scaling table (hparam_list/scaling.py) recomputed by an independent route, the
collection's own curves as a reference list (hparam_list/references.py), and the cost-based
task selection of a CPU-sized collection (curves/budget.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from taskset_lab.curves.budget import select_within_budget
from taskset_lab.hparam_list.evaluate import cv_folds
from taskset_lab.hparam_list.references import collection_ids, from_collection
from taskset_lab.hparam_list.scaling import restrict_curves, scaling_settings, scaling_table

STEPS = [0, 10, 20, 30]


def synthetic_store(tasks: int = 7, configs: int = 9, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves and runs as a store exports them: decreasing noisy curves, two runs that diverge
    (one after step 20, one at step 10)."""
    rng = np.random.default_rng(seed)
    c_rows, r_rows = [], []
    for t in range(tasks):
        name, family = f"task{t}", f"fam{t % 2}"
        for c in range(configs):
            rate = rng.uniform(0.0, 0.2)
            diverged = 25 if (t, c) == (1, 2) else 10 if (t, c) == (3, 4) else -1
            for s in STEPS:
                base = 5.0 * np.exp(-rate * s)
                vals = {split: base + rng.uniform(0, 0.3) for split in ("train", "valid_inner", "valid_outer", "test")}
                if s == 0:
                    vals = {k: 5.0 + 0.01 * rng.uniform() for k in vals}
                if diverged >= 0 and s >= diverged:
                    vals = {k: np.nan for k in vals}
                c_rows.append({"task": name, "task_family": family, "optimizer": "nadamw", "config_id": c,
                               "replica": 0, "step": s, **vals})
            r_rows.append({"task": name, "task_family": family, "optimizer": "nadamw", "config_id": c, "replica": 0,
                           "status": "diverged" if diverged >= 0 else "ok", "diverged_step": diverged})
    return pd.DataFrame(c_rows), pd.DataFrame(r_rows)


def by_hand(curves: pd.DataFrame, configs: int, horizon: int, cap: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Normalized select (valid_inner) / report (test) matrices [T, configs], written out:
    best step by select, init = median at step 0, best = lowest reduced value of a run that
    stayed finite up to the horizon, clipped to [0, cap]; a run non-finite there gets cap."""
    tasks = sorted(curves["task"].unique())
    sel = np.zeros((len(tasks), configs))
    rep = np.zeros((len(tasks), configs))
    for i, task in enumerate(tasks):
        part = curves[(curves["task"] == task) & (curves["config_id"] < configs) & (curves["step"] <= horizon)]
        init = {split: part[part["step"] == 0][split].median() for split in ("valid_inner", "test")}
        raw_s, raw_r = np.full(configs, np.nan), np.full(configs, np.nan)
        for c in range(configs):
            run = part[part["config_id"] == c].sort_values("step")
            if run[["valid_inner", "test"]].isna().any().any():
                continue  # diverged within the horizon
            j = int(np.argmin(run["valid_inner"].to_numpy()))
            raw_s[c], raw_r[c] = run["valid_inner"].iloc[j], run["test"].iloc[j]
        for raw, out, split in ((raw_s, sel, "valid_inner"), (raw_r, rep, "test")):
            best = np.nanmin(raw)
            out[i] = np.where(np.isnan(raw), cap, np.clip((raw - best) / (init[split] - best), 0.0, cap))
    return sel, rep


def brute_greedy(sel: np.ndarray, length: int) -> list[int]:
    """Every column scored from scratch at every step; once none improves, the unchosen column
    of lowest mean loss (the rule hparam_list/greedy.py documents)."""
    chosen: list[int] = []
    for _ in range(length):
        best_so_far = sel[:, chosen].min(axis=1) if chosen else np.full(sel.shape[0], np.inf)
        scores = [np.inf if j in chosen else np.minimum(best_so_far, sel[:, j]).mean() for j in range(sel.shape[1])]
        if chosen and min(scores) >= best_so_far.mean() - 1e-12:
            scores = [np.inf if j in chosen else sel[:, j].mean() for j in range(sel.shape[1])]
        chosen.append(int(np.argmin(scores)))
    return chosen


def list_value(sel: np.ndarray, rep: np.ndarray, order: list[int], k: int) -> float:
    """Mean over tasks of the report value of the best-by-select among the first k entries."""
    tried = order[:k]
    return float(np.mean([rep[t, tried[int(np.argmin(sel[t, tried]))]] for t in range(sel.shape[0])]))


def random_value(sel: np.ndarray, rep: np.ndarray, k: int) -> float:
    """Exact expectation over every k-subset (ties to the lower config id, as a subset is tried in order)."""
    per_task = []
    for t in range(sel.shape[0]):
        vals = [rep[t, s[int(np.argmin(sel[t, list(s)]))]] for s in itertools.combinations(range(sel.shape[1]), k)]
        per_task.append(np.mean(vals))
    return float(np.mean(per_task))


def test_scaling_table_equals_an_independent_computation():
    curves, runs = synthetic_store()
    table = scaling_table(curves, runs, "nadamw", configs=[5, 9], horizons=[20, None], ks=[1, 3], folds=3, seed=0)
    assert sorted(set(table["configs"])) == [5, 9] and sorted(set(table["horizon"])) == [20, 30]
    for (horizon, n), part in table.groupby(["horizon", "configs"]):
        sel, rep = by_hand(curves, n, horizon)
        folds = cv_folds(sel.shape[0], 3, 0)
        for k in (1, 3):
            lists, rands = [], []
            for held in folds:
                train = np.setdiff1d(np.arange(sel.shape[0]), held)
                order = brute_greedy(sel[train], k)
                lists.append(list_value(sel[held], rep[held], order, k))
                rands.append(random_value(sel[held], rep[held], k))
            row = part[part["k"] == k].iloc[0]
            assert row["list"] == pytest.approx(np.mean(lists), abs=1e-9), (horizon, n, k)
            assert row["random"] == pytest.approx(np.mean(rands), abs=1e-9), (horizon, n, k)
        # random trials to match list@k: the first k' whose random value reaches it, interpolated
        rc = [np.mean([random_value(sel[h], rep[h], kk) for h in folds]) for kk in range(1, n + 1)]
        for k in (1, 3):
            target = float(part[part["k"] == k]["list"].iloc[0])
            hit = next((i for i, v in enumerate(rc) if v <= target + 1e-12), None)
            got = float(part[part["k"] == k]["random_trials"].iloc[0])
            if hit is None:
                assert np.isnan(got)
            elif hit == 0:
                assert got == 1.0
            else:
                assert got == pytest.approx(hit + (rc[hit - 1] - target) / (rc[hit - 1] - rc[hit]), abs=1e-6)


def test_restricting_the_horizon_keeps_a_run_that_diverged_later():
    curves, runs = synthetic_store()
    c, r = restrict_curves(curves, runs, configs=5, horizon=20)
    assert c["step"].max() == 20 and c["config_id"].max() == 4
    late = r[(r["task"] == "task1") & (r["config_id"] == 2)].iloc[0]
    early = r[(r["task"] == "task3") & (r["config_id"] == 4)].iloc[0]
    assert late["status"] == "ok" and early["status"] == "diverged"
    assert runs[(runs["task"] == "task1") & (runs["config_id"] == 2)]["status"].iloc[0] == "diverged"  # not mutated


def test_scaling_settings_refuse_bad_values():
    from omegaconf import OmegaConf

    assert scaling_settings(OmegaConf.create({"configs": [32, 100], "horizons": [100, None]})) == ([32, 100], [100, None])
    assert scaling_settings(None) == ([], [])
    with pytest.raises(ValueError, match="positive integers"):
        scaling_settings(OmegaConf.create({"configs": [0]}))
    with pytest.raises(ValueError, match="horizons"):
        scaling_settings(OmegaConf.create({"configs": [4], "horizons": ["long"]}))


def test_opt_list_entries_are_read_from_a_collection_that_holds_them():
    ids = collection_ids("opt_list", 10, "nadamw", 0, 1000)
    from taskset_lab.optim.hparam_list import load_hparam_list

    entries = load_hparam_list("opt_list")["entries"][:10]
    assert list(ids) == [e["config_id"] for e in entries]  # nadamw_grid_seed<N> is collection config N
    assert collection_ids("opt_list", 20, "nadamw", 0, 32) is None  # not all among the first 32
    assert collection_ids("opt_list", 10, "adam8p", 0, 1000) is None  # another family
    curves, runs = synthetic_store(tasks=2, configs=9)
    ref_c, ref_r = from_collection(curves, runs, [7, 2, 5])
    assert sorted(ref_r["config_id"].unique()) == [0, 1, 2]
    original = curves[curves["config_id"] == 2].reset_index(drop=True)
    relabelled = ref_c[ref_c["config_id"] == 1].reset_index(drop=True)
    assert np.array_equal(original["valid_inner"].to_numpy(), relabelled["valid_inner"].to_numpy(), equal_nan=True)


def test_budget_selection_keeps_every_required_family_and_the_budget():
    rows = [{"name": f"cheap{i}", "family": "a_family", "seconds_per_config_step": 1e-5} for i in range(50)]
    rows += [{"name": "dear", "family": "b_family", "seconds_per_config_step": 1e-2},
             {"name": "dearer", "family": "b_family", "seconds_per_config_step": 2e-2},
             {"name": "fixed", "family": "TwoD", "seconds_per_config_step": 5e-6},
             {"name": "unmeasured", "family": "c_family", "seconds_per_config_step": float("nan")},
             {"name": "nan_at_init", "family": "b_family", "seconds_per_config_step": 1e-6,
              "initial_loss": float("nan")}]
    chosen = select_within_budget(rows, budget_seconds=3700, configs=1000, steps=300, max_per_family=20,
                                  required=["a_family", "b_family"])
    names = [r["name"] for r in chosen]
    assert "dear" in names and "dearer" not in names and "unmeasured" not in names and "nan_at_init" not in names
    assert names[:2] == ["cheap0", "dear"]  # required families first, each its cheapest
    assert sum(r["family"] == "a_family" for r in chosen) == 20 and "fixed" in names
    assert sum(r["collection_seconds"] for r in chosen) <= 3700 + 1e-2 * 1000 * 300 * 1.2
