"""Replaying search strategies on recorded curves (taskset_lab.replay): the Syne Tune export
read back by Syne Tune's own loader, per-fidelity normalization against HPARAM_LIST's, the
virtual clock, ASHA's promotions by hand, poisoned values never seen, random search against
HPARAM_LIST's exact expectation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from taskset_lab.curves.store import ensure_manifest, read_curves, read_runs, write_part
from taskset_lab.hparam_list.baselines import ConfigSpace, order_curve, random_search_expectation
from taskset_lab.hparam_list.normalize import loss_matrix, normalized_losses
from taskset_lab.replay.arrays import store_arrays
from taskset_lab.replay.fidelity import fidelity_values
from taskset_lab.replay.simulate import anytime, recorded_configs, run_replay
from taskset_lab.replay.strategies import MultiFidelity, scheduler_factory
from taskset_lab.tasks.base import SPLITS

TASKS = [("taskA", "famA"), ("taskB", "famA"), ("taskC", "famB")]


def make_store(root, configs: int = 4, replicas: int = 2, total_steps: int = 4, eval_every: int = 1,
               seed: int = 0, diverge: bool = True, drop_split: str | None = None):
    """A small hand-made curve store: decaying losses with noise, one diverged run."""
    rng = np.random.default_rng(seed)
    steps = list(range(0, total_steps + 1, eval_every))
    hp = [{"lr": float(10 ** rng.uniform(-4, -1)), "beta1": float(rng.uniform(0.5, 0.99)),
           "nesterov": bool(i % 2)} for i in range(configs)]
    settings = {"optimizer": "toyopt", "num_configs": configs, "config_seed_offset": 0, "total_steps": total_steps,
                "eval_every": eval_every, "eval_batches": 1, "chunk_size": configs, "dtype": "float32",
                "divergence_factor": 100.0}
    ensure_manifest(root, settings, [{"name": t, "family": f} for t, f in TASKS], replicas=replicas)
    for ti, (task, fam) in enumerate(TASKS):
        for r in range(replicas):
            rows, runs = [], []
            for c in range(configs):
                rate = rng.uniform(0.05, 0.8)
                div_at = 3 if (diverge and ti == 0 and c == 1 and r == 0) else -1
                for s in steps:
                    base = 2.0 * np.exp(-rate * s) + 0.1 * c + 0.01 * rng.standard_normal()
                    vals = {sp: np.float32(base + 0.05 * k + 0.01 * rng.standard_normal())
                            for k, sp in enumerate(SPLITS)}
                    if s == 0:
                        vals = {sp: np.float32(2.0 + 0.05 * k) for k, sp in enumerate(SPLITS)}
                    if div_at >= 0 and s >= div_at:
                        vals = {sp: np.float32(np.nan) for sp in SPLITS}
                    if drop_split:
                        vals.pop(drop_split)
                    rows.append({"task": task, "task_family": fam, "optimizer": "toyopt", "config_id": c,
                                 "replica": r, "step": s, **vals})
                runs.append({"task": task, "task_family": fam, "task_config": "{}", "optimizer": "toyopt",
                             "config_id": c, "replica": r, "hparams": json.dumps(hp[c]), "config_seed": c,
                             "status": "diverged" if div_at >= 0 else "ok", "diverged_step": div_at,
                             "total_steps": total_steps, "eval_every": eval_every, "seconds": 0.5 + 0.25 * c + 0.1 * r,
                             "device": "cpu"})
            curves_df = pd.DataFrame(rows)
            if drop_split:
                write_part_raw(root, task, r, curves_df, pd.DataFrame(runs))
            else:
                write_part(root, f"{task}__toyopt__c0000__r{r:02d}", curves_df, pd.DataFrame(runs))
    return root


def write_part_raw(root, task, r, curves_df, runs_df):
    """A part whose curves lack a split column (write_part refuses such a part)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = f"{task}__toyopt__c0000__r{r:02d}"
    (root / "runs").mkdir(parents=True, exist_ok=True)
    (root / "curves").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(runs_df, preserve_index=False), root / "runs" / f"{name}.parquet")
    pq.write_table(pa.Table.from_pandas(curves_df, preserve_index=False), root / "curves" / f"{name}.parquet")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("replay_store"))


