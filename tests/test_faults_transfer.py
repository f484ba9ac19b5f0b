"""TRANSFER under faults: a damaged or missing trial file is reported by path and redone (never
a silently dropped method), a read-only archive still aggregates, and two processes on one
folder share the trials (each trained once, no shared temporary names)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import _tasklab, compose, run_tasklab
from taskset_lab.cli import run_pipeline

NADAMW = {"lr": 3e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "nesterov": 0, "decoupled_weight_decay": 0.0,
          "l2_weight_decay": 0.0, "warmup_fraction": 0.0, "min_lr_mult": 0.0, "constant_fraction": 1.0}
TRIALS = 7  # list x2, adam_default, adam_lr_grid, random x2 repeats, reference


def tiny(out: Path, list_path: Path, *extra: str) -> list[str]:
    """transfer_quickstart on its image pair only, 2 steps: seconds per run."""
    return [f"output_dir={out}", f"list={list_path}", "total_steps=2", "eval_every=1", "pair=digits_resnet",
            "methods.list.trials=2", "methods.adam_lr_grid.trials=1", "methods.random.trials=1",
            "methods.random.repeats=2", "pairs.digits_resnet.data.batch_size=8",
            "pairs.digits_resnet.data.max_eval_examples=64", "pairs.digits_resnet.data.eval_batch_size=64", *extra]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run (only read: tests work on copies)."""
    root = tmp_path_factory.mktemp("transfer_faults")
    list_path = root / "hparam_list.json"
    list_path.write_text(json.dumps({"optimizer": "nadamw", "entries": [
        {"rank": 0, "hparams": NADAMW}, {"rank": 1, "hparams": {**NADAMW, "lr": 1e-2}}]}))
    summary = run_pipeline(compose("transfer_quickstart", tiny(root / "run", list_path)))
    assert summary["trials_finished"] == TRIALS
    return root / "run", list_path


DAMAGES = {"binary": b"\x00\xff\xfe\x80 garbage", "truncated": None, "null": b"null", "list": b"[1, 2]",
           "valid_not_a_number": "abc", "empty_object": b"{}"}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_trial_file_is_reported_by_path_and_redone(tmp_path, finished, damage, caplog):
    run, list_path = finished
    out = tmp_path / "run"
    shutil.copytree(run, out)
    path = out / "digits_resnet" / "trials" / "list-k000.json"
    original = path.read_text()
    if damage == "truncated":
        path.write_text(original[: len(original) // 2])
    elif damage == "valid_not_a_number":
        path.write_text(json.dumps({**json.loads(original), "valid": "abc"}))
    else:
        path.write_bytes(DAMAGES[damage])
    bad = path.read_bytes()
    # aggregating names the file and what it leaves out: list-k001 is finished but not counted
    summary = run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "trial=aggregate")))
    assert len(summary["damaged_trials"]) == 1 and summary["damaged_trials"][0].startswith(f"{path}: ")
    assert summary["uncounted_trials"] == ["digits_resnet: 1 finished list trial(s) not counted (list-k001): "
                                           "list-k000 is missing or damaged"]
    table = (out / "transfer_table.txt").read_text()
    assert f"not counted, damaged trial file {path}" in table and "trial=all" in table
    # the same command with trial=all redoes it; the damaged bytes are kept aside
    caplog.set_level("WARNING")
    again = run_pipeline(compose("transfer_quickstart", tiny(out, list_path)))
    assert again["damaged_trials"] == [] and again["uncounted_trials"] == [] and again["trials_finished"] == TRIALS
    assert any(str(path) in r.getMessage() and "run again" in r.getMessage() for r in caplog.records)
    assert path.with_name("list-k000.json.damaged").read_bytes() == bad
    assert (out / "transfer.csv").read_text() == (run / "transfer.csv").read_text()


def test_a_claim_left_by_a_killed_process_blocks_nothing(tmp_path, finished):
    run, list_path = finished
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / "digits_resnet" / "trials" / "list-k001.json").unlink()
    stale = out / "digits_resnet" / "claims" / "list-k001.claim"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("vm pid 999999 since 2026-01-01T00:00:00\n")  # no process holds its lock
    summary = run_pipeline(compose("transfer_quickstart", tiny(out, list_path)))
    assert summary["trials_finished"] == TRIALS and "trials_elsewhere" not in summary
    assert not list(stale.parent.iterdir())
    assert (out / "transfer.csv").read_text() == (run / "transfer.csv").read_text()


def test_two_processes_on_one_folder_share_the_trials(tmp_path, finished):
    run, list_path = finished
    out = tmp_path / "shared"
    args = ["pipeline=TRANSFER", "index=transfer_quickstart", *tiny(out, list_path)]
    command, env = _tasklab(args, env={"OMP_NUM_THREADS": "1"})
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen(command, cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=env))
        time.sleep(0.5)
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [line for text in logs for line in text.splitlines() if " for 2 steps -> " in line]
    assert len(trained) == TRIALS, "\n".join(trained)  # every trial trained once, by one of them
    assert not list(out.rglob("*.tmp")) and not list((out / "digits_resnet" / "claims").iterdir())
    final = run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "trial=aggregate")))
    assert final["trials_finished"] == TRIALS
    assert (out / "transfer.csv").read_text() == (run / "transfer.csv").read_text()


def _mount_read_only_copy(source: Path, where: Path) -> bool:
    import os

    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True).returncode:
        return False
    shutil.copytree(source, where / "run")
    return subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True).returncode == 0


def test_a_read_only_archive_aggregates_and_a_run_there_is_one_line(tmp_path, finished):
    run, list_path = finished
    where = tmp_path / "ro"
    if not _mount_read_only_copy(run, where):
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount)")
    try:
        out = where / "run"
        shown = run_tasklab(["pipeline=TRANSFER", "index=transfer_quickstart", *tiny(out, list_path),
                             "trial=aggregate"], cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr[-2000:]
        assert "results not written" in shown.stdout and "read-only" in shown.stdout
        assert (run / "transfer_table.txt").read_text() in shown.stdout  # the same table, printed
        again = run_tasklab(["pipeline=TRANSFER", "index=transfer_quickstart", *tiny(out, list_path)], cwd=tmp_path)
        errors = [line for line in again.stderr.splitlines() if line.strip()]
        assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr[-2000:]
        assert errors[-1].startswith("tasklab: error: ") and "read-only" in errors[-1] and str(out) in errors[-1]
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
