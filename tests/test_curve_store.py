"""The Parquet curve store and curve collection: layout, atomic parts, filtered reads,
sharding, skipping finished parts, and a collection killed mid-run then resumed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from taskset_lab.curves import list_parts, part_done, part_name, read_curves, read_runs, write_part
from taskset_lab.curves.collect import collect_curves, work_items
from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.errors import DataError
from taskset_lab.pipelines.curves import format_summary
from taskset_lab.tasks import SPLITS, sample_task_config, task_name

REPO = Path(__file__).resolve().parents[1]


def _frames(task: str, optimizer: str, config_ids, replica: int, steps=(0, 5, 10), seed: int = 0):
    rng = np.random.default_rng(seed)
    n = len(steps)
    curves = pd.DataFrame({
        "task": task, "task_family": task.rsplit("_", 1)[0], "optimizer": optimizer,
        "config_id": np.repeat(np.asarray(config_ids, dtype=np.int32), n),
        "replica": np.int16(replica),
        "step": np.tile(np.asarray(steps, dtype=np.int32), len(config_ids)),
        **{s: rng.random(n * len(config_ids)).astype(np.float32) for s in SPLITS},
    })
    runs = pd.DataFrame({
        "task": task, "task_family": task.rsplit("_", 1)[0], "task_config": "{}", "optimizer": optimizer,
        "config_id": np.asarray(config_ids, dtype=np.int32), "replica": np.int16(replica),
        "hparams": "{}", "config_seed": np.asarray(config_ids, dtype=np.int64), "status": "ok",
        "diverged_step": np.int32(-1), "total_steps": np.int32(10), "eval_every": np.int32(5),
        "seconds": 0.1, "device": "cpu",
    })
    return curves, runs


@pytest.fixture
def small_store(tmp_path):
    store = tmp_path / "store"
    written = {}
    for t, task in enumerate(["lab_mlp_0000aaaa", "quadratic_family_1111bbbb"]):
        for opt in ("adam8p", "nadamw"):
            for chunk in range(2):
                part = part_name(task, opt, chunk, 0)
                curves, runs = _frames(task, opt, [2 * chunk, 2 * chunk + 1], 0, seed=len(written))
                write_part(store, part, curves, runs)
                written[part] = curves
    return store, written


def test_layout_and_round_trip(small_store):
    store, written = small_store
    assert sorted(p.name for p in (store / "curves").iterdir()) == sorted(f"{p}.parquet" for p in written)
    assert sorted(p.name for p in (store / "runs").iterdir()) == sorted(f"{p}.parquet" for p in written)
    assert list_parts(store) == sorted(written)
    df = read_curves(store)
    assert len(df) == sum(len(c) for c in written.values())
    assert list(df.columns) == ["task", "task_family", "optimizer", "config_id", "replica", "step", *SPLITS]
    assert str(df["config_id"].dtype) == "int32" and str(df["step"].dtype) == "int32"
    assert str(df["replica"].dtype) == "int16"
    expected = pd.concat(written.values()).sort_values(["task", "optimizer", "config_id", "step"])
    got = df.sort_values(["task", "optimizer", "config_id", "step"])
    np.testing.assert_array_equal(got["test"].to_numpy(), expected["test"].to_numpy())
    runs = read_runs(store)
    assert len(runs) == 2 * 2 * 2 * 2 and set(runs["status"]) == {"ok"}


def test_filters_and_column_selection(small_store):
    store, _ = small_store
    df = read_curves(store, tasks=["quadratic_family_1111bbbb"], optimizers="nadamw", config_ids=[1, 2],
                     splits=["test"])
    assert list(df.columns) == ["task", "task_family", "optimizer", "config_id", "replica", "step", "test"]
    assert set(df["task"]) == {"quadratic_family_1111bbbb"} and set(df["optimizer"]) == {"nadamw"}
    assert set(df["config_id"]) == {1, 2} and len(df) == 2 * 3
    fam = read_curves(store, task_families="lab_mlp", columns=["task", "step"])
    assert list(fam.columns) == ["task", "step"] and set(fam["task"]) == {"lab_mlp_0000aaaa"}
    runs = read_runs(store, optimizers=["adam8p"], config_ids=0, columns=["task", "config_id"])
    assert len(runs) == 2 and set(runs["config_id"]) == {0}
    assert len(read_curves(store, tasks=["no_such_task"])) == 0
    with pytest.raises(ValueError, match="unknown splits"):
        read_curves(store, splits=["training"])


def test_family_filter_reads_the_column_not_the_name(tmp_path):
    """A task's family is the column the collector wrote: a name that looks like another
    family's (a fixed task, a ``<family>_seed<N>`` name) is not parsed."""
    store = tmp_path / "store"
    for task, family in (("lab_mlp_0000cccc", "FixedMLP"), ("lab_mlp_seed3", "lab_mlp"), ("TwoD_Bowl1", "TwoD")):
        curves, runs = _frames(task, "adam8p", [0, 1], 0)
        curves["task_family"] = runs["task_family"] = family
        write_part(store, part_name(task, "adam8p", 0, 0), curves, runs)
    assert set(read_curves(store, task_families="FixedMLP")["task"]) == {"lab_mlp_0000cccc"}
    assert set(read_curves(store, task_families=["lab_mlp"])["task"]) == {"lab_mlp_seed3"}
    assert set(read_runs(store, task_families=["TwoD", "lab_mlp"])["task"]) == {"lab_mlp_seed3", "TwoD_Bowl1"}
    # the manifest the collector writes records each task's family: other families' parts are
    # not even opened (a broken one of them does not matter)
    (store / "manifest.json").write_text(json.dumps({"tasks": [{"name": "lab_mlp_seed3", "family": "lab_mlp"}]}))
    (store / "curves" / f"{part_name('lab_mlp_seed3', 'adam8p', 0, 0)}.parquet").write_bytes(b"broken")
    assert set(read_curves(store, task_families="TwoD")["task"]) == {"TwoD_Bowl1"}
    with pytest.raises(DataError, match="lab_mlp_seed3"):
        read_curves(store, task_families="lab_mlp")


