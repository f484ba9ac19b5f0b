"""The CURVES pipeline in one process: summary, store, engine population cap, field checks,
and Ctrl-C through the real CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose, interrupt_tasklab
from taskset_lab.cli import run_pipeline
from taskset_lab.curves.collect import collect_curves
from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.curves.store import list_parts, read_curves, read_runs
from taskset_lab.errors import TasklabError
from taskset_lab.pipelines.curves import collection_spec, task_specs

SMALL = ["task_set=tiny", "search_space.num_configs=5", "total_steps=6", "eval_every=3",
         "learner.eval_batches=1", "learner.dtype=float64", "progress=false"]


def test_curves_pipeline_with_a_population_cap_matches_one_population(tmp_path):
    """learner.max_population=2 trains 5 configs as populations of 2, 2, 1: same curves."""
    cfg = compose("curves_quickstart", [*SMALL, f"output_dir={tmp_path / 'run'}", "learner.max_population=2"])
    summary = run_pipeline(cfg)
    assert json.loads((tmp_path / "run" / "curves_summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["parts_done"] == len(list_parts(tmp_path / "run" / "curves")) == 7
    assert summary["runs"] == 35 and summary["config_steps"] == 35 * 6

    ref = tmp_path / "ref"
    spec = collection_spec(cfg)
    assert (spec.optimizer, spec.num_configs, spec.total_steps, spec.eval_every, spec.dtype,
            spec.max_population) == ("nadamw", 5, 6, 3, "float64", 2)
    collect_curves(dataclasses.replace(spec, max_population=None), task_specs(cfg), ref)
    key = ["task", "config_id", "step"]
    mine = read_curves(tmp_path / "run" / "curves").sort_values(key).reset_index(drop=True)
    theirs = read_curves(ref).sort_values(key).reset_index(drop=True)
    assert mine[key].equals(theirs[key])
    for split in ("train", "valid_inner", "valid_outer", "test"):
        np.testing.assert_allclose(mine[split].to_numpy(), theirs[split].to_numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("override, field", [
    ("learner.max_population=0", "learner.max_population"),
    ("learner.max_population=2.5", "learner.max_population"),
    ("learner.dtype=float16", "learner.dtype"),
    ("shard_index=3", "shard_index"),
    ("search_space.family=nope", "search_space.family"),
    ("learner.chunk_size=0", "learner.chunk_size"),
    ("search_space.seed_offset=-1", "search_space.seed_offset"),
    ("learner.device=quantum", "learner.device"),
    ("learner.divergence_factor=-1", "learner.divergence_factor"),
    ("eval_every=7", "eval_every"),
    ("misc.download=maybe", "misc.download"),
])
def test_bad_collection_fields_are_named(tmp_path, override, field):
    cfg = compose("curves_quickstart", [*SMALL, f"output_dir={tmp_path}", override])
    with pytest.raises(TasklabError, match=field.replace(".", r"\.")):
        run_pipeline(cfg)
    assert not list_parts(tmp_path / "curves")  # nothing ran


def test_collection_spec_defaults_are_the_shipped_learner_values():
    """The spec holds the defaults; the learner group shows the same values to the user, and a
    config without the optional keys gets them."""
    cfg = compose("curves_quickstart", ["task_set=tiny"])
    spec = collection_spec(cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(CollectionSpec)}
    for name in ("eval_batches", "chunk_size", "max_population", "device", "dtype", "divergence_factor",
                 "config_seed_offset", "replicas", "shard_index", "num_shards"):
        assert getattr(spec, name) == defaults[name], name
    bare = OmegaConf.create({"search_space": {"family": "adam1p", "num_configs": 3}, "total_steps": 4,
                             "eval_every": 2})
    assert collection_spec(bare) == CollectionSpec("adam1p", 3, 4, 2)
    with pytest.raises(TasklabError, match="'total_steps': is required"):
        collection_spec(OmegaConf.create({"search_space": {"family": "adam1p", "num_configs": 3}}))


def test_ctrl_c_keeps_finished_parts_and_says_how_to_continue(tmp_path):
    """SIGINT mid-collection: exit 130, one hint naming the store, finished parts readable."""
    store = tmp_path / "out" / "curves"
    rc, out, err = interrupt_tasklab(
        ["pipeline=CURVES", "index=curves_quickstart", "task_set=tiny", "search_space.num_configs=4",
         "total_steps=1000", "eval_every=500", "learner.eval_batches=1", "progress=false",
         f"output_dir={tmp_path / 'out'}"], tmp_path, ready=lambda: bool(list_parts(store)))
    assert rc == 130, err[-2000:]
    assert "tasklab: interrupted" in err and "Traceback" not in err
    kept = list_parts(store)
    assert 1 <= len(kept) < 7  # tiny has 7 tasks, one part each
    assert f"{len(kept)} finished parts are kept in {store}; the same command with curves_dir={store}" in out + err
    assert len(read_runs(store)) == 4 * len(kept)


def test_an_explicit_list_size_wins_over_the_debug_preset(tmp_path):
    import json

    from conftest import run_tasklab

    out = run_tasklab(["pipeline=CURVES", "index=curves_quickstart", "search_space=list", "search_space.size=5",
                       "debug=curves", "task_set.fixed=[TwoD_Bowl1,TwoD_Beale]", f"output_dir={tmp_path}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "curves_summary.json").read_text())["configs"] == 5  # not debug's 8
