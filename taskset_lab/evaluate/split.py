"""Task splits: which tasks of a task set are ``train`` and which ``test``, so an optimizer tuned
or meta-trained on one part is reported on the other.

``by`` says how ``test`` is read:

* ``none``: every task is ``test`` (no split);
* ``family``: tasks whose family (a fixed task's kind, e.g. ``TwoD``) is listed are ``test``;
* ``seed``: sampled tasks ``<family>_seed<N>`` whose N is listed are ``test`` (fixed tasks
  have no seed: ``train``);
* ``names``: tasks matching one of the listed names or glob patterns are ``test``.

Everything not ``test`` is ``train``.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Sequence

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.task_set import TaskSpec

SPLIT_BY = ("none", "family", "seed", "names")
REPORT_ON = ("test", "train", "all")


def split_tasks(tasks: Sequence[TaskSpec], by: str = "none", test: Sequence[Any] = (),
                field: str = "task_split") -> dict[str, str]:
    """Task name -> ``"train"`` or ``"test"`` (see the module docstring)."""
    from taskset_lab.tasks.registry import parse_sampled_name

    if by not in SPLIT_BY:
        raise ConfigError(f"{field}.by", f"must be one of {SPLIT_BY}, got {by!r}")
    test = list(test or [])
    if by != "none" and not test:
        raise ConfigError(f"{field}.test", f"lists nothing: name the test {by}s")
    if by == "seed" and not all(isinstance(s, int) and not isinstance(s, bool) for s in test):
        raise ConfigError(f"{field}.test", f"must list integer seeds for by=seed, got {test!r}")
    out = {}
    for spec in tasks:
        if by == "none":
            is_test = True
        elif by == "family":
            is_test = spec.family in test
        elif by == "seed":
            parsed = parse_sampled_name(spec.name)
            is_test = parsed is not None and parsed[1] in test
        else:
            is_test = any(fnmatch.fnmatchcase(spec.name, str(p)) for p in test)
        out[spec.name] = "test" if is_test else "train"
    return out


def tasks_to_report(tasks: Sequence[TaskSpec], split: dict[str, str], report_on: str,
                    field: str = "task_split.report_on") -> list[TaskSpec]:
    """The tasks of ``split`` that ``report_on`` (test, train or all) selects; a selection
    without tasks is a :class:`ConfigError`."""
    if report_on not in REPORT_ON:
        raise ConfigError(field, f"must be one of {REPORT_ON}, got {report_on!r}")
    chosen = [t for t in tasks if report_on == "all" or split[t.name] == report_on]
    if not chosen:
        raise ConfigError(field, f"the split has no {report_on} tasks")
    return chosen