def test_missing_empty_and_broken_stores(tmp_path, small_store):
    with pytest.raises(DataError, match="does not exist"):
        read_curves(tmp_path / "nowhere")
    (tmp_path / "empty" / "curves").mkdir(parents=True)
    with pytest.raises(DataError, match="no finished parts"):
        read_runs(tmp_path / "empty")
    store, written = small_store
    broken = store / "curves" / f"{sorted(written)[1]}.parquet"
    broken.write_bytes(b"not a parquet file at all")
    with pytest.raises(DataError, match=broken.name):
        read_curves(store)


def test_tmp_leftovers_ignored_and_part_done_marks_curves_file(small_store, monkeypatch):
    store, written = small_store
    (store / "curves" / "mlp_0000aaaa__adam8p__c0009__r00.parquet.1234abcd.tmp").write_bytes(b"half a file")
    assert len(read_curves(store)) == sum(len(c) for c in written.values())
    # a writer killed between the runs file and the curves file leaves an unfinished part
    import taskset_lab.curves.store as store_mod

    real = store_mod._atomic_write
    part = part_name("lab_mlp_0000aaaa", "adam8p", 7, 0)

    def die_on_curves(table, path):
        if path.parent.name == "curves":
            raise KeyboardInterrupt("killed")
        real(table, path)

    monkeypatch.setattr(store_mod, "_atomic_write", die_on_curves)
    with pytest.raises(KeyboardInterrupt):
        write_part(store, part, *_frames("lab_mlp_0000aaaa", "adam8p", [14, 15], 0))
    assert (store / "runs" / f"{part}.parquet").exists() and not part_done(store, part)
    assert 14 not in set(read_runs(store)["config_id"])  # readers go by finished parts
    assert not list((store / "runs").glob("*.tmp"))


# ----------------------------------------------------------------- collection

# a 2-D sparse bowl (losg_tasks_family seed 12) and a 5-dimensional noisy quadratic
TINY_SPECS = [sample_task_config("losg_tasks_family", 12), sample_task_config("quadratic_family", 1, {"dims": 5})]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["task", "config_id", "replica", "step"]).reset_index(drop=True)


def test_collect_matches_engine_and_records_runs(tmp_path):
    from taskset_lab.engine import train_population
    from taskset_lab.optim import get_optimizer_family
    from taskset_lab.tasks import build_task

    spec = CollectionSpec("adam4p", num_configs=5, total_steps=12, eval_every=5, config_seed_offset=100,
                          replicas=2, eval_batches=2, chunk_size=2, progress=False, dtype="float64", device="cpu")
    summary = collect_curves(spec, TINY_SPECS, tmp_path / "s")
    assert summary["parts_total"] == 2 * 3 * 2 and summary["parts_done"] == 12 and summary["parts_skipped"] == 0
    assert summary["config_steps"] == 2 * 5 * 2 * 12 and summary["config_steps_per_s"] > 0
    curves = read_curves(tmp_path / "s")
    assert len(curves) == 2 * 5 * 2 * len([0, 5, 10, 12])
    assert not curves.duplicated(["task", "config_id", "replica", "step"]).any()
    assert str(curves["test"].dtype) == "float64"
    runs = read_runs(tmp_path / "s")
    fam = get_optimizer_family("adam4p")
    for _, row in runs.iterrows():
        assert json.loads(row["hparams"]) == pytest.approx(fam.sample(100 + row["config_id"]))
        assert row["config_seed"] == 100 + row["config_id"]
    # the store holds exactly what the engine gives for that task, replica and configs
    spec = TINY_SPECS[1]
    name = task_name(spec)
    assert set(curves.loc[curves["task"] == name, "task_family"]) == {"quadratic_family"}
    ref = train_population(build_task(spec), fam, [fam.sample(100 + i) for i in range(5)], 12, 5,
                           eval_batches=2, replica=1, dtype=torch.float64)
    mine = curves[(curves["task"] == name) & (curves["replica"] == 1)].sort_values(["config_id", "step"])
    np.testing.assert_allclose(mine["valid_outer"].to_numpy(), ref.losses["valid_outer"].numpy().reshape(-1),
                               rtol=1e-12)
    assert json.loads(runs[runs["task"] == name]["task_config"].iloc[0]) == spec


