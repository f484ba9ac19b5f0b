"""One harness over every registered task (learned_optimization's style): each fixed task and
seed 0 of each family builds (on its offline stand-in where its data is absent), names
itself as registered, and trains 2 steps in the population engine with finite losses."""

from __future__ import annotations

import math

import pytest
import torch

from taskset_lab.engine import train_population
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.registry import TASK_FAMILIES, FIXED_TASKS, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

NAMES = FIXED_TASKS.names() + [f"{family}_seed0" for family in TASK_FAMILIES.names()]
#: tasks whose TaskSet definition is already non-finite at initialization in float32: the engine
#: must flag them as diverged at step 0 instead of crashing
NON_FINITE_AT_INIT = {
    "nvp_family_seed0": "unclipped log-scales with a large initializer overflow exp() (as in TaskSet)",
}




@pytest.mark.parametrize("name", NAMES)
def test_task_builds_and_trains(name):
    task = get_task(name, offline_data="substitute")
    assert task.name in (name, f"{name}_on_{getattr(task, 'data_substitute', None)}")
    assert task.family in TASK_FAMILIES or task.family == FIXED_TASKS.get(name).kind
    result = train_population(task, "adam8p", [get_optimizer_family("adam8p").sample(0)], total_steps=2,
                              eval_every=2, eval_batches=1)
    first = {s: float(v[0, 0]) for s, v in result.losses.items()}
    if name in NON_FINITE_AT_INIT:
        assert int(result.diverged_step[0]) == 0
    else:
        assert all(math.isfinite(v) for v in first.values()), first


def test_all_109_fixed_tasks_of_taskset_are_registered_with_their_kinds():
    """TaskSet's list of fixed tasks (tests/data/taskset_reference/fixed_tasks.json, Apache 2.0):
    every name is registered, nothing else is, and each group maps to one kind."""
    import json
    from pathlib import Path

    reference = json.loads((Path(__file__).parent / "data" / "taskset_reference" / "fixed_tasks.json").read_text())
    names = [n for group in reference["groups"].values() for n in group]
    assert len(names) == reference["total"] == 109
    assert sorted(names) == FIXED_TASKS.names()
    for group, members in reference["groups"].items():
        kinds = {FIXED_TASKS.get(n).kind for n in members}
        assert len(kinds) <= 2, (group, kinds)  # FixedMLPVAE's group holds one Imagenet32x30_* name
