"""CURVES sharded by a Hydra multirun with real launchers (joblib processes, submitit's
local executor): the shards share one curve store and together collect exactly what one
unsharded run collects."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from taskset_lab.curves.collect import collect_curves
from taskset_lab.pipelines.curves import collection_spec, task_specs
from taskset_lab.curves.store import list_parts, read_curves, read_runs

from conftest import compose, run_tasklab

SMALL = ["task_set=tiny", "search_space.num_configs=6", "total_steps=8", "eval_every=4",
         "learner.chunk_size=4", "learner.eval_batches=1", "progress=false"]
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                       "hydra.launcher.cpus_per_task=1"],
    # optional (`pip install -e '.[ray]'`): a local Ray cluster started by the launcher
    "ray": ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2"],
}
LAUNCHER_PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher",
                    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
                    "ray": "hydra_plugins.hydra_ray_launcher"}


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["task", "config_id", "replica", "step"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory):
    """The same collection run in-process, unsharded: the reference."""
    cfg = compose("curves_quickstart", SMALL)
    store = tmp_path_factory.mktemp("unsharded") / "curves"
    collect_curves(collection_spec(cfg), task_specs(cfg), store)
    return store


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_multirun_shards_fill_one_store(launcher, tmp_path, unsharded):
    pytest.importorskip(LAUNCHER_PLUGINS[launcher], reason=f"the {launcher} launcher plugin is not installed")
    shared = tmp_path / "shared"
    result = run_tasklab(["pipeline=CURVES", "index=curves_quickstart", *SMALL, "num_shards=3",
                          "shard_index=0,1,2", f"output_dir={shared}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                          *LAUNCHERS[launcher], "--multirun"], cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # every work item was done by exactly one shard, and the union is the unsharded store
    store = shared / "curves"
    assert sorted(list_parts(store)) == sorted(list_parts(unsharded))
    runs = read_runs(store)
    assert not runs.duplicated(["task", "config_id", "replica"]).any()
    pd.testing.assert_frame_equal(_sorted(read_curves(store)), _sorted(read_curves(unsharded)))

    # each shard wrote its own summary in its own job folder; together they account for every part once
    summaries = [json.loads((tmp_path / "sweep" / str(i) / f"curves_summary_shard-{i}-of-3.json").read_text())
                 for i in range(3)]
    assert [s["shard_index"] for s in summaries] == [0, 1, 2]
    assert sum(s["parts_done"] for s in summaries) == len(list_parts(unsharded))
    assert sum(s["runs"] for s in summaries) == len(runs)
    # the launcher really ran the shards in worker processes, in parallel where it can
    pids = {s["pid"] for s in summaries}
    assert len(pids) >= 2 and os.getpid() not in pids

