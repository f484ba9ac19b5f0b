"""TRANSFER under DDP: two CPU processes (gloo), launched by Lightning from the real CLI.

Slow by nature (Lightning starts a second `tasklab` process that imports torch again), so it
is one test with a timeout, a few steps, two trials run one after the other by both ranks."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_tasklab
from test_transfer import tiny, write_list


@pytest.mark.timeout(300)
def test_ddp_two_cpu_processes(tmp_path):
    list_path = write_list(tmp_path / "hparam_list.json")
    out = tmp_path / "ddp"
    args = ["pipeline=TRANSFER", "index=transfer_quickstart", *tiny(out, list_path, "pair=pydoc_transformer"),
            "total_steps=4", "eval_every=2", "methods.list.trials=1", "~methods.random", "~methods.adam_lr_grid",
            "~methods.reference", "trainer.strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            "+verbose=true"]  # Lightning's DDP start-up lines (hidden by default) show the two ranks
    proc = run_tasklab(args, tmp_path, timeout=280, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log and "distributed_backend=gloo" in log
    trials = sorted((out / "pydoc_transformer" / "trials").glob("*.json"))
    assert [p.stem for p in trials] == ["adam_default-k000", "list-k000"]
    for path in trials:
        record = json.loads(path.read_text())
        assert record["world_size"] == 2 and record["steps"] == 4 and record["status"] == "done"
        curve = pd.read_csv(path.with_suffix("") / "curve.csv")
        assert list(curve["step"]) == [2, 4] and curve[["train", "valid", "test"]].notna().all().all()
    table = pd.read_csv(out / "transfer.csv")
    assert sorted(table["method"]) == ["adam_default", "list"]
