"""Faults: kill -9 at random points (CURVES three times, TRAIN once) then resume equal to an
uninterrupted run; a full disk (a small tmpfs, where this machine lets us mount one); a
read-only folder; corrupted store parts; two concurrent writers on one store."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from taskset_lab.cli import run_pipeline
from taskset_lab.curves.store import CURVES_DIR, DAMAGED_DIR, RUNS_DIR, list_parts, read_curves, read_runs

from conftest import compose, kill_tasklab, one_error_line, run_tasklab

# 2 TwoD tasks x 3 configs, one config per part: 6 parts of a few milliseconds of compute each
SMALL = ["task_set.families=[]", "task_set.fixed=[TwoD_Bowl10,TwoD_Rosenbrock]", "search_space.num_configs=3",
         "total_steps=20", "eval_every=10", "learner.chunk_size=1", "learner.eval_batches=1", "progress=false",
         "learner.device=cpu"]
PARTS = 6
KEY = ["task", "config_id", "replica", "step"]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The small collection run once, uninterrupted (the store every fault test must equal)."""
    out = tmp_path_factory.mktemp("reference")
    run_pipeline(compose("curves_quickstart", [*SMALL, f"output_dir={out}"]))
    assert len(list_parts(out / "curves")) == PARTS
    return out / "curves"


def _assert_same_store(store: Path, reference: Path) -> None:
    assert sorted(list_parts(store)) == sorted(list_parts(reference))
    runs = read_runs(store)
    assert not runs.duplicated(["task", "config_id", "replica"]).any()
    pd.testing.assert_frame_equal(_sorted(read_curves(store)), _sorted(read_curves(reference)))


def test_curves_killed_three_times_then_resumed_equals_uninterrupted(tmp_path, reference):
    rng = random.Random(2026)
    store = tmp_path / "run" / "curves"
    args = ["pipeline=CURVES", "index=curves_quickstart", *SMALL, f"output_dir={tmp_path / 'run'}"]
    killed = 0
    for attempt in range(3):
        target = len(list_parts(store)) + 1
        rc, _, stderr = kill_tasklab(args, tmp_path, ready=lambda: len(list_parts(store)) >= target,
                                     delay=rng.uniform(0.0, 0.05))
        assert rc in (-9, 0), stderr[-2000:]
        killed += rc == -9
    assert killed >= 2, "the runs finished before they could be killed"
    # the same command again completes the store; nothing is lost or duplicated
    summary = run_pipeline(compose("curves_quickstart", [*SMALL, f"output_dir={tmp_path / 'run'}"]))
    assert summary["parts_skipped"] + summary["parts_done"] == PARTS
    _assert_same_store(store, reference)
    assert not list((store / "claims").glob("*.claim"))  # every claim went back with its part


def test_train_killed_then_resumed_equals_uninterrupted(tmp_path):
    args = ["debug=train", "total_steps=120", "eval_every=10", "logger=csv"]
    full = tmp_path / "full"
    run_pipeline(compose("train_quadratic", [*args, f"output_dir={full}"]))
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "last.ckpt"
    rc, _, stderr = kill_tasklab(["pipeline=TRAIN", "index=train_quadratic", *args, f"output_dir={run}"], tmp_path,
                                 ready=checkpoint.is_file, delay=random.Random(7).uniform(0.0, 0.3))
    assert rc == -9, "TRAIN finished before it could be killed: " + stderr[-1000:]
    assert not (run / "summary.json").exists()
    summary = run_pipeline(compose("train_quadratic", [*args, f"output_dir={run}", "resume=true"]))
    assert summary["steps"] == 120
    pd.testing.assert_frame_equal(pd.read_csv(run / "curve.csv"), pd.read_csv(full / "curve.csv"), rtol=1e-6)
    evals = {name: pd.read_csv(d / "csv" / "metrics.csv").dropna(subset=["loss/test"]).set_index("step")["loss/test"]
             for name, d in (("run", run), ("full", full))}
    pd.testing.assert_series_equal(evals["run"], evals["full"], rtol=1e-6)


