"""Curve collection: tasks x M configs of one optimizer family x R replicas into a store.

What is collected is a :class:`~taskset_lab.curves.spec.CollectionSpec`; config ``i``
(``0 <= i < num_configs``) has the hparams ``family.sample(config_seed_offset + i)``.
The work is cut into items ``(task, config chunk, replica)``, enumerated task by task, then
chunk, then replica; item ``n`` belongs to shard ``n % num_shards``. Each item is one
population run and one store part (see :mod:`taskset_lab.curves.store`); finished parts
are skipped, so a killed collection restarts where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from taskset_lab.curves.store import (RUNS_DIR, SUFFIX, claim_part, clear_stale_claims, ensure_manifest, part_done,
                                      part_name, write_part)
from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.engine.driver import train_population
from taskset_lab.engine.state import PopulationResult
from taskset_lab.errors import DataError
from taskset_lab.tasks.base import SPLITS, Task, task_name
from taskset_lab.tasks.registry import as_json
from taskset_lab.tasks.task_set import TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """One population run: configs ``config_ids`` of task ``task_index``, one replica."""

    index: int
    task_index: int
    task: str
    chunk: int
    config_ids: tuple[int, ...]
    replica: int
    part: str


TaskLike = TaskSpec | Mapping[str, Any]


def as_task_spec(spec: TaskLike) -> TaskSpec:
    """A :class:`TaskSpec` as it is, or a full task config (OmegaConf nodes resolved) as the
    spec of an unnamed task (``<family>_<hash>``)."""
    if isinstance(spec, TaskSpec):
        return spec
    config = as_json(spec)
    if not isinstance(config, dict) or "family" not in config:
        raise ValueError(f"a task spec must be a TaskSpec or a config dict with a 'family' field, got {spec!r}")
    return TaskSpec(task_name(config), str(config["family"]), config)


def work_items(task_specs: Sequence[TaskLike], optimizer: str, num_configs: int,
               replicas: int, chunk_size: int) -> list[WorkItem]:
    """Every work item of a collection, in the deterministic order shards are cut from."""
    if num_configs < 1 or replicas < 1 or chunk_size < 1:
        raise ValueError("num_configs, replicas and chunk_size must be >= 1")
    items = []
    for t, spec in enumerate(task_specs):
        name = as_task_spec(spec).name
        for chunk, lo in enumerate(range(0, num_configs, chunk_size)):
            ids = tuple(range(lo, min(num_configs, lo + chunk_size)))
            for replica in range(replicas):
                items.append(WorkItem(len(items), t, name, chunk, ids, replica,
                                      part_name(name, optimizer, chunk, replica)))
    return items


def _check_finished_part(store: Path, item: WorkItem, spec: CollectionSpec) -> None:
    """A finished part must have been collected with the same run settings."""
    path = store / RUNS_DIR / f"{item.part}{SUFFIX}"
    try:
        runs = pq.read_table(path, columns=["config_id", "config_seed", "total_steps", "eval_every"]).to_pandas()
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"unreadable runs file {path} of finished part {item.part}: {exc}") from exc
    same = (sorted(runs["config_id"].tolist()) == list(item.config_ids)
            and sorted(runs["config_seed"].tolist()) == sorted(spec.config_seeds(item.config_ids))
            and set(runs["total_steps"].tolist()) == {spec.total_steps}
            and set(runs["eval_every"].tolist()) == {spec.eval_every})
    if not same:
        raise DataError(f"part {item.part} in {store} was collected with other settings (configs, "
                        f"config_seed_offset, total_steps or eval_every); use another store_dir")


def result_frames(result: PopulationResult, task: str, task_family: str, task_config: dict[str, Any],
                  optimizer: str, config_ids: Sequence[int], hparams: Sequence[Mapping[str, Any]],
                  config_seeds: Sequence[int], replica: int, total_steps: int, eval_every: int,
                  device: str, float_dtype: type = np.float32) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The curves rows and runs rows of one population result."""
    k, n = result.num_configs, len(result.steps)
    curves = pd.DataFrame({
        "task": task, "task_family": task_family, "optimizer": optimizer,
        "config_id": np.repeat(np.asarray(config_ids, dtype=np.int32), n),
        "replica": np.full(k * n, replica, dtype=np.int16),
        "step": np.tile(np.asarray(result.steps, dtype=np.int32), k),
        **{s: result.losses[s].double().numpy().reshape(-1).astype(float_dtype) for s in SPLITS},
    })
    dstep = result.diverged_step.numpy().astype(np.int32)
    runs = pd.DataFrame({
        "task": task, "task_family": task_family,
        "task_config": json.dumps(task_config, sort_keys=True),
        "optimizer": optimizer,
        "config_id": np.asarray(config_ids, dtype=np.int32),
        "replica": np.full(k, replica, dtype=np.int16),
        "hparams": [json.dumps(dict(h), sort_keys=True) for h in hparams],
        "config_seed": np.asarray(config_seeds, dtype=np.int64),
        "status": np.where(dstep >= 0, "diverged", "ok"),
        "diverged_step": dstep,
        "total_steps": np.full(k, total_steps, dtype=np.int32),
        "eval_every": np.full(k, eval_every, dtype=np.int32),
        "seconds": np.full(k, result.seconds / k, dtype=np.float64),
        "device": device,
    })
    return curves, runs


