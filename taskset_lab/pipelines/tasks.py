"""TASKS: the catalogue of task families and fixed tasks, and a description of one task.

    tasklab pipeline=TASKS                       # families and fixed tasks, one line each
    tasklab pipeline=TASKS name=mlp_family_seed12 # config, parameters, FLOPs and time per step

Listing builds each fixed task on its offline stand-in where its data is absent (stand-ins
have the real shapes, so parameter counts are the real ones) and says whether the real data
is present under ``misc.data_dir``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from typing import Any

import torch
from omegaconf import OmegaConf

from taskset_lab.errors import ConfigError, TasklabError
from taskset_lab.pipelines.base import Pipeline

log = logging.getLogger(__name__)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def task_row(task: Any) -> dict[str, Any]:
    """One catalogue row of a built task."""
    module = task.init_module(0)
    config = task.config or {}
    dataset = getattr(task, "dataset_name", None) or config.get("dataset")
    if isinstance(dataset, list):  # TaskSet's released configs: [name, options, augmentation]
        dataset = dataset[0]
    substitute = getattr(task, "data_substitute", None)
    return {"name": task.name.removesuffix(f"_on_{substitute}") if substitute else task.name,
            "family": task.family, "parameters": parameter_count(module),
            "dataset": dataset if dataset is not None else "generated",
            "data_present": substitute is None}


def step_flops(task: Any, module: torch.nn.Module) -> int | None:
    """FLOPs of one training step's forward and backward pass (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            loss = task.train_loss(module, task.data.batch("train", 0), 0)
            loss.backward()
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 — a counter gap must not hide the rest of the description
        return None


def time_per_step(task: Any, module: torch.nn.Module, steps: int = 5) -> float:
    """Seconds per training step (forward, backward, Adam update) measured here."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    loss = task.train_loss(module, task.data.batch("train", 0), 0)  # warm-up
    loss.backward()
    start = time.perf_counter()
    for s in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        task.train_loss(module, task.data.batch("train", s), s).backward()
        opt.step()
    return (time.perf_counter() - start) / steps


class TasksPipeline(Pipeline):
    name = "TASKS"
    required_fields = ()

    def check(self) -> None:
        name = OmegaConf.select(self.cfg, "name", default=None)
        if name is not None and not isinstance(name, str):
            raise ConfigError("name", f"must be a task name, got {name!r}")
        from taskset_lab.pipelines.base import require_positive_int

        require_positive_int(self.cfg, "seeds_per_family", default=1)

    def _data(self) -> dict[str, Any]:
        return {"data_dir": str(OmegaConf.select(self.cfg, "misc.data_dir", default="data")),
                "download": False}

    def run(self) -> dict[str, Any]:
        name = OmegaConf.select(self.cfg, "name", default=None)
        return self.describe(name) if name else self.catalogue()

    def catalogue(self) -> dict[str, Any]:
        from taskset_lab.tasks.registry import FIXED_TASKS, build_fixed_task, family_names, sample_task

        pattern = str(OmegaConf.select(self.cfg, "pattern", default="*"))
        n_seeds = int(OmegaConf.select(self.cfg, "seeds_per_family", default=1))
        rows = []
        for family in family_names():
            for seed in range(n_seeds):
                name = f"{family}_seed{seed}"
                if fnmatch.fnmatchcase(name, pattern):
                    rows.append(self._safe_row(lambda: sample_task(family, seed, offline_data="substitute",
                                                                   **self._data()), name, family))
        for name in FIXED_TASKS.names(pattern):
            kind = FIXED_TASKS.get(name).kind
            rows.append(self._safe_row(lambda: build_fixed_task(name, offline_data="substitute",
                                                                **self._data()), name, kind))
        header = f"{'name':<58} {'family':<34} {'parameters':>11}  {'dataset':<24} data"
        print(header)
        print("-" * len(header))
        for r in rows:
            params = f"{r['parameters']:,}" if isinstance(r["parameters"], int) else "?"
            present = "yes" if r["data_present"] else ("stand-in" if r["data_present"] is False else "?")
            print(f"{r['name']:<58} {r['family']:<34} {params:>11}  {str(r['dataset']):<24} {present}")
        print(f"{len(family_names())} families (seed 0{f'-{n_seeds - 1}' if n_seeds > 1 else ''} shown), "
              f"{len(FIXED_TASKS)} fixed tasks; `tasklab pipeline=TASKS name=<task>` describes one")
        return {"tasks": rows}

    @staticmethod
    def _safe_row(build: Any, name: str, family: str) -> dict[str, Any]:
        try:
            return task_row(build())
        except TasklabError as exc:
            log.warning("%s: %s", name, exc)
            return {"name": name, "family": family, "parameters": None, "dataset": "?", "data_present": None}

    def describe(self, name: str) -> dict[str, Any]:
        from taskset_lab.tasks.registry import get_task

        offline = str(OmegaConf.select(self.cfg, "misc.offline_data", default="error"))
        task = get_task(name, offline_data=offline, **self._data())
        module = task.init_module(0)
        row = task_row(task)
        info = {**row, "built_as": task.name, "config": task.config,
                "flops_per_step": step_flops(task, task.init_module(0)),
                "seconds_per_step": time_per_step(task, module)}
        print(f"task:        {name}" + (f"  (built on the offline stand-in: {task.name})" if task.name != name else ""))
        print(f"family:      {info['family']}")
        print(f"dataset:     {info['dataset']} ({'present' if info['data_present'] else 'absent: stand-in'})")
        print(f"parameters:  {info['parameters']:,}")
        flops = info["flops_per_step"]
        print(f"FLOPs/step:  {'?' if flops is None else f'{flops / 1e6:,.2f} M'} (forward + backward, one batch)")
        print(f"time/step:   {info['seconds_per_step'] * 1e3:.2f} ms here (Adam, {torch.get_num_threads()} threads)")
        print("config:      " + json.dumps(task.config, sort_keys=True))
        return info