def test_corrupted_parts_are_reported_and_recomputed(tmp_path, reference, caplog):
    store = tmp_path / "run" / "curves"
    shutil.copytree(reference.parent, tmp_path / "run")
    parts = list_parts(store)
    truncated, garbage, missing_runs = parts[0], parts[1], parts[2]
    path = store / CURVES_DIR / f"{truncated}.parquet"
    path.write_bytes(path.read_bytes()[:100])
    (store / RUNS_DIR / f"{garbage}.parquet").write_bytes(b"not parquet at all" * 10)
    (store / RUNS_DIR / f"{missing_runs}.parquet").unlink()
    caplog.set_level("WARNING")
    summary = run_pipeline(compose("curves_quickstart", [*SMALL, f"output_dir={tmp_path / 'run'}"]))
    assert summary["parts_done"] == 3 and summary["parts_skipped"] == PARTS - 3
    for part in (truncated, garbage, missing_runs):
        assert any(part in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records), part
    assert len(list((store / DAMAGED_DIR).iterdir())) >= 3  # kept for inspection, out of every read
    _assert_same_store(store, reference)


def test_two_concurrent_writers_share_the_work(tmp_path, reference):
    store = tmp_path / "shared"
    procs = []
    from conftest import _tasklab

    for name in ("a", "b"):
        command, env = _tasklab(["pipeline=CURVES", "index=curves_quickstart", *SMALL,
                                 f"output_dir={tmp_path / name}", f"curves_dir={store}"])
        procs.append(subprocess.Popen(command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    summaries = [json.loads((tmp_path / n / "curves_summary.json").read_text()) for n in ("a", "b")]
    # every config was trained by exactly one of the writers
    assert sum(s["runs"] for s in summaries) == len(read_runs(reference))
    _assert_same_store(store, reference)
    # a third writer with other settings is refused, naming them, before it writes anything
    from taskset_lab.errors import TasklabError

    with pytest.raises(TasklabError, match="other settings.*total_steps=30"):
        run_pipeline(compose("curves_quickstart", [*SMALL, "total_steps=30", f"output_dir={tmp_path / 'c'}",
                                                   f"curves_dir={store}"]))
    _assert_same_store(store, reference)


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "size=512k"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path) -> None:
    """Write until the disk is full (unbuffered, so the last partial block is used too)."""
    for name, block in (("filler", 65536), ("filler2", 1)):
        try:
            with open(disk / name, "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * block)
        except OSError:
            pass


def test_full_disk_keeps_the_last_good_file_and_says_so_in_one_line(small_disk, tmp_path):
    from taskset_lab.files import write_csv_atomic

    good = pd.DataFrame({"step": [0, 10], "test": [1.0, 0.5]})
    path = write_csv_atomic(small_disk / "curve.csv", good)
    _fill(small_disk)
    bigger = pd.DataFrame({"step": range(5000), "test": [0.25] * 5000})
    with pytest.raises(OSError):
        write_csv_atomic(path, bigger)
    pd.testing.assert_frame_equal(pd.read_csv(path), good)  # the previous complete file
    assert [p.name for p in small_disk.iterdir() if p.name.endswith(".tmp")] == []
    # the CLI on a full disk: one line, exit 2
    line = one_error_line(run_tasklab(["pipeline=CURVES", "index=curves_quickstart", *SMALL,
                                        f"output_dir={small_disk / 'run'}"], tmp_path))
    assert "no space left" in line.lower()


def test_read_only_folder_is_one_line(tmp_path):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "ro,size=64k"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount)")
    try:
        line = one_error_line(run_tasklab(["pipeline=CURVES", "index=curves_quickstart", *SMALL,
                                            f"output_dir={where / 'run'}"], tmp_path))
        assert "read-only" in line and str(where) in line
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_figure_that_fails_to_save_leaves_the_old_file_and_no_temporary(tmp_path):
    """Every plot goes through viz.plots.save_figure: written to a temporary name and renamed,
    so a failing save (here an unknown format) keeps the previous figure and closes the new one."""
    from taskset_lab.viz.plots import pyplot, save_figure

    plt = pyplot()
    path = tmp_path / "plots" / "curve.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, path, dpi=50)
    before = path.read_bytes()
    assert before.startswith(b"\x89PNG") and not plt.fignum_exists(fig.number)
    bad = tmp_path / "plots" / "curve.nope"
    bad.write_bytes(b"old")
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="nope"):
        save_figure(fig, bad, dpi=50)
    assert bad.read_bytes() == b"old" and path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["curve.nope", "curve.png"]
    assert not plt.fignum_exists(fig.number)
