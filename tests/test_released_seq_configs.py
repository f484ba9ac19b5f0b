"""The sequence/synthetic samplers reproduce TaskSet's released configs entry for entry.

Reference data: tests/data/taskset_reference/tasks/ (first entries of TaskSet's
`task_set/tasks/configs/*.json`, Apache 2.0; see the README there). Every entry of each
file is checked: same keys in the same order, same nesting and types, equal values,
floats equal to 1e-12 relative.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from taskset_lab.tasks.released import RELEASED_SAMPLERS, released_task_config

REFERENCE = Path(__file__).parent / "data" / "taskset_reference" / "tasks"

# family name -> reference file (the RNN files are named without "_family")
FILES = {
    "char_rnn_language_model_family": "char_rnn_language_model.json",
    "word_rnn_language_model_family": "word_rnn_language_model.json",
    "rnn_text_classification_family": "rnn_text_classification.json",
    "losg_tasks_family": "losg_tasks_family.json",
}


def _load(family: str) -> dict[str, Any]:
    with open(REFERENCE / FILES[family]) as fh:
        return json.load(fh)


def mismatches(got: Any, want: Any, path: str = "") -> list[str]:
    """Every place where `got` differs from the released `want` (empty when equal)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: expected dict, got {got!r}"]
        if list(got) != list(want):
            return [f"{path}: keys {list(got)} != {list(want)}"]
        return [m for k in want for m in mismatches(got[k], want[k], f"{path}/{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: expected list of {len(want)}, got {got!r}"]
        pairs = enumerate(zip(got, want))
        return [m for i, (g, w) in pairs for m in mismatches(g, w, f"{path}/{i}")]
    if type(got) is not type(want):
        return [f"{path}: type {type(got).__name__} != {type(want).__name__} ({got!r} vs {want!r})"]
    if isinstance(want, float):
        if not math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0 if want else 1e-300):
            return [f"{path}: {got!r} != {want!r}"]
        return []
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


@pytest.mark.parametrize("family", list(FILES))
def test_every_reference_entry_matches(family: str) -> None:
    reference = _load(family)
    assert len(reference) >= 30
    problems = []
    for name, entry in reference.items():
        assert name.startswith(family + "_seed")
        problems += [f"{name}{m}" for m in mismatches(released_task_config(name), entry)]
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("family", list(FILES))
def test_registered_under_released_family_name(family: str) -> None:
    assert family in RELEASED_SAMPLERS
    # the sampler is deterministic in the seed and seeds differ
    assert RELEASED_SAMPLERS[family](3) == RELEASED_SAMPLERS[family](3)
    assert RELEASED_SAMPLERS[family](3) != RELEASED_SAMPLERS[family](4)


def test_comparison_catches_small_deviations() -> None:
    """The checker above must fail on a 1e-9 float change, a type change, a key swap."""
    name, entry = next(iter(_load("losg_tasks_family").items()))
    good = released_task_config(name)
    assert mismatches(good, entry) == []
    floaty = copy.deepcopy(entry)
    floaty[0][1]["noise_stdev"] = 1e-9  # 0.0 in the released seed0 entry
    assert mismatches(good, floaty)
    bumped = copy.deepcopy(entry)
    bumped[0][2] += 1
    assert mismatches(good, bumped)
    as_float = copy.deepcopy(entry)
    as_float[0][1]["bs"] = float(as_float[0][1]["bs"])
    assert mismatches(good, as_float)
    reordered = copy.deepcopy(entry)
    reordered[0][1] = dict(reversed(list(reordered[0][1].items())))
    assert mismatches(good, reordered)


def test_text_classification_keeps_taskset_dataset_name_quirk() -> None:
    """TaskSet's missing comma yields one concatenated imdb name; seed10 draws it."""
    cfg, family = released_task_config("rnn_text_classification_family_seed10")
    assert family == "rnn_text_classification_family"
    assert cfg["dataset"][0] == "imdb_reviews/subwords8kimdb_reviews/bytes"
