"""MTL under faults: a Ctrl-C during the single-task baselines, baselines of other settings,
damaged or non-finite baseline files and a diverged run never give a silently wrong Δm."""

from __future__ import annotations

import json
import math

import pytest

from conftest import compose, interrupt_tasklab, run_tasklab
from taskset_lab.cli import run_pipeline
from taskset_lab.errors import TasklabError

SMALL = ["total_steps=60", "eval_every=20"]
#: baselines long enough (about 1 s each) that a Ctrl-C sent once task 1's baseline is written
#: lands inside task 2's; at 60 steps task 2 took 0.2 s, the poll interval, and was sometimes done
LONGER = ["total_steps=400", "eval_every=100"]


def _run(out, *extra, steps=SMALL):
    return run_pipeline(compose("mtl_quickstart", [*steps, f"output_dir={out}", *extra]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("mtl_ref") / "run")


def test_interrupted_during_a_baseline_then_rerun_equals_uninterrupted(tmp_path, tmp_path_factory):
    reference = _run(tmp_path_factory.mktemp("mtl_ref_longer") / "run", steps=LONGER)
    out = tmp_path / "run"
    first = out / "stl_baseline" / "task_1" / "baseline.json"
    rc, _, stderr = interrupt_tasklab(["pipeline=MTL", "index=mtl_quickstart", *LONGER, f"output_dir={out}"],
                                      tmp_path, ready=first.is_file)
    assert rc == 130, stderr[-2000:]
    half = out / "stl_baseline" / "task_2"
    assert not (half / "baseline.json").exists() and not (half / "final_metrics.csv").exists()
    again = _run(out, steps=LONGER)
    assert again["delta_m"] == pytest.approx(reference["delta_m"], rel=1e-9, abs=1e-12)
    assert again["baseline"] == reference["baseline"]


def test_a_baseline_of_other_settings_is_retrained_never_compared(tmp_path, caplog):
    out = tmp_path / "run"
    _run(out)  # 60-step baselines in out/stl_baseline
    fresh = _run(tmp_path / "fresh", "total_steps=40")
    caplog.set_level("WARNING")
    reused = _run(out, "total_steps=40")
    assert reused["baseline"] == fresh["baseline"] and reused["delta_m"] == pytest.approx(fresh["delta_m"])
    assert any("other settings" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["binary", "nan", "no_task_record"])
def test_a_damaged_or_non_finite_baseline_is_reported_by_path_and_redone(tmp_path, reference, caplog, damage):
    out = tmp_path / "run"
    _run(out)
    folder = out / "stl_baseline" / "task_2"
    record = folder / "baseline.json"
    if damage == "binary":
        record.write_bytes(b"\x00\xff\xfe garbage")
    elif damage == "nan":
        data = json.loads(record.read_text())
        record.write_text(json.dumps({**data, "metrics": {k: math.nan for k in data["metrics"]}}))
    else:
        record.unlink()
    caplog.set_level("WARNING")
    again = _run(out)
    assert math.isfinite(again["delta_m"]) and again["delta_m"] == pytest.approx(reference["delta_m"])
    if damage != "no_task_record":
        assert any(str(folder) in r.getMessage() for r in caplog.records)


def test_a_non_finite_given_baseline_is_one_line_before_any_training(tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    (given / "final_metrics.csv").write_text("task,task_name,metric,value\n1,a,accuracy,nan\n2,b,accuracy,0.5\n"
                                             "3,c,mse,1.0\n")
    out = tmp_path / "run"
    with pytest.raises(TasklabError, match="non-finite"):
        _run(out, f"baseline={given}")
    assert not (out / "metrics.csv").exists()  # refused before the main model trained
    (given / "final_metrics.csv").write_bytes(b"\x00\x01\x02\xff")
    bad = run_tasklab(["pipeline=MTL", "index=mtl_quickstart", *SMALL, f"baseline={given}",
                       f"output_dir={tmp_path / 'run2'}"], cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and str(given) in bad.stderr, bad.stderr[-2000:]


def test_a_diverged_run_says_so_and_leaves_no_earlier_result(tmp_path):
    out = tmp_path / "run"
    _run(out)
    assert (out / "delta_m.csv").is_file()
    res = run_tasklab(["pipeline=MTL", "index=mtl_quickstart", *SMALL, "optimizer.lr=1e6", f"output_dir={out}"],
                      cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "MTL diverged" in res.stdout and "accuracy=" not in res.stdout.splitlines()[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["delta_m"] is None and summary["diverged_step"] is not None and summary["final"] == {}
    assert not (out / "delta_m.csv").exists() and not (out / "final_metrics.csv").exists()


def test_a_given_baseline_with_a_zero_metric_is_one_line_before_any_training(tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    (given / "final_metrics.csv").write_text("task,task_name,metric,value\n1,a,accuracy,0.9\n2,b,accuracy,0.5\n"
                                             "3,c,mse,0.0\n")
    out = tmp_path / "run"
    with pytest.raises(TasklabError, match=r"exactly 0 \(task: metric \{3: 'mse'\}\)"):
        _run(out, f"baseline={given}", "train_tasks=3", "eval_tasks=3")
    assert not (out / "metrics.csv").exists()  # refused before the main model trained


def test_a_rerun_after_an_interrupted_run_says_it_restarts(tmp_path, reference, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("step,epoch,split,task,metric,value\n20,0,test,1,accuracy,0.5\n")  # as Ctrl-C leaves
    caplog.set_level("WARNING")
    again = _run(out)
    assert any("does not resume" in r.getMessage() and "from step 0" in r.getMessage() for r in caplog.records)
    assert again["delta_m"] == pytest.approx(reference["delta_m"], rel=1e-9, abs=1e-12)
