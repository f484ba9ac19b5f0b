"""CURVES on TaskSet's own tasks by TaskSet's names: a sampled family with offline stand-ins and
the 26 fixed tasks that generate their own data, with debug-sized settings; the store records
each task's name and family (stand-ins named as such)."""

from __future__ import annotations

import pytest
import torch

from conftest import compose
from taskset_lab.cli import run_pipeline
from taskset_lab.curves.store import read_runs
from taskset_lab.tasks.registry import released_samplers

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

TINY = ["search_space.num_configs=2", "total_steps=2", "eval_every=2", "learner.eval_batches=1",
        "progress=false", "learner.device=cpu"]


def test_curves_on_mlp_family_seeds_0_to_8_with_stand_ins(tmp_path):
    cfg = compose("curves_quickstart", [*TINY, "++task_set.families=[{family: mlp_family, seeds: [0, 8]}]",
                                        "++task_set.fixed=[]", "misc.offline_data=substitute",
                                        f"output_dir={tmp_path}"])
    run_pipeline(cfg)
    runs = read_runs(tmp_path / "curves")
    assert sorted(runs["task"].unique()) == sorted(f"mlp_family_seed{i}_on_digits" for i in range(8))
    assert set(runs["task_family"]) == {"mlp_family"} and len(runs) == 16


def test_curves_without_substitution_names_the_missing_dataset(tmp_path):
    from taskset_lab.errors import DataError

    cfg = compose("curves_quickstart", [*TINY, "++task_set.families=[{family: mlp_family, seeds: [0, 1]}]",
                                        "++task_set.fixed=[]", "misc.offline_data=error",
                                        f"misc.data_dir={tmp_path / 'nodata'}", f"output_dir={tmp_path}"])
    with pytest.raises(DataError) as err:
        run_pipeline(cfg)
    message = str(err.value)
    assert "\n" not in message and "sun397" in message and "offline_data=substitute" in message


def test_curves_on_the_26_offline_fixed_tasks(tmp_path):
    cfg = compose("curves_quickstart", [*TINY, "search_space.num_configs=1", "task_set=fixed_offline",
                                        f"output_dir={tmp_path}"])
    run_pipeline(cfg)
    runs = read_runs(tmp_path / "curves")
    assert runs["task"].nunique() == 26
    assert runs.groupby("task_family")["task"].nunique().to_dict() == {"Associative": 9, "Copy": 9, "TwoD": 8}


#: every family with TaskSet's released configs, from the registry (mlp_family has its own test above)
FAMILIES = [family for family in sorted(released_samplers()) if family != "mlp_family"]


#: seeds per family here; the word LMs' 30k-word softmax at released sizes costs ~10 s a seed on
#: 2 cores, so CURVES takes two of them (tests/test_taskset_seq_families.py builds seeds 0-7
#: at full size and trains them 20 steps at reduced batch)
SEEDS = {family: 8 for family in FAMILIES} | {"word_rnn_language_model_family": 2}


@pytest.mark.parametrize("family", FAMILIES)
def test_curves_on_seeds_0_to_8_of_every_released_family(tmp_path, family):
    """Seeds 0-7 build with offline stand-ins and train through CURVES (one config, one step at
    the released sizes: the per-family test files train 20 steps at reduced sizes). Configs that
    are non-finite already at initialisation under TaskSet's own definition are recorded as
    diverged, not as errors."""
    n = SEEDS[family]
    cfg = compose("curves_quickstart", ["search_space.num_configs=1", "total_steps=1", "eval_every=1",
                                        "learner.eval_batches=1", "progress=false", "learner.device=cpu",
                                        f"++task_set.families=[{{family: {family}, seeds: [0, {n}]}}]",
                                        "++task_set.fixed=[]", "misc.offline_data=substitute",
                                        f"output_dir={tmp_path}"])
    run_pipeline(cfg)
    runs = read_runs(tmp_path / "curves")
    assert runs["task"].nunique() == n and set(runs["task_family"]) == {family}
    assert runs["status"].isin(["ok", "diverged"]).all()