# -- (1) the Syne Tune export, read back by Syne Tune's deserialize -----------------------------
def test_syne_tune_export_reads_back_equal_to_store(store, tmp_path):
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize

    from taskset_lab.replay.syne_export import export_syne_tune

    dest = export_syne_tune(store, tmp_path / "bb")
    bbs = deserialize(str(dest))
    assert sorted(bbs) == [t for t, _ in TASKS]
    curves, runs = read_curves(store), read_runs(store)
    hp = pd.DataFrame([json.loads(h) for h in runs.drop_duplicates("config_id").sort_values("config_id")["hparams"]])
    for task, bb in bbs.items():
        ev = bb.objectives_evaluations  # [configs, seeds, fidelities, objectives]
        assert ev.shape == (4, 2, 5, 5)
        assert bb.objectives_names == [*SPLITS, "elapsed_time"]
        assert list(bb.fidelity_values) == [0, 1, 2, 3, 4]
        pd.testing.assert_frame_equal(bb.hyperparameters.reset_index(drop=True), hp, check_dtype=False)
        part = curves[curves["task"] == task]
        for row in part.itertuples():
            got = ev[row.config_id, row.replica, row.step]
            want = np.array([getattr(row, sp) for sp in SPLITS], dtype=np.float32)
            np.testing.assert_array_equal(got[:4], want)  # NaN where the store has NaN
        sec = runs[runs["task"] == task].set_index(["config_id", "replica"])["seconds"]
        for (c, r), s in sec.items():
            np.testing.assert_allclose(ev[c, r, :, 4], np.float32(s) * np.arange(5) / 4, rtol=1e-6)
        # Syne Tune's own query path returns the recorded values
        res = bb.objective_function(bb.hyperparameters.iloc[2].to_dict(), fidelity={"step": 3}, seed=1)
        want = part[(part.config_id == 2) & (part.replica == 1) & (part.step == 3)]
        assert res["valid_inner"] == pytest.approx(float(want["valid_inner"].iloc[0]))
    # a part of the store: one task, two splits
    sub = deserialize(str(export_syne_tune(store, tmp_path / "sub", tasks=["taskC"], splits=["valid_inner", "test"])))
    assert list(sub) == ["taskC"] and sub["taskC"].objectives_names == ["valid_inner", "test", "elapsed_time"]
    assert sub["taskC"].objectives_evaluations.shape == (4, 2, 5, 3)


# -- per-fidelity values: HPARAM_LIST's at the last step, nothing later used before --------------
def test_fidelity_values_equal_hparam_list_at_full_fidelity(store):
    arrays = store_arrays(store, splits=["valid_inner", "test"])
    fv = fidelity_values(arrays)
    norm = normalized_losses(arrays.curves, arrays.runs, optimizer="toyopt")
    tasks, ids, sel = loss_matrix(norm, "select")
    _, _, rep = loss_matrix(norm, "report")
    assert tasks == fv.tasks and list(ids) == list(fv.config_ids)
    np.testing.assert_array_equal(fv.select[..., -1], sel)
    np.testing.assert_array_equal(fv.report[..., -1], rep)
    # the diverged run (taskA, config 1, replica 0 at step 3): finite before, capped from step 3 on
    assert (fv.select[0, 1, 2:] >= 0.75 - 1e-12).all() and (fv.report[0, 1, 2:] >= 0.75 - 1e-12).all()
    assert fv.select[0, 1, 1] < 0.75 or fv.select[0, 1, 1] < fv.select[0, 1, 2]
    # select values are running minima of a prefix: non-increasing where nothing diverged
    ok = np.ones(fv.select.shape[:2], dtype=bool)
    ok[0, 1] = False
    assert (np.diff(fv.select, axis=-1)[ok] <= 1e-12).all()


# -- the virtual clock, by hand ---------------------------------------------------------------
def _hand_blackbox(select: np.ndarray, report: np.ndarray | None = None):
    hp = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2, 1e-1]}, index=pd.Index(range(4), name="config_id"))
    space = ConfigSpace(hp)
    steps = np.arange(1, select.shape[1] + 1)
    cost = np.broadcast_to(steps.astype(float), select.shape)
    return space, recorded_configs(space, select, select if report is None else report, steps, cost)


HAND = np.array([[0.50, 0.40, 0.30, 0.20],
                 [0.60, 0.50, 0.40, 0.30],
                 [0.40, 0.35, 0.10, 0.05],
                 [0.45, 0.55, 0.02, 0.01]])  # config 3's steps 3 and 4 are never paid for


def _asha(space, bb, seed=0):
    mf = MultiFidelity(max_t=4, grace_period=1, reduction_factor=2)
    return scheduler_factory("list_asha", space, bb.configuration_space, seed, mf, hparam_list=[0, 1, 2, 3],
                             list_asha_entries=4)


