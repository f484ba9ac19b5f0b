"""TaskSet's released task configs, re-sampled: `released_task_config("mlp_family_seed12")`.

A family registers TaskSet's sampler with its own registration
(``register_task_family(..., released=sampler)`` in its family file); the samplers of
TaskSet's twelve families live in this package, one module per TaskSet sampler file, each
reproducing TaskSet's sampler draw for draw (same numpy RandomState seed offset, same calls
in the same order), so `released_task_config(name)` equals the entry `name` of TaskSet's
`task_set/tasks/configs/<family>.json` without shipping those files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Callable

from taskset_lab.errors import TasklabError
from taskset_lab.tasks.registry import released_samplers


class _ReleasedSamplers(Mapping):
    """``{family: TaskSet's released sampler}``, read from the task-family registry."""

    def __getitem__(self, family: str) -> Callable[[int], dict]:
        return released_samplers()[family]

    def __iter__(self) -> Iterator[str]:
        return iter(released_samplers())

    def __len__(self) -> int:
        return len(released_samplers())


RELEASED_SAMPLERS: Mapping[str, Callable[[int], dict]] = _ReleasedSamplers()

_NAME = re.compile(r"^(?P<family>[a-z0-9_]+)_seed(?P<seed>\d+)$")


def released_task_config(name: str) -> list:
    """`[config, family]` for a TaskSet task name such as `mlp_family_seed12`."""
    match = _NAME.match(name) if isinstance(name, str) else None
    family = match.group("family") if match else None
    samplers = released_samplers()
    if family not in samplers:
        known = ", ".join(sorted(samplers))
        raise TasklabError(
            f"unknown released task name {name!r}: expected <family>_seed<N> with family "
            f"one of: {known}"
        )
    return [samplers[family](int(match.group("seed"))), family]


__all__ = ["RELEASED_SAMPLERS", "released_task_config"]