def test_collector_writes_the_tasks_own_name_and_family(tmp_path, monkeypatch):
    from taskset_lab.tasks.task_set import TaskSpec

    real = TaskSpec.build

    def build_fixed_kind(self, **kw):  # a task whose family is not its config's (a fixed task's kind)
        task = real(self, **kw)
        task.family = "FixedKind"
        return task

    monkeypatch.setattr(TaskSpec, "build", build_fixed_kind)
    spec = CollectionSpec("adam1p", num_configs=2, total_steps=2, eval_every=1, eval_batches=1, progress=False,
                          device="cpu")
    collect_curves(spec, TINY_SPECS[:1], tmp_path / "s")
    curves, runs = read_curves(tmp_path / "s"), read_runs(tmp_path / "s")
    assert set(curves["task_family"]) == set(runs["task_family"]) == {"FixedKind"}
    assert set(curves["task"]) == set(runs["task"]) == {task_name(TINY_SPECS[0])}


def test_shards_partition_the_work_and_finished_parts_are_skipped(tmp_path):
    spec = CollectionSpec("adam1p", num_configs=3, total_steps=6, eval_every=3, replicas=2, eval_batches=1,
                          chunk_size=2, progress=False, device="cpu")
    shard = {i: dataclasses.replace(spec, shard_index=i, num_shards=3) for i in range(3)}
    items = work_items(TINY_SPECS, "adam1p", 3, 2, 2)
    assert [it.index for it in items] == list(range(8)) and len({it.part for it in items}) == 8
    s0 = collect_curves(shard[0], TINY_SPECS, tmp_path / "sh")
    s1 = collect_curves(shard[1], TINY_SPECS, tmp_path / "sh")
    assert (s0["parts_done"], s1["parts_done"]) == (3, 3)  # items 0,3,6 and 1,4,7
    assert set(list_parts(tmp_path / "sh")) == {items[i].part for i in (0, 1, 3, 4, 6, 7)}
    again = collect_curves(shard[1], TINY_SPECS, tmp_path / "sh")
    assert (again["parts_done"], again["parts_skipped"]) == (0, 3)
    full = collect_curves(spec, TINY_SPECS, tmp_path / "sh")
    assert (full["parts_done"], full["parts_skipped"]) == (2, 6)
    alone = collect_curves(spec, TINY_SPECS, tmp_path / "one")
    pd.testing.assert_frame_equal(_sorted(read_curves(tmp_path / "sh")), _sorted(read_curves(tmp_path / "one")))
    with pytest.raises(DataError, match="other settings"):
        collect_curves(dataclasses.replace(spec, total_steps=9), TINY_SPECS, tmp_path / "one")
    assert alone["parts_done"] == 8
    assert "(shard 1/3): 0 parts run, 3 already done; diverged -" in format_summary(again)
    line = format_summary(alone)
    assert "8 parts run, 0 already done" in line and f"diverged {alone['diverged_fraction']:.1%}" in line


KILL_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import taskset_lab.curves.store as store
    real = store._atomic_write
    def slow_write(table, path):  # a slow disk: makes the kill land inside the collection
        time.sleep(0.3)
        real(table, path)
    store._atomic_write = slow_write
    from taskset_lab.curves.collect import collect_curves
    from taskset_lab.curves.spec import CollectionSpec
    kw = json.loads(sys.argv[2])
    collect_curves(CollectionSpec(**kw["spec"]), kw["task_specs"], sys.argv[1])