def test_asha_promotions_and_clock_equal_hand_computation():
    space, bb = _hand_blackbox(HAND)
    rep = run_replay(bb, _asha(space, bb), budget=14)
    obs = rep.observations
    got = [tuple(x) for x in obs[["trial", "config", "step", "time"]].itertuples(index=False)]
    # One worker, rungs at steps 1 and 2 (rf 2), a trial continues while in the top half of its rung.
    # trial 0: first at both rungs -> to the end (t 1..4); trials 1 and 2: rank 1/2 and 0 at
    # both rungs -> to the end (t 5..8, 9..12); trial 3: rung 1 rank 1/4 (0.45 among .4 .45 .5 .6)
    # goes on, rung 2 rank 3/4 (0.55 among .35 .4 .5 .55) > 1/2 -> stopped at step 2, t = 14.
    want = ([(0, 0, s, float(s)) for s in range(1, 5)] + [(1, 1, s, 4.0 + s) for s in range(1, 5)]
            + [(2, 2, s, 8.0 + s) for s in range(1, 5)] + [(3, 3, 1, 13.0), (3, 3, 2, 14.0)])
    assert got[: len(want)] == want
    assert all(t > 14 for t in obs["time"].iloc[len(want):])
    # anytime: the incumbent by latest select value
    curve = anytime(obs, [1, 4, 8, 9, 11, 12, 13, 14])
    np.testing.assert_allclose(curve, [0.5, 0.2, 0.2, 0.2, 0.1, 0.05, 0.05, 0.05])


def test_values_not_paid_for_are_never_seen():
    space, bb = _hand_blackbox(HAND)
    clean = run_replay(bb, _asha(space, bb), budget=14).observations
    poisoned = HAND.copy()
    poisoned[3, 2:] = -100.0  # far better than anything, if it were ever observed
    report = HAND.copy()
    report[3, 2:] = -100.0
    space_p, bb_p = _hand_blackbox(poisoned, report)
    dirty = run_replay(bb_p, _asha(space_p, bb_p), budget=14).observations
    first = (clean["time"] <= 14).sum()
    pd.testing.assert_frame_equal(clean.iloc[:first], dirty.iloc[:first])
    assert (dirty[dirty["time"] <= 14][["select", "report"]] >= 0).all().all()
    np.testing.assert_array_equal(anytime(clean, np.arange(1, 15)), anytime(dirty, np.arange(1, 15)))


# -- random search replayed vs HPARAM_LIST's exact expectation -----------------------------------
def test_random_search_replay_matches_exact_expectation(store):
    arrays = store_arrays(store, splits=["valid_inner", "test"])
    fv = fidelity_values(arrays)
    space = ConfigSpace(arrays.hparams)
    t = 0
    steps = fv.steps.astype(float)
    bb = recorded_configs(space, fv.select[t], fv.report[t], fv.steps, np.broadcast_to(steps, fv.select[t].shape))
    sel, rep = fv.select[t, :, -1], fv.report[t, :, -1]
    mf = MultiFidelity(max_t=4, grace_period=1)
    seeds = 60
    curves = []
    for seed in range(seeds):
        run = run_replay(bb, scheduler_factory("random", space, bb.configuration_space, seed, mf), budget=16)
        obs = run.observations
        order = obs.drop_duplicates("trial")["config"].tolist()[:4]
        curve = anytime(obs, [4.0, 8.0, 12.0, 16.0])
        # every replay is exactly HPARAM_LIST's rule on the order it tried, each trial to the end
        np.testing.assert_array_equal(curve, order_curve(sel[None], rep[None], order)[0])
        curves.append(curve)
    curves = np.array(curves)
    exact = random_search_expectation(sel[None], [1, 2, 3, 4], report=rep[None])[0]
    tol = 4 * curves.std(axis=0) / np.sqrt(seeds) + 1e-12
    assert (np.abs(curves.mean(axis=0) - exact) <= tol).all(), (curves.mean(axis=0), exact, tol)
    assert curves[:, -1] == pytest.approx(exact[-1])  # all 4 configs tried: no randomness left


