"""Lists as search spaces (CURVES records a list's first N entries) and as baselines
(HPARAM_LIST compares a learned list with opt_list on the same held-out tasks)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from taskset_lab.curves.collect import collect_curves
from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.curves.store import read_curves, read_runs
from taskset_lab.errors import ConfigError
from taskset_lab.hparam_list import evaluate_hparam_list, format_table, normalized_losses, order_curve
from taskset_lab.hparam_list.references import (REF_ID_BASE, combine_with_references, normalize_with_references,
                                                reference_store, split_references)
from taskset_lab.optim import NADAMW, load_hparam_list
from taskset_lab.pipelines.hparam_list_config import reference_lists
from taskset_lab.tasks import sample_task_config

# a 2-D sparse bowl (losg_tasks_family seed 12) and a 5-dimensional noisy quadratic
TASKS = [sample_task_config("losg_tasks_family", 12), sample_task_config("quadratic_family", 1, {"dims": 5})]


def _spec(optimizer: str, n: int, **kw) -> CollectionSpec:
    return CollectionSpec(optimizer, num_configs=n, total_steps=6, eval_every=3, eval_batches=1, chunk_size=2,
                          progress=False, dtype="float64", device="cpu", **kw)


def test_collecting_the_first_entries_of_opt_list(tmp_path):
    from taskset_lab.engine import train_population
    from taskset_lab.tasks import build_task

    summary = collect_curves(_spec("opt_list", 3), TASKS[:1], tmp_path / "s")
    assert summary["runs"] == 3 and summary["parts_done"] == 2
    runs = read_runs(tmp_path / "s").sort_values("config_id")
    entries = load_hparam_list("opt_list")["entries"][:3]
    assert set(runs["optimizer"]) == {"opt_list"}
    assert runs["config_id"].tolist() == [0, 1, 2]
    assert runs["config_seed"].tolist() == [251, 611, 799]  # nadamw_grid_seed<N> of the list's first names
    assert [json.loads(h) for h in runs["hparams"]] == [e["hparams"] for e in entries]
    # the store holds what the engine gives for the list's entries, as nadamw configs
    curves = read_curves(tmp_path / "s")
    ref = train_population(build_task(TASKS[0]), NADAMW, [e["hparams"] for e in entries], 6, 3,
                           eval_batches=1, dtype=torch.float64)
    got = curves.sort_values(["config_id", "step"])["train"].to_numpy().reshape(3, -1)
    np.testing.assert_allclose(got, ref.losses["train"].numpy(), rtol=1e-12, equal_nan=True)
    again = collect_curves(_spec("opt_list", 3), TASKS[:1], tmp_path / "s")  # resume: finished parts kept
    assert again["parts_skipped"] == 2 and again["parts_done"] == 0


def test_a_learned_list_file_is_a_search_space(tmp_path):
    path = tmp_path / "hparam_list.json"
    path.write_text(json.dumps({"optimizer": "adam1p", "entries": [
        {"rank": 0, "config_id": 4, "hparams": {"lr": 0.1}}, {"rank": 1, "config_id": 7, "hparams": {"lr": 0.01}}]}))
    collect_curves(_spec(str(path), 2), TASKS[:1], tmp_path / "s")
    runs = read_runs(tmp_path / "s").sort_values("config_id")
    assert runs["optimizer"].iloc[0].startswith("list-hparam_list-")
    assert runs["config_seed"].tolist() == [4, 7]
    assert [json.loads(h) for h in runs["hparams"]] == [{"lr": 0.1}, {"lr": 0.01}]


def test_list_search_space_checks_name_and_size():
    with pytest.raises(ConfigError, match="1000 entries; 1001 configs"):
        _spec("opt_list", 1001)
    with pytest.raises(ConfigError, match="unknown search space 'no_such_list'"):
        _spec("no_such_list", 2)
    from conftest import compose

    with pytest.raises(ConfigError, match="hparam_list.reference_lists.opt_list"):
        reference_lists(compose("quickstart", ["hparam_list.reference_lists.opt_list=0"]))
    assert reference_lists(compose("quickstart")) == {"opt_list": 20}


# ----------------------------------------------------------------- normalized together


def _curves(task: str, optimizer: str, finals: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves from 1.0 at step 0 to ``finals[c]`` at step 1 (same on every split), and runs."""
    rows = []
    for c, final in enumerate(finals):
        for step, value in ((0, 1.0), (1, final)):
            rows.append({"task": task, "task_family": task.split("_")[0], "optimizer": optimizer, "config_id": c,
                         "replica": 0, "step": step, "train": value, "valid_inner": value, "valid": value,
                         "test": value})
    curves = pd.DataFrame(rows)
    runs = curves.drop_duplicates("config_id")[["task", "task_family", "optimizer", "config_id", "replica"]]
    return curves, runs.assign(status="ok", hparams="{}")


def test_references_are_normalized_together_and_split_back():
    main_c, main_r = _curves("a_0", "nadamw", [0.6, 0.8])
    ref_c, ref_r = _curves("a_0", "opt_list", [0.2, 0.9, 0.5])
    both_c, both_r, ids = combine_with_references(main_c, main_r, "nadamw", {"opt_list": (ref_c, ref_r)})
    assert ids == {"opt_list": [REF_ID_BASE + k for k in range(3)]}
    norm = normalized_losses(both_c, both_r, optimizer="nadamw")
    main, refs = split_references(norm, ids)
    sel = main[main["split"] == "select"].set_index("config_id")["value"]
    # best on the task is the reference's 0.2: (0.6 - 0.2) / (1 - 0.2) = 0.5
    assert sel.to_dict() == pytest.approx({0: 0.5, 1: 0.75})
    rsel = refs["opt_list"][refs["opt_list"]["split"] == "select"].set_index("config_id")["value"]
    assert rsel.to_dict() == pytest.approx({0: 0.0, 1: 0.875, 2: 0.375})
    alone = normalized_losses(main_c, main_r, optimizer="nadamw")  # without it, 0.6 would be the best
    assert alone[alone["split"] == "select"]["value"].min() == 0.0