def collect_curves(spec: CollectionSpec, task_specs: Sequence[TaskLike],
                   store_dir: str | os.PathLike) -> dict[str, Any]:
    """Collect the curves ``spec`` asks for, on ``task_specs`` (task-set specs or full task
    configs), for this shard's work items into ``store_dir``; returns a summary. Finished
    parts are skipped."""
    from tqdm.auto import tqdm

    from taskset_lab.optim.search_space import resolve_search_space

    optimizer, num_configs, replicas = spec.optimizer, spec.num_configs, spec.replicas
    total_steps, shard_index, num_shards = spec.total_steps, spec.shard_index, spec.num_shards
    space = resolve_search_space(optimizer, spec.config_seed_offset)  # a family, or a list's entries
    family, optimizer = space.family, space.name
    store = Path(store_dir)
    specs = [as_task_spec(s) for s in task_specs]
    items = [it for it in work_items(specs, optimizer, num_configs, replicas, spec.chunk_size)
             if it.index % num_shards == shard_index]
    ensure_manifest(store, spec.part_settings(optimizer),  # refuses other settings
                    [s.to_dict() for s in specs], replicas)
    clear_stale_claims(store)  # claims of killed writers, whose parts may already be written
    todo = [it for it in items if not part_done(store, it.part)]
    for it in items:
        if part_done(store, it.part):
            _check_finished_part(store, it, spec)
    skipped = len(items) - len(todo)
    if skipped:
        log.info("curve store %s: skipping %d finished parts of %d in shard %d/%d", store, skipped,
                 len(items), shard_index, num_shards)
    device, dtype = spec.torch_device(), spec.torch_dtype
    float_dtype = np.float64 if dtype == torch.float64 else np.float32
    device_name = str(device)
    start = time.perf_counter()
    cfg_steps, n_runs, n_diverged = 0, 0, 0
    built: tuple[int, Task] | None = None
    # one bar over config-steps (its rate is config-steps/s), advanced at every evaluation
    bar = tqdm(total=sum(len(it.config_ids) for it in todo) * total_steps, desc=f"curves {optimizer}",
               unit="cfg-step", unit_scale=True, disable=True if not spec.progress else None)
    for done, it in enumerate(todo):
        if not claim_part(store, it.part):  # another writer is computing it (or has just finished it)
            log.info("part %s is taken by another writer; skipping it", it.part)
            continue
        if built is None or built[0] != it.task_index:
            task = specs[it.task_index].build(data_dir=spec.data_dir, download=spec.download,
                                              offline_data=spec.offline_data)
            built = (it.task_index, task.to(device, dtype))  # data moved once per task
        task = built[1]
        seeds = spec.config_seeds(it.config_ids)
        hparams = [space.hparams(i) for i in it.config_ids]
        result = train_population(task, family, hparams, total_steps, spec.eval_every,
                                  eval_batches=spec.eval_batches, replica=it.replica, device=device,
                                  dtype=dtype, divergence_factor=float(spec.divergence_factor),
                                  max_chunk=spec.max_population, progress=None if bar.disable else bar.update,
                                  config_ids=it.config_ids, compile=spec.compile)
        # the name and family columns come from the task itself (the store never parses names)
        curves, runs = result_frames(result, task.name, task.family, task.config, optimizer,
                                     it.config_ids, hparams, seeds, it.replica, total_steps,
                                     spec.eval_every, device_name, float_dtype)
        write_part(store, it.part, curves, runs)
        cfg_steps += len(it.config_ids) * total_steps
        n_runs += len(it.config_ids)
        n_diverged += int(result.diverged.sum())
        bar.set_postfix({"part": f"{done + 1}/{len(todo)}", "task": it.task, "diverged": n_diverged})
        if spec.progress and bar.disable:  # no terminal (a log file, a batch job): one line per part
            rate = cfg_steps / max(time.perf_counter() - start, 1e-9)
            log.info("[%d/%d] %s: %d configs in %.1f s (%.0f cfg-steps/s so far, %d diverged)", done + 1,
                     len(todo), it.part, len(it.config_ids), result.seconds, rate, n_diverged)
    bar.close()
    clear_stale_claims(store)  # a writer killed while we ran may have finished its part first
    seconds = time.perf_counter() - start
    return {
        "store_dir": str(store),
        "optimizer": optimizer,
        "tasks": len(specs),
        "configs": int(num_configs),
        "replicas": int(replicas),
        "shard_index": int(shard_index),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "num_shards": int(num_shards),
        "parts_total": len(items),
        "parts_done": len(todo),
        "parts_skipped": skipped,
        "runs": n_runs,
        "diverged_fraction": n_diverged / n_runs if n_runs else None,
        "seconds": seconds,
        "config_steps": cfg_steps,
        "config_steps_per_s": cfg_steps / seconds if cfg_steps and seconds > 0 else None,
    }

