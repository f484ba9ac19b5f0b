"""The TRANSFER pipeline: shipped indexes compose, the quickstart runs end to end on tiny
settings, a partial run resumes skipping finished trials, divergence is recorded, and the
"best after k trials" aggregation is right."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, compose
from taskset_lab.cli import run_pipeline
from taskset_lab.errors import ConfigError, TasklabError

TRANSFER_INDEXES = sorted(p.stem for p in (REPO / "example_configs" / "index").glob("transfer_*.yaml"))
NADAMW = {"lr": 3e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "nesterov": 0, "decoupled_weight_decay": 0.0,
          "l2_weight_decay": 0.0, "warmup_fraction": 0.0, "min_lr_mult": 0.0, "constant_fraction": 1.0}


def write_list(path: Path) -> Path:
    """A 2-entry list in the documented format; entry 1 has a rate that must diverge."""
    entries = [{"rank": 0, "hparams": NADAMW}, {"rank": 1, "hparams": {**NADAMW, "lr": 1.0e3}}]
    path.write_text(json.dumps({"optimizer": "nadamw", "entries": entries}))
    return path


def tiny(out: Path, list_path: Path, *extra: str) -> list[str]:
    """transfer_quickstart shrunk to seconds: 2 steps, tiny models, 7 trials per pair."""
    return [f"output_dir={out}", f"list={list_path}", "total_steps=2", "eval_every=1",
            "methods.list.trials=2", "methods.adam_lr_grid.trials=1", "methods.random.trials=1",
            "methods.random.repeats=2", "pairs.digits_resnet.data.batch_size=8",
            "pairs.digits_resnet.data.max_eval_examples=64", "pairs.digits_resnet.data.eval_batch_size=64",
            "pairs.pydoc_transformer.data.seq_len=16", "pairs.pydoc_transformer.model.max_len=16",
            "pairs.pydoc_transformer.data.eval_batches=1", "pairs.pydoc_transformer.model.d_model=16",
            "pairs.pydoc_transformer.model.d_ff=32", *extra]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """One tiny quickstart run shared by the tests below (its outputs are only read)."""
    root = tmp_path_factory.mktemp("transfer")
    list_path = write_list(root / "hparam_list.json")
    out = root / "run"
    summary = run_pipeline(compose("transfer_quickstart", tiny(out, list_path)))
    return out, list_path, summary


@pytest.mark.parametrize("index", TRANSFER_INDEXES)
def test_every_transfer_index_composes_and_builds_its_models(index):
    from hydra.utils import instantiate

    from taskset_lab.pipelines import get_pipeline
    from taskset_lab.transfer import plan_trials

    assert {"transfer_quickstart", "transfer_resnet50_imagenet", "transfer_transformer_lm1b"} <= set(TRANSFER_INDEXES)
    cfg = compose(index, ["list=unused"])
    assert cfg.pipeline == "TRANSFER" and get_pipeline(cfg.pipeline).name == "TRANSFER"
    specs = plan_trials(cfg.methods)
    assert specs[0].k == 0 and [s.k for s in specs] == sorted(s.k for s in specs)
    for name, pair in cfg.pairs.items():
        assert pair.kind in ("classifier", "lm"), name
        model = instantiate(pair.model)
        assert sum(p.numel() for p in model.parameters()) > 0
        assert pair.data._target_.startswith("taskset_lab.transfer.")
    if index == "transfer_resnet50_imagenet":
        assert type(model).__name__ == "ResNet" and len(model.layer3) == 6  # resnet50: [3, 4, 6, 3]
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.precision == "bf16-mixed"


def test_quickstart_end_to_end(quickstart_run):
    out, _, summary = quickstart_run
    table = pd.read_csv(out / "transfer.csv")
    trials = list(out.glob("*/trials/*.json"))
    assert len(trials) == 2 * 7 and summary["trials_finished"] == 14
    assert set(table["pair"]) == {"digits_resnet", "pydoc_transformer"}
    assert set(table["method"]) == {"list", "adam_default", "adam_lr_grid", "random", "reference"}
    for pair in ("digits_resnet", "pydoc_transformer"):
        part = table[table["pair"] == pair].set_index(["method", "k"])
        rec = {p.stem: json.loads(p.read_text()) for p in (out / pair / "trials").glob("*.json")}
        # list entry 1 (lr 1e3) diverges and is recorded; best after 2 keeps entry 0
        assert rec["list-k001"]["status"] == "diverged" and rec["list-k001"]["diverged_step"] is not None
        assert rec["list-k000"]["status"] == "done" and rec["list-k000"]["steps"] == 2
        assert part.loc[("list", 1), "valid_loss"] == pytest.approx(rec["list-k000"]["valid"])
        assert part.loc[("list", 2), "test_loss"] == pytest.approx(rec["list-k000"]["test"])
        assert part.loc[("list", 2), "diverged"] == 1
        # random: mean and spread over its 2 repetitions
        runs = [rec["random-r0-k000"]["test"], rec["random-r1-k000"]["test"]]
        assert part.loc[("random", 1), "test_loss"] == pytest.approx(sum(runs) / 2)
        assert part.loc[("random", 1), "repeats"] == 2 and part.loc[("random", 1), "test_loss_std"] > 0
        # the one-trial methods keep their value at every k of the run
        assert part.loc[("adam_default", 2), "test_loss"] == part.loc[("adam_default", 1), "test_loss"]
        curve = pd.read_csv(out / pair / "trials" / "list-k000" / "curve.csv")
        assert list(curve["step"]) == [1, 2] and curve[["train", "valid", "test"]].notna().all().all()
        assert curve["test"].iloc[-1] == pytest.approx(rec["list-k000"]["test"])
    digits = pd.read_csv(out / "digits_resnet" / "trials" / "reference-k000" / "curve.csv")
    assert digits["test_accuracy"].between(0, 1).all()
    text = (out / "transfer_table.txt").read_text()
    first = table.query("pair == 'digits_resnet' and method == 'list' and k == 1")["test_loss"].iloc[0]
    assert f"{first:.4f}" in text and "k=5" in text
    assert summary["test_loss_after_k"]["digits_resnet"]["list"][1] == pytest.approx(first)
    assert (out / "transfer.png").stat().st_size > 10_000


def test_resume_skips_finished_trials_and_redoes_the_rest(quickstart_run, tmp_path):
    import shutil

    src, list_path, _ = quickstart_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    # a killed run: one trial never finished (no .json, a half-written .tmp and a partial folder)
    lost = out / "pydoc_transformer" / "trials" / "adam_lr_grid-k000.json"
    lost.rename(lost.with_name(lost.name + ".tmp"))
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/trials/*.json")}
    summary = run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "pair=pydoc_transformer")))
    assert lost.is_file() and summary["trials_finished"] == 14
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing finished was redone
    redone = json.loads(lost.read_text())
    assert redone["status"] == "done" and redone["optimizer"] == {"kind": "adam", "lr": 1e-3}
    # the same setup in a new folder with another step count refuses to mix results
    with pytest.raises(ConfigError, match="output_dir.*total_steps"):
        run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "total_steps=3", "trial=adam_default:0")))


def test_single_trial_job_and_aggregate_only(quickstart_run, tmp_path):
    _, list_path, _ = quickstart_run
    out = tmp_path / "jobs"
    run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "trial=adam_default:0", "pair=pydoc_transformer")))
    done = sorted(p.name for p in out.glob("*/trials/*.json"))
    assert done == ["adam_default-k000.json"]
    summary = run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "trial=aggregate")))
    assert summary["trials_finished"] == 1
    table = pd.read_csv(out / "transfer.csv")
    assert list(table["method"]) == ["adam_default"] and list(table["k"]) == [1]


@pytest.mark.parametrize("override, field", [
    ("trial=list:5", "trial"), ("trial=sgd:0", "trial"), ("trial=list@1:0", "trial"),
    ("pair=nope", "pair"), ("eval_every=50", "eval_every"), ("methods.adam_lr_grid.trials=20", "lrs"),
    ("pairs.digits_resnet.kind=regression", "kind"),
])
def test_bad_settings_name_the_field(override, field, tmp_path):
    list_path = write_list(tmp_path / "l.json")
    with pytest.raises(ConfigError, match=field):
        run_pipeline(compose("transfer_quickstart", tiny(tmp_path / "o", list_path, override)))


def test_list_names_pass_through_to_the_optim_functions(tmp_path):
    # an unknown name/path is reported by taskset_lab.optim itself, before any training
    with pytest.raises(TasklabError, match="no_such_list"):
        run_pipeline(compose("transfer_quickstart", tiny(tmp_path / "o", Path("no_such_list"))))
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*/trials/*.json"))


def test_best_after_k_on_known_trials():
    from taskset_lab.transfer.results import best_after_k, format_table

    rows = []
    for k, (valid, test, status) in enumerate([(3.0, 3.1, "done"), (math.inf, math.inf, "diverged"),
                                               (2.0, 2.5, "done"), (2.5, 1.0, "done")]):
        rows.append({"pair": "p", "method": "list", "k": k, "repeat": 0, "trial": f"list:{k}", "status": status,
                     "valid": valid, "test": test, "valid_accuracy": None, "test_accuracy": None})
    for r, values in enumerate([(4.0, 1.0), (2.0, 3.0)]):
        for k, v in enumerate(values):
            rows.append({"pair": "p", "method": "random", "k": k, "repeat": r, "trial": f"random@{r}:{k}",
                         "status": "done", "valid": v, "test": v + 0.5, "valid_accuracy": None,
                         "test_accuracy": None})
    rows.append({"pair": "p", "method": "reference", "k": 0, "repeat": 0, "trial": "reference:0", "status": "done",
                 "valid": 2.2, "test": 2.3, "valid_accuracy": None, "test_accuracy": None})
    table = best_after_k(pd.DataFrame(rows)).set_index(["method", "k"])
    assert list(table.loc["list", "valid_loss"]) == [3.0, 3.0, 2.0, 2.0]
    assert list(table.loc["list", "test_loss"]) == [3.1, 3.1, 2.5, 2.5]  # the best on valid, not on test
    assert list(table.loc["list", "diverged"]) == [0, 1, 1, 1]
    assert list(table.loc["random", "valid_loss"]) == [3.0, 1.5]  # mean of (4, 2) and of (1, 2)
    assert table.loc[("random", 1), "valid_loss_std"] == pytest.approx(1.0)
    assert list(table.loc["reference", "test_loss"]) == [2.3] * 4
    text = format_table(best_after_k(pd.DataFrame(rows)), ks=(1, 3, 10))
    assert "3.1000" in text and "2.5000" in text and "2.0000 ± 0.0000" not in text
    # a missing trial ends the prefix: without list:2 the list stops at k=2
    partial = best_after_k(pd.DataFrame([r for r in rows if r["trial"] != "list:2"]))
    assert partial[partial["method"] == "list"]["k"].max() == 2


def test_trial_names_round_trip():
    from taskset_lab.transfer.methods import parse_trial

    for text in ("list:0", "adam_lr_grid:9", "random@2:3", "reference:0"):
        spec = parse_trial(text)
        assert str(spec) == text and spec.name.endswith(f"k{spec.k:03d}")
    assert parse_trial("random@0:4").name == "random-r0-k004"


def test_reference_recipe_scales_lr_and_warms_up():
    import torch

    from taskset_lab.transfer.methods import build_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    opt, sched = build_optimizer({"kind": "reference", "optimizer": "sgd", "lr": 0.1, "lr_batch": 256,
                                  "momentum": 0.9, "weight_decay": 1e-4, "warmup_fraction": 0.1,
                                  "decay": "cosine"}, params, total_steps=100, global_batch=512)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2 / 10) and max(lrs) == pytest.approx(0.2)  # 0.1 x 512/256
    assert lrs[9] == pytest.approx(0.2) and lrs[-1] < 0.001 and opt.param_groups[0]["momentum"] == 0.9
    opt, sched = build_optimizer({"kind": "reference", "optimizer": "adam", "lr": 1e-3, "warmup_fraction": 0.04,
                                  "decay": "inverse_sqrt"}, params, total_steps=100, global_batch=32)
    for _ in range(16):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * math.sqrt(4 / 17))


@pytest.mark.skipif(os.environ.get("WANDB_MODE") != "offline", reason="W&B is only tested offline")
def test_wandb_logs_each_trial_offline(quickstart_run, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from wandb_offline import read_offline_history

    _, list_path, _ = quickstart_run
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "w"
    run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "trial=adam_default:0", "pair=pydoc_transformer",
                                                     "logger=wandb", "logger.wandb.project=tasklab-test")))
    runs = sorted((out / "pydoc_transformer" / "trials" / "adam_default-k000" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = [row["loss/valid"] for row in read_offline_history(runs[0]) if "loss/valid" in row]
    curve = pd.read_csv(out / "pydoc_transformer" / "trials" / "adam_default-k000" / "curve.csv")
    assert logged == pytest.approx(list(curve["valid"]), rel=1e-6)


def test_accumulation_and_bf16_count_optimizer_steps(quickstart_run, tmp_path):
    _, list_path, _ = quickstart_run
    out = tmp_path / "acc"
    run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "trial=list:0", "pair=pydoc_transformer",
                                                     "trainer.accumulate_grad_batches=2",
                                                     "trainer.precision=bf16-mixed")))
    record = json.loads((out / "pydoc_transformer" / "trials" / "list-k000.json").read_text())
    curve = pd.read_csv(out / "pydoc_transformer" / "trials" / "list-k000" / "curve.csv")
    assert record["steps"] == 2 and list(curve["step"]) == [1, 2]  # evaluations at optimizer steps
    assert record["status"] == "done" and math.isfinite(record["test"])


def test_the_divergence_rule_sees_every_reported_split():
    """TRANSFER reports train, valid and test losses: a trial whose test loss explodes (1,300
    against a bound of 5x the first loss) is diverged even when its training loss is fine."""
    from taskset_lab.transfer.module import is_diverged

    bound = 5.0 * 2.3
    assert not is_diverged({"train": 2.0, "valid": 2.1, "test": 2.2}, bound)
    assert is_diverged({"train": 2.0, "valid": 2.1, "test": 1300.0}, bound)
    assert is_diverged({"train": 2.0, "valid": math.nan, "test": 2.2}, bound)
    assert is_diverged({"train": math.inf}, None) and not is_diverged({"test": 1300.0}, None)


@pytest.mark.parametrize("index", ["transfer_resnet50_imagenet", "transfer_transformer_lm1b"])
def test_absent_large_data_is_one_line_before_any_process_is_spawned(tmp_path, index):
    from conftest import run_tasklab

    out = run_tasklab(["pipeline=TRANSFER", f"index={index}", "trainer.accelerator=cpu",
                       f"misc.data_dir={tmp_path / 'empty'}", f"output_dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.count("tasklab: error") == 1 and ("ImageFolder root" in out.stderr or "no non-empty" in out.stderr)
    assert not list((tmp_path / "run").rglob("trials"))  # no trial started


def test_transfer_prints_no_lightning_noise(tmp_path):
    from conftest import run_tasklab

    out = run_tasklab(["pipeline=TRANSFER", "index=transfer_quickstart", "total_steps=10", "eval_every=5",
                       "pair=digits_resnet", f"output_dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    for noise in ("GPU available", "TPU available", "Tip:", "deprecated", "Warning"):
        assert noise not in text, noise


def test_the_old_name_of_the_divergence_multiple_is_refused_in_one_line(tmp_path):
    """TRANSFER's rule is ``divergence_multiple`` (the engine's is ``learner.divergence_factor``,
    another rule): a pair still setting the old name is refused naming the new one, and a bad
    value is refused naming the field."""
    list_path = write_list(tmp_path / "list.json")
    with pytest.raises(ConfigError, match=r"pairs\.digits_resnet\.divergence_factor.*divergence_multiple"):
        run_pipeline(compose("transfer_quickstart", tiny(tmp_path / "a", list_path,
                                                         "+pairs.digits_resnet.divergence_factor=5.0")))
    with pytest.raises(ConfigError, match=r"pairs\.digits_resnet\.divergence_multiple.*> 0"):
        run_pipeline(compose("transfer_quickstart", tiny(tmp_path / "b", list_path,
                                                         "pairs.digits_resnet.divergence_multiple=-1")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_folder_recorded_under_the_old_name_still_resumes(quickstart_run, tmp_path):
    """A ``setup.json`` written when the multiple was recorded as ``divergence_factor`` is the
    same setup: its finished trials are kept, not refused as another setup's."""
    import shutil

    from taskset_lab.transfer.runner import setup_hash

    src, list_path, _ = quickstart_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    setup = out / "pydoc_transformer" / "setup.json"
    record = json.loads(setup.read_text())
    old = {("divergence_factor" if k == "divergence_multiple" else k): v for k, v in record.items() if k != "hash"}
    setup.write_text(json.dumps({**old, "hash": setup_hash(old)}))
    before = {p: p.stat().st_mtime_ns for p in out.glob("pydoc_transformer/trials/*.json")}
    summary = run_pipeline(compose("transfer_quickstart", tiny(out, list_path, "pair=pydoc_transformer")))
    assert before and {p: p.stat().st_mtime_ns for p in before} == before  # nothing redone
    assert summary["trials_finished"] == len(list(out.glob("*/trials/*.json")))