def test_normalize_with_references_reads_the_nested_store(tmp_path):
    store = tmp_path / "s"
    collect_curves(_spec("adam1p", 3), TASKS, store)
    collect_curves(_spec("opt_list", 2), TASKS, reference_store(store, "opt_list"))
    curves, runs = read_curves(store, optimizers=["adam1p"]), read_runs(store, optimizers=["adam1p"])
    main, refs = normalize_with_references(store, curves, runs, "adam1p", {"opt_list": 2}, cap=1.5)
    assert sorted(main["config_id"].unique()) == [0, 1, 2]
    assert sorted(refs["opt_list"]["config_id"].unique()) == [0, 1]
    assert set(refs["opt_list"]["task"]) == set(main["task"])
    both = pd.concat([main, refs["opt_list"]])
    # 0 is the best of both collections on each task and split
    assert (both.groupby(["task", "split"])["value"].min() == 0).all()
    plain, none = normalize_with_references(store, curves, runs, "adam1p", {}, cap=1.5)
    assert none == {} and len(plain) == len(main)


# ----------------------------------------------------------------- evaluation


def test_evaluation_has_an_opt_list_row_and_speedup():
    gen = np.random.default_rng(0)
    tasks = [f"{fam}_{i}" for fam in ("lab_mlp", "quad") for i in range(4)]
    rows, ref_rows = [], []
    for t in tasks:
        for c in range(6):
            v = gen.uniform(0, 1)
            rows += [{"task": t, "task_family": t.split("_")[0], "config_id": c, "split": s, "value": v, "diverged": 0.0}
                     for s in ("select", "report")]
        for k in range(4):
            v = gen.uniform(0, 1)
            ref_rows += [{"task": t, "task_family": t.split("_")[0], "config_id": k, "split": s, "value": v,
                          "diverged": 0.0} for s in ("select", "report")]
    norm, ref = pd.DataFrame(rows), pd.DataFrame(ref_rows)
    norm.attrs["normalization"] = ref.attrs["normalization"] = {"cap": 1.5}
    ev = evaluate_hparam_list(norm, length=3, folds=2, references={"opt_list": ref}, speedup_ks=[1, 3])
    got = ev.evaluation[ev.evaluation["method"] == "opt_list"]
    assert sorted(got["k"].unique()) == [1, 2, 3, 4]
    # fold by fold: opt_list in its own order on the held-out tasks
    mat = ref[ref["split"] == "select"].pivot(index="task", columns="config_id", values="value").sort_index()
    full = order_curve(mat.to_numpy(), mat.to_numpy(), range(4))
    cv = got[got["scheme"] == "cv"]
    n_held = cv[cv["k"] == 1].set_index("fold")["n_tasks"]
    weighted = (cv[cv["k"] == 4].set_index("fold")["value"] * n_held).sum() / n_held.sum()
    assert weighted == pytest.approx(full[:, 3].mean())  # every task is held out once
    sp = ev.reference_speedup
    assert set(sp["reference"]) == {"opt_list"} and set(sp["scheme"]) == {"cv", "lofo"}
    table = format_table(ev.summary, speedup=ev.speedup, reference_speedup=sp)
    assert "\nopt_list " in table and "opt_list trials to match list" in table
    with pytest.raises(ValueError, match="lacks tasks"):
        evaluate_hparam_list(norm, length=3, folds=2, references={"opt_list": ref[ref["task"] != tasks[0]]})


def test_the_shipped_taskset_lab_v1_list_is_nadamw_grid_configs_with_its_manifest():
    """taskset_lab_v1 (learned by `tasklab pipeline=HPARAM_LIST index=taskset_cpu`) loads by name
    offline, every entry is a config of TaskSet's nadamw_grid (its hparams are the sampler's at
    its config id), it states the collection it was learned from, and entry k is an optimizer."""
    import math

    import torch

    from taskset_lab.optim import hparam_list_optimizer
    from taskset_lab.optim.hparam_list import builtin_list_names, load_hparam_list
    from taskset_lab.optim.registry import get_optimizer_family

    assert "taskset_lab_v1" in builtin_list_names()
    data = load_hparam_list("taskset_lab_v1")
    nadamw = get_optimizer_family("nadamw")
    assert data["optimizer"] == "nadamw" and len(data["entries"]) == 100
    assert len({e["config_id"] for e in data["entries"]}) == 100
    for rank, entry in enumerate(data["entries"]):
        assert entry["rank"] == rank and 0 <= entry["config_id"] < 1000
        expected = dict(nadamw.sample(entry["config_id"]))
        assert set(entry["hparams"]) == set(expected)
        for key, value in expected.items():
            assert math.isclose(entry["hparams"][key], value, rel_tol=1e-12, abs_tol=0.0), (rank, key)
    collection = data["collection"]
    assert collection["optimizer"] == "nadamw" and collection["num_configs"] == 1000
    assert collection["total_steps"] >= 300 and collection["config_seed_offset"] == 0
    assert len(data["tasks"]) >= 100 and "index=taskset_cpu" in data["command"]
    assert data["results"]["cv"]["list"]["1"] < data["results"]["cv"]["random"]["1"]
    p = torch.nn.Parameter(torch.ones(3))
    opt = hparam_list_optimizer([p], "taskset_lab_v1", index=0, total_steps=10)
    for _ in range(2):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
    assert not torch.equal(p.detach(), torch.ones(3))
