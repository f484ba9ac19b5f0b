"""The contract every registered task family and every registered fixed task keeps, driven
by the registries (TaskSet's ``TaskFamilyTestCase``, learned_optimization's
``smoketest_task_family``): a new family or fixed task is covered without editing this file.

Per family: the sampler is deterministic and JSON-safe, its configs validate against the
family's fields and an unknown key is refused, TaskSet's released sampler (where the family
has one) reproduces every entry of its reference file, and seed 0 builds (on its offline
stand-in where its data is absent) and trains 2 steps with finite losses. Per fixed task:
it builds, names itself as registered and trains 2 steps. TaskSet's 109 fixed names are all
registered with their kinds (the registry may hold more).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import config_differences
from taskset_lab.engine import train_population
from taskset_lab.errors import ConfigError
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.fields import validate_config
from taskset_lab.tasks.registry import (
    FIXED_TASKS,
    TASK_FAMILIES,
    as_json,
    get_task,
    get_task_family,
    released_samplers,
    sample_task_config,
)

pytestmark = [pytest.mark.contract, pytest.mark.usefixtures("one_torch_thread")]  # see conftest.py

REFERENCE = Path(__file__).parent / "data" / "taskset_reference"
FAMILIES = TASK_FAMILIES.names()
RELEASED = sorted(released_samplers())
NAMES = FIXED_TASKS.names() + [f"{family}_seed0" for family in FAMILIES]

#: tasks whose TaskSet definition is already non-finite at initialization in float32: the engine
#: must flag them as diverged at step 0 instead of crashing
NON_FINITE_AT_INIT = {
    "nvp_family_seed0": "unclipped log-scales with a large initializer overflow exp() (as in TaskSet)",
}

#: TaskSet's groups of fixed tasks (tests/data/taskset_reference/fixed_tasks.json) -> the kinds
#: their tasks are registered under (the curve store's family column)
GROUP_KINDS = {
    "fixed_2d": {"TwoD"}, "synthetic_sequence": {"Associative", "Copy"}, "fixed_mlp": {"FixedMLP"},
    "fixed_image_conv": {"FixedImageConv"}, "fixed_image_conv_ae": {"FixedImageConvAE"},
    "fixed_image_conv_vae": {"FixedImageConvVAE"}, "fixed_mlp_ae": {"FixedMLPAE"},
    "fixed_mlp_vae": {"FixedMLPVAE"}, "fixed_maf": {"FixedMAF"}, "fixed_nvp": {"FixedNVP"},
    "fixed_language_modeling": {"FixedLM"}, "fixed_text_rnn_classification": {"FixedTextRNNClassification"},
}


def reference_file(family: str) -> Path:
    """TaskSet's released configs of ``family``: ``<family>.json``, or without ``_family``
    (TaskSet's RNN files are named so)."""
    path = REFERENCE / "tasks" / f"{family}.json"
    return path if path.exists() else REFERENCE / "tasks" / f"{family.removesuffix('_family')}.json"


# ------------------------------------------------------------------ families


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_is_deterministic_json_safe_and_seeds_differ(family):
    fam = get_task_family(family)
    configs = [fam.sample(seed) for seed in range(4)]
    for seed, config in enumerate(configs):
        assert fam.sample(seed) == config  # a function of the seed
        assert json.loads(json.dumps(config)) == as_json(config)  # plain JSON values, no NaN tricks
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)
    # the sampler neither touches nor depends on the global RNGs
    np.random.seed(1)
    torch.manual_seed(1)
    state = (np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    assert fam.sample(3) == configs[3]
    assert np.array_equal(np.random.get_state()[1], state[0]) and torch.equal(torch.get_rng_state(), state[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_configs_validate_and_an_unknown_key_is_refused(family):
    fam = get_task_family(family)
    for seed in range(4):
        config = sample_task_config(family, seed)
        assert config["family"] == family
        validate_config(fam, config)
    with pytest.raises(ConfigError, match=family):
        sample_task_config(family, 0, {"no_such_key": 1})


@pytest.mark.parametrize("family", RELEASED)
def test_released_sampler_reproduces_every_reference_entry(family):
    reference = json.loads(reference_file(family).read_text())
    assert len(reference) >= 30
    sampler = get_task_family(family).released
    problems = []
    for name, entry in reference.items():
        assert name.startswith(f"{family}_seed")
        got = [sampler(int(name.rsplit("_seed", 1)[1])), family]  # TaskSet's entry: [config, family]
        problems += [f"{name}{d}" for d in config_differences(got, entry)]
    assert not problems, "\n".join(problems[:20])


def test_the_checker_catches_small_deviations():
    want = {"a": [1.0, {"b": 2}], "c": "x"}
    assert config_differences(json.loads(json.dumps(want)), want) == []
    assert config_differences({"a": [1.0 + 1e-9, {"b": 2}], "c": "x"}, want)
    assert config_differences({"a": [1, {"b": 2}], "c": "x"}, want)  # int for float
    assert config_differences({"c": "x", "a": [1.0, {"b": 2}]}, want)  # key order


# ------------------------------------------------------------------ every task builds and trains


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


# ------------------------------------------------------------------ TaskSet's fixed tasks


def test_taskset_fixed_tasks_are_all_registered_with_their_kinds():
    """TaskSet's list of fixed tasks (tests/data/taskset_reference/fixed_tasks.json, Apache 2.0,
    a copy of ../shared/taskset_reference/fixed_tasks.json): every name is registered under its
    group's kind. The registry may hold tasks of its own besides."""
    reference = json.loads((REFERENCE / "fixed_tasks.json").read_text())
    names = [n for group in reference["groups"].values() for n in group]
    assert len(names) == len(set(names)) == reference["total"] == 109
    missing = sorted(set(names) - set(FIXED_TASKS.names()))
    assert not missing, missing
    assert set(reference["groups"]) == set(GROUP_KINDS)
    for group, members in reference["groups"].items():
        kinds = {FIXED_TASKS.get(n).kind for n in members}
        assert kinds == GROUP_KINDS[group], (group, kinds)
