"""What a curve collection costs here, and which tasks fit a budget.

TaskSet's tasks span seven orders of magnitude in parameters and as many in time per step; a
collection that must finish on a laptop picks its tasks by what they cost *here*. Two numbers
per task, both measured on this machine:

* ``seconds_per_step``: one training step of one model with Adam (TASKS' ``time_per_step``,
  what ``tasklab pipeline=TASKS name=<task>`` prints);
* ``seconds_per_config_step``: one config's share of one population step of the engine
  CURVES runs (``population`` configs of ``nadamw`` stepped together), what a collection of
  ``C`` configs x ``T`` steps costs as ``C * T * seconds_per_config_step``.

:func:`select_within_budget` then picks tasks, cheapest first, so that every family is
represented (``min_per_family``) and the whole collection fits ``budget_seconds``.
``tasklab pipeline=TASKS plot=cost`` measures a catalogue (``task_costs.csv``) and draws the
per-family distributions; ``scripts/select_cpu_tasks.py`` turns the CSV into a task set.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping, Sequence

import torch

from taskset_lab.engine.population import Population
from taskset_lab.optim.registry import get_optimizer_family

#: population configs and steps of the cost probe (after one warm-up step): a collection's
#: store parts hold 256 configs, and small tasks cost far less per config in a large population;
#: tasks whose single step takes over PROBE_SMALL_SECONDS are probed with PROBE_CONFIGS_DEAR
#: configs (their cost per config hardly depends on the population's size)
PROBE_CONFIGS = 256
PROBE_CONFIGS_DEAR = 16
PROBE_SMALL_SECONDS = 0.002
PROBE_STEPS = 2
#: tasks whose single-model step takes longer are not probed (1000 configs x 300 steps of one
#: would take hours here); their ``seconds_per_config_step`` is NaN
PROBE_MAX_SECONDS_PER_STEP = 0.012


def probe_configs(seconds_per_step: float) -> int:
    """Configs in the population probe of a task whose single step takes ``seconds_per_step``."""
    return PROBE_CONFIGS if seconds_per_step <= PROBE_SMALL_SECONDS else PROBE_CONFIGS_DEAR


def population_seconds_per_config_step(task: Any, configs: int = PROBE_CONFIGS, steps: int = PROBE_STEPS,
                                       optimizer: str = "nadamw") -> float:
    """Seconds per config-step of ``configs`` configs of ``optimizer`` stepped together on
    ``task`` (float32, this process' threads, no compile); one warm-up step not counted."""
    family = get_optimizer_family(optimizer)
    hparams = [dict(family.sample(i)) for i in range(configs)]
    population = Population(task, family, hparams, steps + 1, eval_batches=1)
    state = population.step(population.init())  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        state = population.step(state)
    return (time.perf_counter() - start) / (steps * configs)


def collection_seconds(row: Mapping[str, Any], configs: int, steps: int, overhead: float = 1.2) -> float:
    """Estimated seconds to collect ``configs`` configs x ``steps`` steps on the task of
    ``row`` (``overhead`` covers evaluations, task build and store writes)."""
    return float(row["seconds_per_config_step"]) * configs * steps * overhead


def select_within_budget(rows: Iterable[Mapping[str, Any]], budget_seconds: float, configs: int, steps: int,
                         min_per_family: int = 1, max_per_family: int | None = None,
                         overhead: float = 1.2, required: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Tasks that fit ``budget_seconds`` of collection, cheapest first.

    First the ``min_per_family`` cheapest tasks of every ``required`` family (default: every
    family in ``rows``; so each is there even when its cheapest task is dear), then the cheapest
    of the rest while the budget lasts (at most ``max_per_family`` per family). Rows without a
    finite cost are skipped, and so are tasks whose loss at initialization is not finite
    (``initial_loss``: every config would get the cap there, so they rank nothing). Returns the chosen rows with their estimated
    ``collection_seconds``, in selection order.
    """
    usable = [dict(r) for r in rows if math.isfinite(float(r.get("seconds_per_config_step", math.nan)))
              and math.isfinite(float(r.get("initial_loss", 0.0)))]
    for r in usable:
        r["collection_seconds"] = collection_seconds(r, configs, steps, overhead)
    usable.sort(key=lambda r: (r["collection_seconds"], r["name"]))
    must = set(r["family"] for r in usable) if required is None else set(required)
    count: dict[str, int] = {}
    first: list[int] = []  # positions in ``usable`` of each required family's cheapest tasks
    for i, r in enumerate(usable):
        if r["family"] in must and count.get(r["family"], 0) < min_per_family:
            first.append(i)
            count[r["family"]] = count.get(r["family"], 0) + 1
    taken = set(first)
    spent = sum(usable[i]["collection_seconds"] for i in first)
    rest: list[int] = []
    for i, r in enumerate(usable):
        full = max_per_family is not None and count.get(r["family"], 0) >= max_per_family
        if i in taken or full or spent + r["collection_seconds"] > budget_seconds:
            continue
        rest.append(i)
        count[r["family"]] = count.get(r["family"], 0) + 1
        spent += r["collection_seconds"]
    return [usable[i] for i in first + rest]


def budget_summary(chosen: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Tasks, families and the estimated total of a selection."""
    families: dict[str, int] = {}
    for r in chosen:
        families[r["family"]] = families.get(r["family"], 0) + 1
    return {"tasks": len(chosen), "families": families,
            "estimated_seconds": float(sum(r["collection_seconds"] for r in chosen)),
            "threads": torch.get_num_threads()}
