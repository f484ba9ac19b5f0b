"""TASKS: the catalogue of task families and fixed tasks, and a description of one task.

    tasklab pipeline=TASKS                       # families and fixed tasks, one line each
    tasklab pipeline=TASKS name=mlp_family_seed12 # config, parameters, FLOPs and time per step
    tasklab pipeline=TASKS name=mlp_family        # a family: its fields and their sampled ranges
    tasklab pipeline=TASKS name=nadamw            # a search space: its hparams' sampled ranges
    tasklab pipeline=TASKS plot=embedding curves_dir=<store>  # the map of a store's tasks
    tasklab pipeline=TASKS plot=catalogue         # parameter counts per family (PNG)
    tasklab pipeline=TASKS plot=cost seeds_per_family=40  # measured cost per step (CSV, PNG)

Listing builds each fixed task on its offline stand-in where its data is absent (stand-ins
have the real shapes, so parameter counts are the real ones) and says whether the real data
is present under ``misc.data_dir``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
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


def cost_spread(frame: Any) -> str:
    """One line: how many decades the measured tasks span in parameters, in time per step and
    in time per config-step (TaskSet: "7 orders of magnitude")."""
    def decades(values: Any) -> float:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v) & (v > 0)]
        return float(np.log10(v.max() / v.min())) if v.size else float("nan")

    return (f"spread over {len(frame)} tasks: parameters {decades(frame['parameters']):.1f} decades, "
            f"time per step {decades(frame['seconds_per_step']):.1f} decades, time per config-step "
            f"{decades(frame['seconds_per_config_step']):.1f} decades (tasks probed)")


class TasksPipeline(Pipeline):
    name = "TASKS"
    required_fields = ()

    def check(self) -> None:
        name = OmegaConf.select(self.cfg, "name", default=None)
        if name is not None and not isinstance(name, str):
            raise ConfigError("name", f"must be a task name, got {name!r}")
        from taskset_lab.pipelines.base import require_positive_int

        require_positive_int(self.cfg, "seeds_per_family", default=1)
        from taskset_lab.curves.budget import PROBE_MAX_SECONDS_PER_STEP

        probe = OmegaConf.select(self.cfg, "probe_max_ms", default=PROBE_MAX_SECONDS_PER_STEP * 1e3)
        if isinstance(probe, bool) or not isinstance(probe, (int, float)) or not probe > 0:
            raise ConfigError("probe_max_ms", f"must be a positive number of milliseconds, got {probe!r}")
        seeds = OmegaConf.select(self.cfg, "seeds", default=None)
        if seeds is not None and (isinstance(seeds, (str, int)) or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)):
            raise ConfigError("seeds", f"must be a list of task seeds (integers >= 0), got {seeds!r}")
        plot = OmegaConf.select(self.cfg, "plot", default=None)
        if plot not in (None, "embedding", "catalogue", "cost"):
            raise ConfigError("plot", "must be embedding (the map of a store's tasks), catalogue (parameter "
                              f"counts) or cost (measured time per step), got {plot!r}")
        if plot == "embedding":
            store = OmegaConf.select(self.cfg, "curves_dir", default=None)
            if store is None:
                raise ConfigError("curves_dir", "plot=embedding needs curves_dir=<a curve store>")
            if not Path(str(store)).is_dir():
                raise ConfigError("curves_dir", f"{store} is not a folder (a curve store from CURVES or HPARAM_LIST)")
            method = OmegaConf.select(self.cfg, "method", default="tsne")
            from taskset_lab.viz.task_map import METHODS

            if method not in METHODS:
                raise ConfigError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
        self._samples()

    def _data(self) -> dict[str, Any]:
        return {"data_dir": str(OmegaConf.select(self.cfg, "misc.data_dir", default="data")),
                "download": False}

    def run(self) -> dict[str, Any]:
        plot = OmegaConf.select(self.cfg, "plot", default=None)
        if plot == "embedding":
            return self.embedding()
        if plot == "cost":
            return self.costs()
        name = OmegaConf.select(self.cfg, "name", default=None)
        if name:
            return self.describe(name)
        summary = self.catalogue()
        if plot == "catalogue":
            summary["plot"] = str(self.plot_catalogue(summary["tasks"]))
        return summary

    def _output_dir(self) -> Path:
        return Path(str(OmegaConf.select(self.cfg, "output_dir", default="outputs/tasks")))

    def embedding(self) -> dict[str, Any]:
        """The map of the tasks of ``curves_dir`` (:mod:`taskset_lab.viz.task_map`)."""
        from taskset_lab.viz.task_map import task_map, write_task_map

        store = Path(str(OmegaConf.select(self.cfg, "curves_dir")))
        frame = task_map(store, method=str(OmegaConf.select(self.cfg, "method", default="tsne")),
                         seed=int(OmegaConf.select(self.cfg, "global_seed", default=0)))
        paths = write_task_map(frame, self._output_dir(), title=f"tasks of {store.name or store}")
        print(f"map of {len(frame)} tasks ({frame['task_family'].nunique()} families) from {store}:")
        for path in paths:
            print(f"  {path}")
        return {"tasks": len(frame), "files": [str(p) for p in paths]}

    def _catalogue_builders(self, released_only: bool = False) -> list[tuple[str, str, Any]]:
        """``(name, family, build)`` of the catalogue's tasks matching ``pattern``: seeds
        ``0..seeds_per_family-1`` of each family (only TaskSet's with ``released_only``), then
        the fixed tasks; each built on its offline stand-in where the data is absent."""
        from taskset_lab.tasks.registry import (FIXED_TASKS, TASK_FAMILIES, build_fixed_task, sample_task,
                                                task_family_names)

        pattern = str(OmegaConf.select(self.cfg, "pattern", default="*"))
        n_seeds = int(OmegaConf.select(self.cfg, "seeds_per_family", default=1))
        listed = OmegaConf.select(self.cfg, "seeds", default=None)
        seeds = range(n_seeds) if listed is None else [int(s) for s in listed]
        out: list[tuple[str, str, Any]] = []
        for family in task_family_names():
            if released_only and TASK_FAMILIES.get(family).released is None:
                continue
            for seed in seeds:
                name = f"{family}_seed{seed}"
                if fnmatch.fnmatchcase(name, pattern):
                    out.append((name, family, lambda f=family, s=seed: sample_task(
                        f, s, offline_data="substitute", **self._data())))
        for name in FIXED_TASKS.names(pattern):
            out.append((name, FIXED_TASKS.get(name).kind,
                        lambda n=name: build_fixed_task(n, offline_data="substitute", **self._data())))
        return out

    def costs(self) -> dict[str, Any]:
        """Measured cost per step of TaskSet's tasks here (:mod:`taskset_lab.curves.budget`):
        one row per task into ``task_costs.csv`` (written as it goes, so a long measurement
        keeps what it measured), and the per-family distributions as a PNG."""
        import pandas as pd

        from taskset_lab.curves.budget import (PROBE_MAX_SECONDS_PER_STEP, population_seconds_per_config_step,
                                               probe_configs)
        from taskset_lab.files import write_csv_atomic

        out_dir = self._output_dir()
        out_dir.mkdir(parents=True, exist_ok=True)
        csv = out_dir / "task_costs.csv"
        builders = self._catalogue_builders(released_only=True)
        max_probe = float(OmegaConf.select(self.cfg, "probe_max_ms", default=PROBE_MAX_SECONDS_PER_STEP * 1e3)) / 1e3
        rows: list[dict[str, Any]] = []
        for i, (name, family, build) in enumerate(builders):
            try:
                task = build()
                module = task.init_module(0)
                row = task_row(task)
                with torch.no_grad():  # a loss that is not finite at initialization ranks no optimizer
                    initial = float(task.train_loss(module, task.data.batch("train", 0), 0))
                single = time_per_step(task, module, steps=3)
                k = probe_configs(single)
                row.update(name=name, built_as=task.name, family=family, initial_loss=initial,
                           seconds_per_step=single, probe_configs=k,
                           seconds_per_config_step=population_seconds_per_config_step(task, k)
                           if single <= max_probe else float("nan"))
            except (TasklabError, RuntimeError, ValueError) as exc:
                log.warning("%s: not measured (%s)", name, exc)
                continue
            rows.append(row)
            print(f"[{i + 1}/{len(builders)}] {name:<52} {row['parameters']:>11,} params  "
                  f"{row['seconds_per_step'] * 1e3:8.2f} ms/step  "
                  f"{row['seconds_per_config_step'] * 1e6:9.1f} us/config-step", flush=True)
            if len(rows) % 10 == 0:
                write_csv_atomic(csv, pd.DataFrame(rows))
        frame = pd.DataFrame(rows)
        write_csv_atomic(csv, frame)
        png = self.plot_costs(frame) if len(frame) else None
        print(f"{len(frame)} tasks measured ({torch.get_num_threads()} threads): {csv}" + (f", {png}" if png else ""))
        if len(frame):
            print(cost_spread(frame))
        return {"tasks": len(frame), "csv": str(csv), "plot": str(png) if png else None}

    def plot_costs(self, frame: Any) -> Path:
        """Parameters and measured time per config-step per family, on log axes."""
        from taskset_lab.viz.plots import pyplot, save_figure

        order = frame.groupby("family")["seconds_per_config_step"].median().sort_values().index.tolist()
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * len(order) + 1.4), sharey=True)
        for i, family in enumerate(order):
            part = frame[frame["family"] == family]
            probed = part[np.isfinite(part["seconds_per_config_step"])]
            axes[0].scatter(part["parameters"], [i] * len(part), s=12, alpha=0.7)
            axes[1].scatter(probed["seconds_per_config_step"] * 1e6, [i] * len(probed), s=12, alpha=0.7)
        axes[0].set_yticks(range(len(order)), order, fontsize=7)
        for ax, label in zip(axes, ("parameters", "us per config-step (nadamw population)")):
            if ax.collections and any(len(c.get_offsets()) for c in ax.collections):
                ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{len(frame)} TaskSet tasks measured here ({torch.get_num_threads()} threads; "
                     "tasks over probe_max_ms per step not probed)")
        return save_figure(fig, self._output_dir() / "task_costs.png", dpi=130)

    def plot_catalogue(self, rows: list[dict[str, Any]]) -> Path:
        """Parameter counts per family on a log axis (TaskSet's "7 orders of magnitude")."""
        from taskset_lab.viz.plots import pyplot, save_figure

        counts: dict[str, list[int]] = {}
        for r in rows:
            if isinstance(r["parameters"], int):
                counts.setdefault(str(r["family"]), []).append(r["parameters"])
        families = sorted(counts, key=lambda f: float(np.median(counts[f])))
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(families) + 1.2))
        for i, family in enumerate(families):
            ax.scatter(counts[family], [i] * len(counts[family]), s=14, alpha=0.7)
        ax.set_yticks(range(len(families)), families, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        spread = max(max(v) for v in counts.values()) / max(min(min(v) for v in counts.values()), 1)
        title = f"{sum(map(len, counts.values()))} tasks: parameter counts span {np.log10(spread):.1f} decades"
        ax.set_title(title)
        path = save_figure(fig, self._output_dir() / "catalogue_parameters.png", dpi=120)
        print(f"parameter counts per family ({title}): {path}")
        return path

    def catalogue(self) -> dict[str, Any]:
        from taskset_lab.tasks.registry import FIXED_TASKS, task_family_names

        n_seeds = int(OmegaConf.select(self.cfg, "seeds_per_family", default=1))
        rows = [self._safe_row(build, name, family) for name, family, build in self._catalogue_builders()]
        header = f"{'name':<58} {'family':<34} {'parameters':>11}  {'dataset':<24} data"
        print(header)
        print("-" * len(header))
        for r in rows:
            params = f"{r['parameters']:,}" if isinstance(r["parameters"], int) else "?"
            present = "yes" if r["data_present"] else ("stand-in" if r["data_present"] is False else "?")
            print(f"{r['name']:<58} {r['family']:<34} {params:>11}  {str(r['dataset']):<24} {present}")
        print(f"{len(task_family_names())} families (seed 0{f'-{n_seeds - 1}' if n_seeds > 1 else ''} shown), "
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
        from taskset_lab.optim.registry import optimizer_family_names
        from taskset_lab.optim.hparam_list import builtin_list_names
        from taskset_lab.tasks.registry import TASK_FAMILIES, get_task

        if name in TASK_FAMILIES:
            return self.describe_family(name)
        if name in optimizer_family_names() or name in builtin_list_names():
            return self.describe_search_space(name)

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

    def _samples(self) -> int:
        from taskset_lab.pipelines.base import require_positive_int

        return require_positive_int(self.cfg, "samples", default=100)

    def describe_family(self, family: str) -> dict[str, Any]:
        """A task family's config fields (type, what is allowed) and the values its sampler
        draws over seeds ``0..samples-1``."""
        from taskset_lab.tasks.registry import get_task_family, sample_task_config

        n = self._samples()
        fields = get_task_family(family).fields
        draws = [sample_task_config(family, seed) for seed in range(n)]
        rows = summarize_draws(draws, skip=("family",))
        print(f"family:   {family}  (tasks {family}_seed<N>; `tasklab pipeline=TASKS name={family}_seed0` builds one)")
        print(f"fields:   {len(fields) or len(rows)}; values drawn by TaskSet's sampler over seeds 0-{n - 1}")
        width = max([len(r["key"]) for r in rows] + [5])
        for r in rows:
            field = fields.get(r["key"])
            allowed = f"  [allowed: {field.describe()}]" if field is not None else ""
            print(f"  {r['key']:<{width}}  {r['drawn']}{allowed}")
        return {"family": family, "samples": n, "fields": rows}

    def describe_search_space(self, name: str) -> dict[str, Any]:
        """An optimizer search space (a family's sampler, or a built-in list): the values its
        first ``samples`` configs take, config id by config id as CURVES trains them."""
        from taskset_lab.optim.search_space import resolve_search_space

        space = resolve_search_space(name)
        n = self._samples() if space.size is None else min(self._samples(), space.size)
        rows = summarize_draws([dict(space.hparams(i)) for i in range(n)])
        kind = "list" if space.is_list else "optimizer family"
        print(f"search space: {name}  ({kind} {space.family.name}; configs 0-{n - 1}"
              f"{f' of {space.size}' if space.size is not None else ''}: `search_space={name}` in CURVES)")
        width = max([len(r["key"]) for r in rows] + [5])
        for r in rows:
            print(f"  {r['key']:<{width}}  {r['drawn']}")
        return {"search_space": name, "samples": n, "hparams": rows}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summarize_draws(draws: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per key of ``draws`` (dicts from a sampler): what values it took. Numbers give
    their range (and how often they are 0, and whether they span decades, i.e. are drawn on a
    log scale), strings and bools their frequencies, other values how many distinct ones."""
    keys: list[str] = []
    for d in draws:
        keys += [k for k in d if k not in keys and k not in skip]
    rows = []
    for key in keys:
        values = [d[key] for d in draws if key in d]
        present = "" if len(values) == len(draws) else f" (in {len(values)} of {len(draws)})"
        if values and all(_number(v) for v in values):
            nonzero = [float(v) for v in values if v != 0]
            zeros = len(values) - len(nonzero)
            kind = "int" if all(isinstance(v, int) for v in values) else "float"
            if nonzero:
                low, high = min(nonzero), max(nonzero)
                scale = " (log scale)" if low > 0 and high / low >= 100 else ""
                drawn = f"{kind} {low:.4g} .. {high:.4g}{scale}"
            else:
                drawn = f"{kind} 0"
            if zeros and nonzero:
                drawn += f"; 0 in {zeros / len(values):.0%}"
        elif values and all(isinstance(v, (str, bool)) for v in values):
            counts: dict[Any, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            drawn = ", ".join(f"{v!r} {c / len(values):.0%}" for v, c in sorted(counts.items(), key=lambda kv: -kv[1]))
        elif values and all(isinstance(v, list) and all(_number(x) for x in v) for v in values):
            lengths = [len(v) for v in values]
            items = [x for v in values for x in v]
            kind = "ints" if all(isinstance(x, int) for x in items) else "floats"
            drawn = f"lists of {min(lengths)}..{max(lengths)} {kind}"
            if items:
                drawn += f" in {min(items):.4g} .. {max(items):.4g}"
        else:
            distinct = {json.dumps(v, sort_keys=True, default=str) for v in values}
            example = json.dumps(values[0], default=str) if values else "-"
            drawn = f"{len(distinct)} distinct values, e.g. {example[:80]}"
        rows.append({"key": key, "drawn": drawn + present})
    return rows
