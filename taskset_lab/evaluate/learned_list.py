"""A hyperparameter list learned inside an evaluation, TaskSet's way, on the ``train`` tasks of
a task split, so it is scored on tasks it never saw.

The curves of ``configs`` configs of one optimizer family on the train tasks are normalized
(HPARAM_LIST's definition: 1 = the loss at initialization, 0 = the best any config reached,
capped; the select split ``valid_inner`` reduced to its best evaluation, the report split
``test`` read there) and the greedy list is learned on the select split
(:func:`taskset_lab.hparam_list.learn_hparam_list`); the result is the same ``hparam_list.json``
HPARAM_LIST writes, with the tasks it was learned on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskset_lab.curves.store import read_curves, read_runs
from taskset_lab.hparam_list.greedy import learn_hparam_list
from taskset_lab.hparam_list.normalize import hparams_frame, normalization_info, normalized_losses, task_families
from taskset_lab.hparam_list.report import build_hparam_list, write_hparam_list

SELECT, REPORT, REDUCE, CAP = "valid_inner", "test", "best", 1.5


def learn_list(store: str | Path, optimizer: str, length: int) -> dict[str, Any]:
    """The greedy list of ``length`` entries learned from every task of ``store`` (one family's
    configs, labelled ``optimizer`` there), as the dict of a ``hparam_list.json``."""
    curves, runs = read_curves(store, optimizers=optimizer), read_runs(store, optimizers=optimizer)
    norm = normalized_losses(curves, runs, SELECT, REPORT, REDUCE, CAP, optimizer=optimizer)
    ids, objective = learn_hparam_list(norm, length)
    tasks = sorted(str(t) for t in norm["task"].unique())
    data = build_hparam_list(optimizer, ids, hparams_frame(runs, optimizer), normalization_info(SELECT, REPORT, REDUCE, CAP),
                             tasks, task_families(norm, tasks), objective)
    return {**data, "source": f"learned by EVALUATE on {len(tasks)} train tasks from {store}"}


def write_list(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a list file atomically (HPARAM_LIST's writer)."""
    return write_hparam_list(path, data)
