"""Hparam-list library: normalization, greedy learning, search baselines, evaluation, reports, plots."""

from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from taskset_lab.hparam_list import (
    ConfigSpace,
    build_hparam_list,
    cv_folds,
    evaluate_hparam_list,
    evaluate_matrices,
    format_table,
    hparams_frame,
    learn_greedy_list,
    learn_hparam_list,
    list_objective,
    lofo_folds,
    loss_matrix,
    normalized_losses,
    order_curve,
    random_search_expectation,
    read_hparam_list,
    single_best_config,
    speedup_table,
    tpe_curves,
    tpe_search,
    write_hparam_list,
    write_report,
)
from taskset_lab.hparam_list.greedy import candidate_gains

CAP = 1.5


# ----------------------------------------------------------------------------- synthetic data

def curves_frame(values: dict, report: dict | None = None, task: str = "t0", family: str = "fam") -> pd.DataFrame:
    """Curves from ``{(config_id, replica): [select values per step]}`` (report = select + 0 unless given)."""
    rows = []
    for (cid, rep_i), sel in values.items():
        rep = (report or {}).get((cid, rep_i), sel)
        for step, (s, r) in enumerate(zip(sel, rep)):
            rows.append({"task": task, "task_family": family, "optimizer": "adam", "config_id": cid,
                         "replica": rep_i, "step": 10 * step, "train": s, "valid_inner": s,
                         "valid_outer": s, "test": r})
    return pd.DataFrame(rows)


