"""Offline stand-ins must be learnable: a task on a stand-in dataset is only useful for
evaluating optimizers if some config makes progress on it. Over every task of the quickstart's
task set that runs on a stand-in (digits for images, pydoc for text), the best of opt_list's
first four entries gets the test loss clearly below its initial value at the quickstart's
horizon (50 steps)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from taskset_lab import get_task
from taskset_lab.data.taskset_text import load_text_dataset, read_stand_in
from taskset_lab.engine import train_population
from taskset_lab.optim.hparam_list import load_hparam_list

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = yaml.safe_load((REPO / "example_configs" / "task_set" / "quickstart.yaml").read_text())["fixed"]
HORIZON = 50  # the quickstart's total_steps
FEW = 4
CLEARLY = 0.1  # at least 10% of the initial loss's size below it


def _stand_in_tasks() -> list[str]:
    names = []
    for name in QUICKSTART:
        task = get_task(name, offline_data="substitute")
        if getattr(task, "data_substitute", None):
            names.append(name)
    return names


STAND_IN_TASKS = _stand_in_tasks()


def test_the_quickstart_has_image_and_text_stand_in_tasks():
    substitutes = {get_task(n, offline_data="substitute").data_substitute for n in STAND_IN_TASKS}
    assert substitutes == {"digits", "pydoc"} and len(STAND_IN_TASKS) >= 8


@pytest.mark.parametrize("name", [*STAND_IN_TASKS, "FixedTextRNNClassification_imdb_patch32_GRU64_avg_bs128"])
def test_the_best_of_a_few_configs_learns_the_stand_in(name):
    task = get_task(name, offline_data="substitute")
    assert task.data_substitute
    listed = load_hparam_list("opt_list")
    configs = [e["hparams"] for e in listed["entries"][:FEW]]
    result = train_population(task, listed["optimizer"], configs, total_steps=HORIZON, eval_every=HORIZON,
                              eval_batches=4, compile=False)
    test = result.losses["test"]
    initial, best = float(test[:, 0].mean()), float(test[:, 1].nan_to_num(float("inf")).min())
    assert best < initial - CLEARLY * abs(initial), (task.name, initial, best)


def test_the_text_stand_in_label_is_visible_in_every_window():
    """The label is a function of the text itself (upper case), not of where the paragraph came
    from: every labelled paragraph's letters say its label, and the labels are balanced."""
    for split, (texts, labels) in read_stand_in().items():
        assert 0.4 < sum(labels) / len(labels) < 0.6, split
        for text, label in zip(texts, labels):
            letters = [c for c in text if c.isalpha() and c.isascii()]
            assert (all(c.isupper() for c in letters) if label else any(c.islower() for c in letters)), text[:60]
    splits, substitute = load_text_dataset("imdb_reviews/bytes", offline_data="substitute",
                                           data_dir=str(REPO / "no-such-folder"))
    assert substitute == "pydoc" and set(torch.unique(splits["train"].labels).tolist()) == {0, 1}


def test_the_quickstart_configs_say_how_many_tasks_they_hold():
    """The comments of the quickstart's configs count its tasks right (they drifted once)."""
    import re

    from taskset_lab.tasks.registry import FIXED_TASKS

    words = {4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
    n_fixed = sum(name in FIXED_TASKS for name in QUICKSTART)
    task_set = (REPO / "example_configs" / "task_set" / "quickstart.yaml").read_text()
    assert f"{len(QUICKSTART)} tasks under TaskSet's names" in task_set
    assert f"{words[n_fixed]} of its fixed tasks" in task_set
    curves = (REPO / "example_configs" / "index" / "curves_quickstart.yaml").read_text()
    assert re.search(r"quickstart task set \((\d+) TaskSet tasks\)", curves).group(1) == str(len(QUICKSTART))
    readme = (REPO / "README.md").read_text()
    assert f"learning curves\nof {len(QUICKSTART)} TaskSet tasks" in readme or f"of {len(QUICKSTART)} TaskSet tasks" in readme
    assert f"{words[n_fixed]} fixed tasks that generate their own data" in readme
