"""The image/vector samplers reproduce TaskSet's released configs entry for entry.

Reference data: tests/data/taskset_reference/tasks/ (the first entries of TaskSet's
`task_set/tasks/configs/<family>.json`, Apache 2.0; see the README there). Every entry of
each file is checked: same keys in the same order, same nesting, same JSON types, equal
values, floats equal to 1e-12 relative.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import config_differences as diff
from taskset_lab.errors import TasklabError
from taskset_lab.tasks.released import RELEASED_SAMPLERS, released_task_config
from taskset_lab.tasks.released import sampling

REFERENCE = Path(__file__).parent / "data" / "taskset_reference" / "tasks"

FAMILIES = [
    "mlp_family", "conv_pooling_family", "quadratic_family", "conv_fc_family",
    "mlp_ae_family", "mlp_vae_family", "nvp_family", "maf_family",
]


def _reference(family: str) -> dict[str, Any]:
    with open(REFERENCE / f"{family}.json") as fh:
        return json.load(fh)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_reference_entry_matches(family: str) -> None:
    reference = _reference(family)
    assert len(reference) >= 30
    problems = []
    for name, entry in reference.items():
        assert entry[1] == family and name.startswith(family + "_seed")
        problems += [f"{name}{d}" for d in diff(released_task_config(name), entry)]
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:20])


@pytest.mark.parametrize("family", FAMILIES)
def test_configs_are_plain_json(family: str) -> None:
    """No numpy scalars leak out: a JSON round trip gives back the identical config."""
    for seed in (0, 7, 123456):
        cfg = RELEASED_SAMPLERS[family](seed)
        assert diff(json.loads(json.dumps(cfg)), cfg) == []
        assert RELEASED_SAMPLERS[family](seed) == cfg  # deterministic in the seed
    assert RELEASED_SAMPLERS[family](1) != RELEASED_SAMPLERS[family](2)


def test_checker_catches_small_deviations() -> None:
    name, entry = next(iter(_reference("mlp_family").items()))
    good = released_task_config(name)
    assert diff(good, entry) == []
    aug = good[0]["dataset"][2]
    bumped = json.loads(json.dumps(good))
    bumped[0]["dataset"][2]["hue"] = aug["hue"] * (1 + 1e-9)
    assert diff(bumped, entry)
    as_int = json.loads(json.dumps(good))
    as_int[0]["center_data"] = int(good[0]["center_data"])
    assert diff(as_int, entry)
    reordered = [dict(reversed(list(good[0].items()))), good[1]]
    assert diff(reordered, entry)


def test_conv_fc_shares_the_conv_stack_with_conv_pooling() -> None:
    """Both draw the conv stack first from RandomState(seed): TaskSet's configs agree."""
    keys = ["strides", "hidden_units", "activation", "w_init", "padding"]
    for seed in range(5):
        a = released_task_config(f"conv_fc_family_seed{seed}")[0]
        b = released_task_config(f"conv_pooling_family_seed{seed}")[0]
        assert [a[k] for k in keys] == [b[k] for k in keys]


@pytest.mark.parametrize("name", [
    "mlp_famly_seed3", "mlp_family", "mlp_family_seedx", "mlp_family_seed-1", "", "seed3",
])
def test_unknown_or_malformed_names_raise_one_line(name: str) -> None:
    with pytest.raises(TasklabError) as err:
        released_task_config(name)
    message = str(err.value)
    assert "\n" not in message
    assert all(family in message for family in FAMILIES)


def test_sampling_helpers() -> None:
    rng = np.random.RandomState(0)
    ints = [sampling.sample_log_int(rng, 8, 512) for _ in range(500)]
    assert min(ints) >= 8 and max(ints) <= 512 and all(type(i) is int for i in ints)
    # log-uniform: about half the draws fall below the geometric middle (64)
    assert 0.4 < np.mean(np.asarray(ints) < 64) < 0.6
    with pytest.raises(ValueError):
        sampling.sample_bool(rng, 1.5)
    inits = [sampling.sample_initializer(rng) for _ in range(300)]
    for name, scale in inits:
        assert (scale is None) == (name not in sampling.SCALED_INITIALIZERS)
        assert scale is None or 0.1 <= scale <= 10
    acts = [sampling.sample_activation(rng) for _ in range(2000)]
    # relu carries weight 6 of 16
    assert 0.32 < acts.count("relu") / len(acts) < 0.43
    # numpy scalars come back as Python scalars of the matching kind
    assert type(sampling.choice(rng, [1, 2])) is int
    assert type(sampling.choice(rng, [True, False])) is bool
    assert type(sampling.choice(rng, ["a", "b"])) is str