def synthetic_store(n_tasks: int = 24, n_configs: int = 40, families: int = 3, good: int = 3,
                    replicas: int = 1, steps: int = 6, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves and runs where configs ``0..good-1`` are good on every task, the rest task-specific noise."""
    rng = np.random.default_rng(seed)
    lr = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), n_configs))
    curve_rows, run_rows = [], []
    for t in range(n_tasks):
        fam = f"fam{t % families}"
        init, floor = rng.uniform(1, 5), rng.uniform(0, 0.5)
        for c in range(n_configs):
            quality = rng.uniform(0.85, 0.95) if c < good else rng.uniform(0.0, 0.8)
            for r in range(replicas):
                s_idx = np.arange(steps)
                loss = floor + (init - floor) * (1 - quality) ** (s_idx / (steps - 1))
                noise = 0.01 * (init - floor) * rng.normal(size=(2, steps))
                noise[:, 0] = 0.0
                for s in s_idx:
                    curve_rows.append({"task": f"task{t:02d}", "task_family": fam, "optimizer": "adam",
                                       "config_id": c, "replica": r, "step": 5 * int(s), "train": loss[s],
                                       "valid_inner": loss[s] + noise[0, s], "valid_outer": loss[s],
                                       "test": loss[s] + noise[1, s]})
                run_rows.append({"task": f"task{t:02d}", "task_family": fam, "task_config": "{}",
                                 "optimizer": "adam", "config_id": c, "replica": r,
                                 "hparams": json.dumps({"lr": float(lr[c]), "beta1": 0.9,
                                                        "nesterov": bool(c % 2)}),
                                 "status": "ok", "diverged_step": -1})
    return pd.DataFrame(curve_rows), pd.DataFrame(run_rows)


def norm_value(norm: pd.DataFrame, cid: int, split: str = "select", task: str = "t0") -> float:
    row = norm[(norm["task"] == task) & (norm["config_id"] == cid) & (norm["split"] == split)]
    assert len(row) == 1
    return float(row["value"].iloc[0])


# ----------------------------------------------------------------------------- normalization

def test_normalize_best_uses_select_step_for_report():
    sel = {(0, 0): [2.0, 1.0, 1.5], (1, 0): [2.0, 0.5, 0.8], (2, 0): [2.0, 1.8, 1.9]}
    rep = {(0, 0): [4.0, 3.0, 1.0], (1, 0): [4.0, 2.0, 3.0], (2, 0): [4.0, 3.5, 3.6]}
    norm = normalized_losses(curves_frame(sel, rep), cap=CAP)
    assert set(norm["split"]) == {"select", "report"} and len(norm) == 6
    # select: init 2, best 0.5
    assert norm_value(norm, 0) == pytest.approx((1.0 - 0.5) / 1.5)
    assert norm_value(norm, 1) == pytest.approx(0.0)
    assert norm_value(norm, 2) == pytest.approx(1.3 / 1.5)
    # report read at the select-argmin step (step 1), not the report minimum (config 0 has 1.0 at step 2)
    # report reduced values: 3.0, 2.0, 3.5 -> init 4, best 2
    assert norm_value(norm, 0, "report") == pytest.approx(0.5)
    assert norm_value(norm, 1, "report") == pytest.approx(0.0)
    assert norm_value(norm, 2, "report") == pytest.approx(0.75)
    assert norm.attrs["normalization"] == {"select_split": "valid_inner", "report_split": "test",
                                           "reduce": "best", "cap": CAP}


def test_normalize_final_and_cap():
    sel = {(0, 0): [2.0, 1.0, 1.5], (1, 0): [2.0, 0.5, 0.8], (2, 0): [2.0, 3.0, 9.0]}
    norm = normalized_losses(curves_frame(sel), reduce="final", cap=CAP)
    # final values 1.5, 0.8, 9.0; init 2, best 0.8
    assert norm_value(norm, 0) == pytest.approx(0.7 / 1.2)
    assert norm_value(norm, 1) == 0.0
    assert norm_value(norm, 2) == CAP  # (9 - 0.8) / 1.2 > cap: clipped
    norm2 = normalized_losses(curves_frame(sel), reduce="final", cap=10.0)
    assert norm_value(norm2, 2) == pytest.approx(8.2 / 1.2)


def test_normalize_divergence_nan_and_replicas():
    nan, inf = float("nan"), float("inf")
    sel = {(0, 0): [2.0, 1.0, 0.9], (0, 1): [2.0, 0.9, nan],  # replica 1 of config 0 diverged (NaN)
           (1, 0): [2.0, 0.1, 0.05], (1, 1): [2.0, 0.1, 0.2],  # config 1 diverged per runs table only
           (2, 0): [2.0, 1.1, inf], (2, 1): [2.0, 1.1, 1.0]}
    curves = curves_frame(sel)
    runs = pd.DataFrame([{"task": "t0", "optimizer": "adam", "config_id": c, "replica": r,
                          "status": "diverged" if (c, r) == (1, 0) else "ok"} for c, r in sel])
    norm = normalized_losses(curves, runs, cap=CAP)
    # non-diverged runs: (0,0) best 0.9, (1,1) best 0.1, (2,1) best 1.0 -> best 0.1, init 2
    assert norm_value(norm, 0) == pytest.approx((0.8 / 1.9 + CAP) / 2)
    assert norm_value(norm, 1) == pytest.approx((CAP + 0.0) / 2)  # runs-table divergence wins over a good curve
    assert norm_value(norm, 2) == pytest.approx((CAP + 0.9 / 1.9) / 2)  # inf counts as divergence
    div = norm[norm["split"] == "select"].set_index("config_id")["diverged"]
    assert div.tolist() == [0.5, 0.5, 0.5]
    # diverged="keep": the finite part of a diverged run counts
    kept = normalized_losses(curves, runs, cap=CAP, diverged="keep")
    assert norm_value(kept, 1) == pytest.approx((0.0 + 0.05 / 1.95) / 2)  # best 0.05 from the flagged run
    assert norm_value(kept, 0) == pytest.approx(0.85 / 1.95)  # both replicas reached 0.9 before NaN
    assert norm_value(kept, 2) == pytest.approx((1.05 / 1.95 + 0.95 / 1.95) / 2)


def test_normalize_all_diverged_and_constant_tasks():
    nan = float("nan")
    dead = curves_frame({(0, 0): [2.0, nan, nan], (1, 0): [2.0, 5.0, nan]}, task="dead")
    flat = curves_frame({(0, 0): [1.0, 1.0, 1.0], (1, 0): [1.0, 1.0, 1.0], (2, 0): [1.0, 1.2, 1.3]},
                        task="flat")
    for reduce in ("best", "final"):
        norm = normalized_losses(pd.concat([dead, flat]), cap=CAP, reduce=reduce)
        assert not norm["value"].isna().any()
        for split in ("select", "report"):
            assert norm_value(norm, 0, split, "dead") == CAP and norm_value(norm, 1, split, "dead") == CAP
            # constant loss (init == best): no 0/0; configs at the best get 0 ...
            assert norm_value(norm, 0, split, "flat") == 0.0 and norm_value(norm, 1, split, "flat") == 0.0
            # ... and one that ends worse gets the cap; with reduce="best" its best is its init (0)
            assert norm_value(norm, 2, split, "flat") == (CAP if reduce == "final" else 0.0)


def test_normalize_rejects_bad_input():
    curves = curves_frame({(0, 0): [1.0, 0.5]})
    with pytest.raises(ValueError, match="reduce"):
        normalized_losses(curves, reduce="mean")
    with pytest.raises(ValueError, match="columns"):
        normalized_losses(curves.drop(columns=["test"]))
    two = pd.concat([curves, curves.assign(optimizer="sgd")])
    with pytest.raises(ValueError, match="several optimizers"):
        normalized_losses(two)
    assert len(normalized_losses(two, optimizer="sgd")) == 2


def test_loss_matrix_orders_and_fills():
    a = curves_frame({(0, 0): [2.0, 1.0], (3, 0): [2.0, 0.0]}, task="b")
    b = curves_frame({(0, 0): [2.0, 1.0]}, task="a")
    norm = normalized_losses(pd.concat([a, b]), cap=CAP)
    tasks, ids, m = loss_matrix(norm, "select")
    assert tasks == ["a", "b"] and ids.tolist() == [0, 3]
    np.testing.assert_allclose(m, [[0.0, CAP], [0.5, 0.0]])  # task a lacks config 3: filled with the cap
    _, _, m2 = loss_matrix(norm, "select", fill=9.0)
    assert m2[0, 1] == 9.0


# ----------------------------------------------------------------------------- greedy

def _objective(m: np.ndarray, cols: list[int]) -> float:
    return float(m[:, cols].min(axis=1).mean())


def reference_greedy(m: np.ndarray, length: int) -> list[int]:
    """Greedy re-scoring every unchosen column from scratch (plain loops)."""
    chosen: list[int] = []
    for _ in range(length):
        cur = _objective(m, chosen) if chosen else math.inf
        scores = {j: _objective(m, chosen + [j]) for j in range(m.shape[1]) if j not in chosen}
        top = min(scores.values())
        if chosen and not top < cur - 1e-12:
            means = {j: m[:, j].mean() for j in scores}
            top_mean = min(means.values())
            chosen.append(min(j for j, v in means.items() if v <= top_mean + 1e-12))
        else:
            chosen.append(min(j for j, v in scores.items() if v <= top + 1e-12))
    return chosen


@pytest.mark.parametrize("seed", range(6))
def test_greedy_each_step_is_the_brute_force_argmin(seed):
    rng = np.random.default_rng(seed)
    m = rng.uniform(size=(7, 9))
    if seed % 2:
        m = np.round(m * 3) / 3  # many ties
    result = learn_greedy_list(m, 9)
    assert sorted(result.indices) == list(range(9))  # distinct entries
    for k in range(1, 10):
        prefix = result.indices[: k - 1]
        scores = [_objective(m, prefix + [j]) if j not in prefix else math.inf for j in range(9)]
        best = min(scores)
        assert _objective(m, result.indices[:k]) == pytest.approx(best, abs=1e-12)
        if best < (_objective(m, prefix) if prefix else math.inf) - 1e-12:
            assert result.indices[k - 1] == min(j for j, s in enumerate(scores) if s <= best + 1e-12)
        assert result.objective[k - 1] == pytest.approx(best, abs=1e-12)
    assert result.indices == reference_greedy(m, 9)
    np.testing.assert_allclose(list_objective(m, result.indices), result.objective)


@pytest.mark.parametrize("seed", range(4))
def test_greedy_within_submodular_bound_of_the_best_subset(seed):
    rng = np.random.default_rng(100 + seed)
    m = rng.uniform(size=(8, 10))
    result = learn_greedy_list(m, 4)
    base = m.max()  # gain measured from a reference above every value
    for k in range(1, 5):
        opt = min(_objective(m, list(s)) for s in itertools.combinations(range(10), k))
        got = result.objective[k - 1]
        assert got >= opt - 1e-12
        assert base - got >= (1 - 1 / math.e) * (base - opt) - 1e-12


def test_greedy_finds_the_known_optimum_on_a_block_matrix():
    # config j is perfect (0) on a block of tasks and bad (1) elsewhere; blocks of sizes 5, 3, 2, 1
    sizes = [1, 5, 2, 3]
    m = np.ones((11, 6))
    start = 0
    for j, size in enumerate(sizes):
        m[start:start + size, j] = 0.0
        start += size
    m[:, 4] = 0.45  # mediocre everywhere: best single, not in the optimal pair
    m[:, 5] = 0.46
    result = learn_greedy_list(m, 4)
    assert result.indices == [4, 1, 3, 2]
    np.testing.assert_allclose(result.objective, [0.45, 0.45 * 6 / 11, 0.45 * 3 / 11, 0.45 * 1 / 11])


def test_greedy_fills_with_best_mean_when_nothing_improves():
    m = np.array([[0.0, 0.0, 0.3, 0.2, 0.9],
                  [0.5, 0.0, 0.4, 0.6, 0.8]])
    result = learn_greedy_list(m, 5)
    assert result.indices[0] == 1  # mean 0, perfect on both tasks
    assert result.indices[1:] == [0, 2, 3, 4]  # then by mean loss: 0.25, 0.35, 0.4, 0.85
    assert result.objective == [0.0] * 5


def test_greedy_incremental_matches_reference_on_larger_matrices():
    rng = np.random.default_rng(7)
    for shape, rounding in (((60, 50), None), ((60, 50), 10), ((40, 80), 4)):
        m = np.clip(rng.uniform(size=(1, shape[1])) + 0.4 * rng.normal(size=shape), 0, CAP)
        if rounding:
            m = np.round(m * rounding) / rounding
        got = learn_greedy_list(m, 25).indices
        assert got == reference_greedy(m, 25)
    gains = candidate_gains(m, m[:, 0])
    assert gains[0] == 0.0 and np.all(gains >= 0)


def test_greedy_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        learn_greedy_list(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="NaN"):
        learn_greedy_list(np.array([[np.nan, 1.0]]), 1)


# ----------------------------------------------------------------------------- random search

def test_random_expectation_equals_subset_enumeration():
    rng = np.random.default_rng(1)
    m = rng.uniform(size=(3, 7))
    m[0, :3] = 0.25  # ties
    ks = list(range(1, 8))
    exp = random_search_expectation(m, ks)
    assert exp.shape == (3, 7)
    for t in range(3):
        for k in ks:
            mins = [min(m[t, list(s)]) for s in itertools.combinations(range(7), k)]
            assert exp[t, k - 1] == pytest.approx(np.mean(mins), abs=1e-12)
    np.testing.assert_allclose(exp[:, 0], m.mean(axis=1))
    np.testing.assert_allclose(exp[:, -1], m.min(axis=1))


def test_random_expectation_matches_monte_carlo():
    rng = np.random.default_rng(2)
    n, draws = 200, 4000
    m = rng.exponential(size=(2, n))
    ks = [1, 5, 37, 150]
    exp = random_search_expectation(m, ks)
    for t in range(2):
        perms = np.argsort(rng.uniform(size=(draws, n)), axis=1)
        for j, k in enumerate(ks):
            sample = m[t][perms[:, :k]].min(axis=1)
            se = sample.std() / math.sqrt(draws)
            assert abs(sample.mean() - exp[t, j]) < 4 * se + 1e-12


def _select_report_by_permutations(sel: np.ndarray, rep: np.ndarray, k: int) -> float:
    vals = []
    for perm in itertools.permutations(range(sel.size)):
        first = list(perm[:k])
        chosen = first[int(np.argmin(sel[first]))]  # argmin: earliest on ties
        vals.append(rep[chosen])
    return float(np.mean(vals))


def test_select_report_expectation_is_exact_with_ties():
    rng = np.random.default_rng(3)
    sel = np.array([[0.2, 0.5, 0.2, 0.9, 0.5, 0.2]])
    rep = rng.uniform(size=(1, 6))
    exp = random_search_expectation(sel, range(1, 7), report=rep)
    for k in range(1, 7):
        assert exp[0, k - 1] == pytest.approx(_select_report_by_permutations(sel[0], rep[0], k), abs=1e-12)
    # without ties-averaging the answer for k=6 would depend on which 0.2 comes first; it is their mean
    assert exp[0, 5] == pytest.approx(rep[0, [0, 2, 5]].mean())


def test_select_report_expectation_matches_monte_carlo():
    rng = np.random.default_rng(4)
    n, draws = 60, 4000
    sel = np.minimum(np.round(rng.uniform(0, 2, size=n), 1), CAP)  # ties, including at the cap
    rep = sel + 0.3 * rng.normal(size=n)
    ks = [1, 4, 20]
    exp = random_search_expectation(sel[None], ks, report=rep[None])[0]
    perms = np.argsort(rng.uniform(size=(draws, n)), axis=1)
    for j, k in enumerate(ks):
        first = perms[:, :k]
        chosen = first[np.arange(draws), np.argmin(sel[first], axis=1)]
        sample = rep[chosen]
        assert abs(sample.mean() - exp[j]) < 4 * sample.std() / math.sqrt(draws) + 1e-12


def test_order_curve_and_single_best():
    sel = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.3, 0.0, 0.9]])
    rep = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    curve = order_curve(sel, rep, [0, 1, 2, 3])
    np.testing.assert_allclose(curve, [[1, 2, 2, 4], [5, 5, 7, 7]])  # 0.2 tie keeps the earlier one
    assert single_best_config(sel) == 2  # means 0.3, 0.25, 0.1, 0.5


# ----------------------------------------------------------------------------- TPE

def test_config_space_scales_and_snapping():
    rng = np.random.default_rng(0)
    n = 200
    hp = pd.DataFrame({"lr": np.exp(rng.uniform(np.log(1e-5), 0, n)),
                       "beta": 1 - np.exp(rng.uniform(np.log(1e-3), 0, n)),
                       "frac": rng.uniform(0.001, 1, n),
                       "wd": np.where(rng.uniform(size=n) < 0.5, 0.0, np.exp(rng.uniform(-10, -2, n))),
                       "nesterov": rng.uniform(size=n) < 0.5, "fixed": np.full(n, 3.0)})
    space = ConfigSpace(hp)
    assert space.scales == {"lr": "log", "beta": "log1m", "frac": "linear", "wd": "log"}
    assert list(space.categorical) == ["nesterov"] and "fixed" not in space.continuous
    assert space.unit.min() == 0.0 and space.unit.max() == 1.0
    tried = np.zeros(n, dtype=bool)
    for row in (0, 17, 123):
        assert space.nearest(space.params_of(row), tried) == row
    tried[17] = True
    assert space.nearest(space.params_of(17), tried) != 17


def test_tpe_is_monotone_seeded_and_finds_good_configs():
    rng = np.random.default_rng(1)
    n = 150
    hp = pd.DataFrame({"lr": np.exp(rng.uniform(np.log(1e-5), 0, n)), "mom": rng.uniform(0, 1, n)})
    opt = np.log(1e-2)
    sel = np.stack([((np.log(hp["lr"]) - opt) / 4) ** 2 + 0.3 * (hp["mom"] - 0.5) ** 2 + 0.02 * t
                    for t in range(4)])
    rep = sel + 0.01 * rng.normal(size=sel.shape)
    space = ConfigSpace(hp)
    curve, order = tpe_search(space, sel[0], rep[0], 25, seed=3, n_startup_trials=5)
    assert len(set(order)) == 25  # never re-tries a recorded config
    sel_curve = order_curve(sel[:1], sel[:1], order)[0]
    assert np.all(np.diff(sel_curve) <= 0)  # best-so-far on the select split never gets worse
    np.testing.assert_array_equal(curve, order_curve(sel[:1], rep[:1], order)[0])  # report of the select-argmin
    again, order2 = tpe_search(space, sel[0], rep[0], 25, seed=3, n_startup_trials=5)
    assert order2 == order and np.array_equal(again, curve)
    curves = tpe_curves(hp, sel, sel, 25, seeds=[0, 1], n_startup_trials=5)
    assert curves.shape == (4, 25) and np.all(np.diff(curves, axis=1) <= 1e-12)
    random = random_search_expectation(sel, [25]).mean()
    assert curves[:, -1].mean() <= random  # model-based search beats random on a smooth landscape


# ----------------------------------------------------------------------------- evaluation

def test_cv_folds_partition_tasks():
    folds = cv_folds(23, 5, seed=0)
    assert len(folds) == 5
    joined = np.concatenate(folds)
    assert sorted(joined.tolist()) == list(range(23))
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    assert [f.tolist() for f in cv_folds(23, 5, seed=0)] == [f.tolist() for f in folds]
    assert [f.tolist() for f in cv_folds(23, 5, seed=1)] != [f.tolist() for f in folds]
    assert len(cv_folds(3, 5)) == 3  # more folds than tasks: leave one task out
    with pytest.raises(ValueError):
        cv_folds(1, 5)


def test_lofo_holds_out_exactly_one_family():
    fams = ["b", "a", "b", "c", "a", "b"]
    folds = lofo_folds(fams)
    assert [f for f, _ in folds] == ["a", "b", "c"]
    for fam, held in folds:
        assert {fams[i] for i in held} == {fam}
        assert len(held) == fams.count(fam)
    assert lofo_folds(["x", "x"]) == []


@pytest.fixture(scope="module")
def synthetic_eval():
    curves, runs = synthetic_store()
    norm = normalized_losses(curves, runs, cap=CAP)
    hp = hparams_frame(runs)
    ev = evaluate_hparam_list(norm, length=10, folds=4, seed=0, hparams=hp, tpe_trials=8, tpe_seeds=1,
                              tpe_startup_trials=4, speedup_ks=(1, 3, 10))
    return curves, runs, norm, hp, ev


def test_learned_list_beats_random_search_on_held_out_tasks(synthetic_eval):
    _, _, norm, _, ev = synthetic_eval
    summary = ev.summary.set_index(["scheme", "method", "k"])["mean"]
    for scheme in ("cv", "lofo"):
        for k in (1, 3, 10):
            assert summary[(scheme, "list", k)] < summary[(scheme, "random", k)]
    assert summary[("cv", "list", 1)] == pytest.approx(summary[("cv", "best_single", 1)])
    # the list starts with the configs that are good everywhere
    assert set(ev.lists[("cv", 0)][:3]) == {0, 1, 2}
    assert set(learn_hparam_list(norm, 3)[0]) == {0, 1, 2}
    sp = ev.speedup[ev.speedup["scheme"] == "cv"].set_index("k")
    assert sp.loc[1, "random_trials"] > 1 and sp.loc[1, "speedup"] > 1


def test_evaluation_tables_are_consistent(synthetic_eval):
    _, _, norm, _, ev = synthetic_eval
    e = ev.evaluation
    assert set(e["method"]) == {"list", "random", "best_single", "tpe"}
    cv = e[e["scheme"] == "cv"]
    assert cv.groupby("fold")["n_tasks"].first().sum() == 24  # held-out tasks cover every task once
    assert cv["held_out_family"].isna().all()
    lofo = e[e["scheme"] == "lofo"]
    assert sorted(lofo["held_out_family"].unique()) == ["fam0", "fam1", "fam2"]
    assert (lofo.groupby("held_out_family")["n_tasks"].first() == 8).all()
    assert e[(e["method"] == "random")]["k"].max() == 40 and e[e["method"] == "list"]["k"].max() == 10
    assert e[e["method"] == "tpe"]["k"].max() == 8
    # each fold's list is the greedy list of its training tasks only
    tasks, _, sel = loss_matrix(norm, "select")
    held = cv_folds(len(tasks), 4, seed=0)[0]
    train = np.setdiff1d(np.arange(len(tasks)), held)
    assert ev.lists[("cv", 0)] == learn_greedy_list(sel[train], 10).indices
    s = ev.summary
    check = e.groupby(["scheme", "method", "k"])["value"].mean()
    np.testing.assert_allclose(s.set_index(["scheme", "method", "k"])["mean"], check.loc[s.set_index(
        ["scheme", "method", "k"]).index])
    assert e["value"].between(0, CAP).all()  # means of normalized values stay inside [0, cap]


def test_evaluate_matrices_without_families_or_tpe():
    rng = np.random.default_rng(5)
    sel = rng.uniform(size=(6, 12))
    ev = evaluate_matrices(sel, sel, families=None, length=4, folds=10, seed=1)
    assert set(ev.evaluation["scheme"]) == {"cv"} and set(ev.evaluation["method"]) == {"list", "random",
                                                                                        "best_single"}
    assert ev.evaluation["fold"].nunique() == 6  # folds clamped to the number of tasks
    # with select == report the list's held-out curve is a best-so-far: never increases
    lst = ev.summary[ev.summary["method"] == "list"].sort_values("k")["mean"].to_numpy()
    assert np.all(np.diff(lst) <= 1e-12)
    with pytest.raises(ValueError, match="hparams"):
        evaluate_matrices(sel, sel, tpe_trials=3)


def test_speedup_table_interpolates_and_reports_never():
    random_curve = np.array([1.0, 0.6, 0.4, 0.3, 0.25])
    table = speedup_table(np.array([0.5, 0.3, 0.1]), random_curve, ks=(1, 2, 3, 30)).set_index("k")
    assert table.loc[1, "random_trials"] == pytest.approx(2.5)  # between 0.6 (k=2) and 0.4 (k=3)
    assert table.loc[2, "random_trials"] == pytest.approx(4.0) and table.loc[2, "speedup"] == pytest.approx(2.0)
    assert math.isnan(table.loc[3, "random_trials"]) and table.loc[3, "random_trials_label"] == ">5"
    assert 30 not in table.index  # beyond the list's length


# ----------------------------------------------------------------------------- reports

def test_hparam_list_json_round_trip_through_the_optimizer_loader(tmp_path, synthetic_eval):
    from taskset_lab.optim.hparam_list import hparam_list_entry, load_hparam_list
    from taskset_lab.optim.registry import get_optimizer_family

    family = get_optimizer_family("nadamw")
    hp = pd.DataFrame([family.sample(i) for i in range(5)], index=pd.Index([10, 11, 12, 13, 14], name="config_id"))
    data = build_hparam_list("nadamw", [12, 10], hp, {"select_split": "valid_inner", "report_split": "test",
                                                       "reduce": "best", "cap": np.float64(1.5)},
                             ["t1", "t0"], ["f", "g", "f"], np.array([0.4, 0.2]))
    path = write_hparam_list(tmp_path / "hparam_list.json", data)
    back = read_hparam_list(path)
    assert back == json.loads(json.dumps(data))
    assert back["entries"][1] == {"rank": 1, "config_id": 10, "hparams": family.sample(0)}
    assert back["task_families"] == ["f", "g"] and back["objective_by_k"] == [0.4, 0.2]
    assert load_hparam_list(path)["optimizer"] == "nadamw"
    assert hparam_list_entry(path, 0) == ("nadamw", family.sample(2))

    _, _, norm, _, ev = synthetic_eval
    paths = write_report(tmp_path / "out", data, norm, ev)
    assert {p.name for p in paths.values()} == {"hparam_list.json", "normalized_losses.parquet", "evaluation.csv",
                                                "summary.csv", "speedup.csv"}
    pd.testing.assert_frame_equal(pd.read_parquet(paths["normalized_losses"]), norm, check_dtype=False)
    e = pd.read_csv(paths["evaluation"])
    assert len(e) == len(ev.evaluation) and list(e.columns) == list(ev.evaluation.columns)


def test_format_table_lists_methods_at_ks(synthetic_eval):
    _, _, _, _, ev = synthetic_eval
    text = format_table(ev.summary, ks=(1, 3, 10), speedup=ev.speedup)
    lines = text.splitlines()
    assert "cv" in lines[0] and lines[1].split() == ["method", "k=1", "k=3", "k=10"]
    s = ev.summary.set_index(["scheme", "method", "k"])["mean"]
    list_line = next(line for line in lines if line.startswith("list"))
    assert list_line.split()[1:] == [f"{s[('cv', 'list', k)]:.4f}" for k in (1, 3, 10)]
    assert any(line.startswith("best single") for line in lines) and any(line.startswith("tpe") for line in lines)
    assert lines[-1].startswith("random trials to match list")


def test_wandb_offline_logging_reads_back(tmp_path, monkeypatch, synthetic_eval):
    wandb = pytest.importorskip("wandb")
    from taskset_lab.hparam_list import log_to_wandb
    from wandb_offline import read_offline_history, read_offline_records, read_offline_summary

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _, _, _, _, ev = synthetic_eval
    data = {"optimizer": "adam", "entries": [{"rank": 0, "config_id": 2, "hparams": {"lr": 0.01}},
                                             {"rank": 1, "config_id": 0, "hparams": {"lr": 0.1}}]}
    run = wandb.init(dir=str(tmp_path), mode="offline", project="tasklab-test")
    try:
        log_to_wandb(run, ev.summary, data)
    finally:
        run.finish()
    run_dirs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    # the W&B service process may still be writing the file after finish() returns: wait for its exit record
    deadline = time.monotonic() + 20
    while not any(r.WhichOneof("record_type") == "exit" for r in read_offline_records(run_dirs[0])):
        assert time.monotonic() < deadline, "offline run file never got its exit record"
        time.sleep(0.2)
    summary = read_offline_summary(run_dirs[0])
    s = ev.summary.set_index(["scheme", "method", "k"])["mean"]
    assert summary["hparam_list/cv/list/k1"] == pytest.approx(s[("cv", "list", 1)])
    assert summary["hparam_list/lofo/random/k10"] == pytest.approx(s[("lofo", "random", 10)])
    assert summary["hparam_list/length"] == 2 and summary["hparam_list/optimizer"] == "adam"
    history = read_offline_history(run_dirs[0])
    assert len(history) == 1
    for key in ("entries", "summary", "curves_cv_table", "curves_lofo_table"):
        assert history[0][f"hparam_list/{key}/_type"] == "table-file"
    media = run_dirs[0] / "files" / "media" / "table" / "hparam_list"
    (entries_file,) = media.glob("entries_*.table.json")
    table = json.loads(entries_file.read_text())
    # one typed column per hyperparameter (sortable and plottable in W&B), not one JSON string
    assert table["columns"] == ["rank", "config_id", "lr"] and [r[1] for r in table["data"]] == [2, 0]
    assert [r[2] for r in table["data"]] == [0.01, 0.1]
    (curve_file,) = media.glob("curves_cv_table_*.table.json")
    curve = pd.DataFrame(**json.loads(curve_file.read_text()))
    assert curve.columns.tolist() == ["step", "lineKey", "lineVal"]
    assert set(curve["lineKey"]) == {"list", "random", "best single", "tpe"}
    drawn = curve[curve["lineKey"] == "list"].set_index("step")["lineVal"]
    np.testing.assert_allclose(drawn.to_numpy(), s.loc[("cv", "list")].to_numpy())


# ----------------------------------------------------------------------------- plots

def test_plot_series_and_files(tmp_path, synthetic_eval):
    from taskset_lab.viz.plots import family_series, plot_hparam_list_results, trials_series

    _, _, _, _, ev = synthetic_eval
    series = trials_series(ev.evaluation, "cv")
    assert list(series) == ["list", "random", "best_single", "tpe"]
    assert series["list"]["k"].tolist() == list(range(1, 11)) and series["random"]["k"].size == 40
    s = ev.summary.set_index(["scheme", "method", "k"])
    np.testing.assert_allclose(series["list"]["mean"], s.loc[("cv", "list"), "mean"].to_numpy())
    np.testing.assert_allclose(series["random"]["low"], s.loc[("cv", "random"), "min"].to_numpy())
    assert np.all(series["list"]["low"] <= series["list"]["mean"]) and np.all(
        series["list"]["mean"] <= series["list"]["high"])
    fams = family_series(ev.evaluation)
    assert list(fams) == ["fam0", "fam1", "fam2"]
    lofo = ev.evaluation[(ev.evaluation["scheme"] == "lofo") & (ev.evaluation["held_out_family"] == "fam1")]
    np.testing.assert_allclose(fams["fam1"]["list"]["value"],
                               lofo[lofo["method"] == "list"].sort_values("k")["value"])
    paths = plot_hparam_list_results(ev.evaluation, tmp_path)
    assert [p.name for p in paths] == ["trials_cv.png", "trials_lofo.png", "families.png"]
    for p in paths:
        head = p.read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