@pytest.mark.parametrize("strategy", ["random", "list", "tpe", "asha", "list_asha", "hyperband", "bohb"])
def test_every_strategy_pays_for_what_it_sees(strategy):
    """One worker: trials run one after another, a trial's results arrive at its start plus the
    steps it has trained, each fidelity only after all before it, with the table's values."""
    rng = np.random.default_rng(1)
    select = np.sort(rng.uniform(0, 1.5, size=(4, 4)), axis=1)[:, ::-1].copy()
    report = select + 0.01
    space, bb = _hand_blackbox(select, report)
    mf = MultiFidelity(max_t=4, grace_period=1, reduction_factor=2, brackets=2)
    obs = run_replay(bb, scheduler_factory(strategy, space, bb.configuration_space, 3, mf, hparam_list=[2, 0, 3, 1],
                                           list_asha_entries=2), budget=20, seed=3).observations
    assert len(obs) >= 5
    end = 0.0
    for _, trial in obs.groupby("trial", sort=True):
        steps = trial["step"].to_numpy()
        assert list(steps) == list(range(1, len(steps) + 1))  # no fidelity skipped
        start = trial["time"].iloc[0] - steps[0]
        assert start == pytest.approx(end)  # the single worker is never idle nor doubly used
        np.testing.assert_allclose(trial["time"], start + steps)
        c = int(trial["config"].iloc[0])
        np.testing.assert_array_equal(trial["select"], select[c, steps - 1])
        np.testing.assert_array_equal(trial["report"], report[c, steps - 1])
        end = float(trial["time"].iloc[-1])
    if strategy == "list":
        assert obs.drop_duplicates("trial")["config"].tolist()[:4] == [2, 0, 3, 1]


def test_mf_prior_bench_export_reads_back_equal_to_store(store, tmp_path):
    from taskset_lab.replay.mfpbench_export import export_mf_prior_bench, read_mf_prior_bench_table

    paths = export_mf_prior_bench(store, tmp_path / "mfp")
    assert sorted(p.name for p in paths) == [f"{t}-toyopt_4_replica2.parquet" for t, _ in TASKS]
    curves, runs = read_curves(store), read_runs(store)
    for task, _ in TASKS:
        table = read_mf_prior_bench_table(tmp_path / "mfp", task, "toyopt", 4, 2, na_with_inf=False)
        assert table.index.names == ["id", "epoch"] and len(table) == 4 * 5
        # the mean over replicas as TaskSet's processing takes it (np.mean: a NaN replica makes NaN)
        mean = curves[curves.task == task].groupby(["config_id", "step"])[list(SPLITS)].agg(
            lambda x: float(np.mean(x.to_numpy(dtype=np.float64))))
        for (cid, step), row in mean.iterrows():
            got = table.loc[(cid, step + 1)]
            assert got["step"] == step
            np.testing.assert_allclose([got["train_loss"], got["valid1_loss"], got["valid2_loss"], got["test_loss"]],
                                       row.to_numpy(dtype=float), rtol=1e-6, equal_nan=True)
            hp = json.loads(runs[(runs.task == task) & (runs.config_id == cid)]["hparams"].iloc[0])
            assert got["lr"] == hp["lr"] and bool(got["nesterov"]) == hp["nesterov"]
        # the loader's own steps: NaN -> inf, and without step 0 the epochs start at 1 again
        loaded = read_mf_prior_bench_table(tmp_path / "mfp", task, "toyopt", 4, 2, remove_zero_step=True)
        assert len(loaded) == 4 * 4 and (loaded["step"] > 0).all()
        assert loaded.index.get_level_values("epoch").min() == 1
        assert not loaded[["valid1_loss", "test_loss"]].isna().any().any()
    diverged = read_mf_prior_bench_table(tmp_path / "mfp", "taskA", "toyopt", 4, 2)
    assert np.isinf(diverged.loc[(1, 5), "valid1_loss"])  # config 1 diverged at step 3 in one replica


def test_seconds_clock_costs():
    """clock=seconds: each config's measured seconds per step, scaled so an average full run costs T."""
    from taskset_lab.replay.benchmark import task_costs
    from taskset_lab.replay.fidelity import FidelityValues

    steps = np.array([2, 4])
    fv = FidelityValues(tasks=["a"], families=["f"], config_ids=np.arange(2), steps=steps,
                        select=np.zeros((1, 2, 2)), report=np.zeros((1, 2, 2)), cap=1.5)
    seconds = np.array([[1.0, 3.0]])  # config 1 is three times slower
    cost = task_costs(fv, "seconds", seconds, total_steps=4)
    np.testing.assert_allclose(cost[0], [[1.0, 2.0], [3.0, 6.0]])  # mean full run (2 s) = 4 units
    np.testing.assert_allclose(task_costs(fv, "steps", None, 4)[0], [[2, 4], [2, 4]])
    with pytest.raises(ValueError, match="seconds"):
        task_costs(fv, "seconds", np.array([[1.0, np.nan]]), total_steps=4)