""")
KILL_SPEC = CollectionSpec("adam8p", num_configs=4, total_steps=30, eval_every=10, replicas=2, eval_batches=2,
                           chunk_size=2, progress=False, device="cpu")
KILL_TASKS = [sample_task_config("losg_tasks_family", 16), sample_task_config("quadratic_family", 4, {"dims": 6})]


def test_killed_collection_resumes_to_the_same_store(tmp_path):
    store = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    kw = {"spec": dataclasses.asdict(KILL_SPEC), "task_specs": KILL_TASKS}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(store), json.dumps(kw)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((store / "curves").glob("*.parquet")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no part appeared"
            time.sleep(0.05)
        assert proc.poll() is None, "the collection finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    total = len(work_items(KILL_TASKS, "adam8p", 4, 2, 2))
    done_before = len(list_parts(store))
    assert 1 <= done_before < total
    # a leftover temporary file, as a kill during a write leaves one
    (store / "curves" / "two_d_deadbeef__adam8p__c0000__r00.parquet.0badf00d.tmp").write_bytes(b"PAR1 trunc")

    resumed = collect_curves(KILL_SPEC, KILL_TASKS, store)
    assert resumed["parts_skipped"] == done_before and resumed["parts_done"] == total - done_before
    assert len(list_parts(store)) == total
    curves = read_curves(store)
    assert not curves.duplicated(["task", "config_id", "replica", "step"]).any()
    assert len(curves) == 2 * 4 * 2 * 4  # tasks x configs x replicas x eval steps
    collect_curves(KILL_SPEC, KILL_TASKS, tmp_path / "clean")
    pd.testing.assert_frame_equal(_sorted(curves), _sorted(read_curves(tmp_path / "clean")))
    runs = read_runs(store)
    assert len(runs) == 2 * 4 * 2 and not runs.duplicated(["task", "config_id", "replica"]).any()


def test_collection_without_a_terminal_logs_one_line_per_part(tmp_path, caplog):
    caplog.set_level("INFO", logger="taskset_lab.curves.collect")
    spec = CollectionSpec("adam1p", num_configs=3, total_steps=4, eval_every=2, eval_batches=1, chunk_size=2,
                          progress=True, device="cpu")  # pytest: no tty
    summary = collect_curves(spec, TINY_SPECS, tmp_path / "s")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    parts = work_items(TINY_SPECS, "adam1p", 3, 1, 2)
    assert len(lines) == summary["parts_done"] == len(parts)
    assert lines[-1].startswith(f"[{len(parts)}/{len(parts)}] {parts[-1].part}: 1 configs in ")


def test_store_benchmark_queries_match_the_simple_way():
    """benchmarks/bench_store.py checks read_curves against plain pandas filtering."""
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(repo / "benchmarks" / "bench_store.py"), "--tasks", "8",
                          "--configs", "4", "--evals", "3", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    rows = {name: q["rows_returned"] for name, q in report["queries"].items()}
    assert rows == {"one_task": 12, "family_test_split": 24, "configs_0_to_7": 96, "everything": 96}
    assert all(q["speedup_vs_simple"] > 0 for q in report["queries"].values())


_HOLD_CLAIM = textwrap.dedent("""
    import sys, time
    from taskset_lab.curves.store import claim_part
    assert claim_part(sys.argv[1], sys.argv[2])
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_claim_left_by_a_killed_writer_is_cleared_and_a_live_one_kept(tmp_path):
    """The root of the leftover-claim failure: a writer killed after writing its part but
    before releasing its claim leaves claims/<part>.claim behind; nothing will ever claim a
    finished part again, so the next collection must remove such files (and only those)."""
    from taskset_lab.curves.store import CLAIMS_DIR, clear_stale_claims

    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holders = {}
    for part in ("dead", "alive"):
        proc = subprocess.Popen([sys.executable, "-c", _HOLD_CLAIM, str(store), part], stdout=subprocess.PIPE,
                                text=True, env=env)
        assert proc.stdout.readline().strip() == "held"
        holders[part] = proc
    holders["dead"].kill()
    holders["dead"].wait()
    try:
        claims = store / CLAIMS_DIR
        assert sorted(p.name for p in claims.iterdir()) == ["alive.claim", "dead.claim"]
        assert clear_stale_claims(store) == ["dead"]
        assert sorted(p.name for p in claims.iterdir()) == ["alive.claim"]  # the live holder keeps its claim
        assert clear_stale_claims(store) == []
    finally:
        holders["alive"].kill()
        holders["alive"].wait()
    assert clear_stale_claims(store) == ["alive"]


def test_resuming_a_finished_store_removes_the_claims_of_killed_writers(tmp_path):
    """A complete store with a dead writer's claim file (its part written, its claim not given
    back): the resumed collection skips every part and leaves no claim behind."""
    spec = CollectionSpec("adam1p", num_configs=2, total_steps=2, eval_every=1, eval_batches=1, progress=False,
                          device="cpu")
    store = tmp_path / "s"
    collect_curves(spec, TINY_SPECS[:1], store)
    parts = list_parts(store)
    stale = store / "claims" / f"{parts[0]}.claim"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("host pid 1 since 2026-01-01T00:00:00\n")
    summary = collect_curves(spec, TINY_SPECS[:1], store)
    assert summary["parts_done"] == 0 and summary["parts_skipped"] == len(parts)
    assert not stale.exists()
