"""Training what EVALUATE scores into curve stores, and reading the curves back as arrays.

One store per search space under ``curves_dir`` (a store holds one collection):

* ``<baselines_dir>``: tuned Adam's reference, the built-in ``adam_lr_grid`` (adam1p at
  learned_optimization's learning rates) × seeds, collected once per task set and horizon
  and reused by every later evaluation that names the same folder; its manifest refuses a
  reuse with other settings (another horizon, evaluation schedule, precision, ...).
* ``<curves_dir>/<space>_n<configs>``: the population entries (a family's configs, a list's
  first k, a tuning budget); entries over the same space share one store.
* ``<curves_dir>/<entry>-<8 hex>``: a ``torch.optim`` entry, one part per (task, seed),
  trained one config at a time; jobs run in ``n_jobs`` processes (joblib), each taking its
  part with the store's claim, so a killed run restarted skips finished parts, and two
  processes never train the same one.

Seeds are the store's replicas: seed s of every entry and of the baseline starts from the same
initialization and sees the same batches.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from taskset_lab.curves.collect import collect_curves, result_frames
from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.curves.store import (claim_part, clear_stale_claims, ensure_manifest, manifest_differences,
                                      part_done, part_name, read_curves, read_manifest, read_runs, release_part,
                                      write_part)
from taskset_lab.errors import DataError
from taskset_lab.evaluate.entries import CONFIGS, LEARNED, LIST, TORCH, TUNING, Entry
from taskset_lab.tasks.base import SPLITS
from taskset_lab.tasks.task_set import TaskSpec

log = logging.getLogger(__name__)

#: the baseline's search space (a built-in list: adam1p at learned_optimization's learning rates)
BASELINE_SPACE = "adam_lr_grid"


@dataclass(frozen=True)
class Curves:
    """The curves of one search space on one task: ``losses[split]`` is ``[configs, seeds,
    evaluations]`` at ``steps``; ``diverged`` is ``[configs, seeds]``."""

    steps: np.ndarray
    losses: dict[str, np.ndarray]
    diverged: np.ndarray


def baseline_spec(spec: CollectionSpec) -> CollectionSpec:
    """The collection spec of the tuned-Adam baseline for the evaluation settings ``spec``."""
    from taskset_lab.optim.search_space import resolve_search_space

    return dataclasses.replace(spec, optimizer=BASELINE_SPACE, num_configs=resolve_search_space(BASELINE_SPACE).size,
                               config_seed_offset=0)


def check_baseline_store(store: Path, spec: CollectionSpec) -> None:
    """A baseline store recorded with other settings is refused before anything is written
    (:class:`DataError` naming the settings that differ)."""
    manifest = read_manifest(store)
    if manifest is None:
        return
    diffs = manifest_differences(manifest, baseline_spec(spec).part_settings(BASELINE_SPACE))
    if diffs:
        raise DataError(f"baseline store {store} was collected with other settings: {', '.join(diffs)}; "
                        "name another baselines_dir, or evaluate with the store's settings")


def population_source(entry: Entry, lists_dir: Path) -> str:
    """The search space a population entry trains: a family name, a list name or a list file
    (a ``configs`` entry's configs are written as a list file under ``lists_dir``)."""
    if entry.form == TUNING:
        return str(entry.space)
    if entry.form == LIST:
        return str(entry.space)
    if entry.form == LEARNED:
        path = learned_list_path(entry, lists_dir)
        if not path.is_file():
            raise DataError(f"the list of entry {entry.name} is not learned yet ({path})")
        return str(path)
    if entry.form == CONFIGS:
        import json

        from taskset_lab.files import write_text_atomic

        path = lists_dir / f"{entry.name}.json"
        text = json.dumps({"optimizer": entry.family, "name": entry.name, "source": f"EVALUATE entry {entry.name}",
                           "entries": [{"rank": i, "config_id": i, "hparams": dict(h)}
                                       for i, h in enumerate(entry.hparams)]}, indent=2, sort_keys=True)
        if not path.is_file() or path.read_text() != text:
            write_text_atomic(path, text)
        return str(path)
    raise ValueError(f"entry {entry.name} is not a population entry")


def learned_list_path(entry: Entry, lists_dir: Path) -> Path:
    """Where a ``learn_list`` entry's list is written (and found again on resume)."""
    return lists_dir / f"{entry.name}.hparam_list.json"


def learn_entry_list(entry: Entry, spec: CollectionSpec, train_tasks: Sequence[TaskSpec], curves_dir: Path,
                     lists_dir: Path) -> dict[str, Any]:
    """Collect ``entry.configs`` configs of its family on ``train_tasks`` and learn its list
    (kept: a list already learned is reused, so a resumed run scores the same list)."""
    from taskset_lab.evaluate.learned_list import learn_list, write_list

    path = learned_list_path(entry, lists_dir)
    store = curves_dir / f"learn_{entry.space}_n{entry.configs}"
    summary = collect_curves(dataclasses.replace(spec, optimizer=str(entry.space), num_configs=entry.configs,
                                                 config_seed_offset=0), train_tasks, store)
    if not path.is_file():
        data = learn_list(store, str(entry.space), entry.trials)
        write_list(path, data)
        log.info("EVALUATE %s: learned a %d-entry list of %s on %d train tasks -> %s", entry.name, entry.trials,
                 entry.space, len(data["tasks"]), path)
    return summary


@dataclass(frozen=True)
class PopulationStore:
    """One store of population entries: the search space ``source``, its label in the store,
    how many configs and the seed offset."""

    source: str
    label: str
    num_configs: int
    seed_offset: int

    def folder(self, curves_dir: Path) -> Path:
        offset = f"_o{self.seed_offset}" if self.seed_offset else ""
        return curves_dir / f"{self.label}_n{self.num_configs}{offset}"


def population_stores(entries: Sequence[Entry], lists_dir: Path) -> dict[str, PopulationStore]:
    """Entry name -> the store its curves are in; entries over the same space (and seed offset)
    share one store holding as many configs as the largest needs."""
    from taskset_lab.optim.search_space import resolve_search_space

    wanted: dict[tuple[str, int], int] = {}
    sources: dict[str, tuple[str, int]] = {}
    for entry in entries:
        if not entry.on_population:
            continue
        source = population_source(entry, lists_dir)
        key = (source, entry.seed_offset)
        wanted[key] = max(wanted.get(key, 0), entry.num_configs)
        sources[entry.name] = key
    stores = {key: PopulationStore(key[0], resolve_search_space(key[0], key[1]).name, n, key[1])
              for key, n in wanted.items()}
    return {name: stores[key] for name, key in sources.items()}


@dataclass(frozen=True)
class Location:
    """Where an entry's curves are: the store ``folder``, their ``label`` there and how many
    configs per (task, seed) it holds; ``shared_with_baseline`` when they are the baseline's."""

    folder: Path
    label: str
    num_configs: int
    shared_with_baseline: bool = False


def entry_locations(entries: Sequence[Entry], curves_dir: Path, baselines_dir: Path,
                    lists_dir: Path) -> dict[str, Location]:
    """Entry name -> where its curves are. Entries over ``adam_lr_grid`` read the baseline
    store itself (the same configs, seeds and settings), so tuned Adam is never trained twice."""
    stores = population_stores(entries, lists_dir)
    out = {}
    for entry in entries:
        if not entry.on_population:
            out[entry.name] = Location(curves_dir / entry.label(), entry.label(), 1)
            continue
        store = stores[entry.name]
        if store.source == BASELINE_SPACE and store.seed_offset == 0:
            out[entry.name] = Location(baselines_dir, BASELINE_SPACE, store.num_configs, True)
        else:
            out[entry.name] = Location(store.folder(curves_dir), store.label, store.num_configs)
    return out


def collect_population(spec: CollectionSpec, tasks: Sequence[TaskSpec], store: PopulationStore,
                       curves_dir: Path) -> dict[str, Any]:
    """Collect one population store (finished parts skipped)."""
    return collect_curves(dataclasses.replace(spec, optimizer=store.source, num_configs=store.num_configs,
                                              config_seed_offset=store.seed_offset),
                          tasks, store.folder(curves_dir))


def torch_settings(spec: CollectionSpec, label: str) -> dict[str, Any]:
    """The manifest settings of a ``torch`` entry's store: one config, one part per (task, seed)."""
    return dataclasses.replace(spec, num_configs=1, config_seed_offset=0, chunk_size=1).part_settings(label)


def _torch_job(entry: Entry, task: TaskSpec, seed: int, spec: CollectionSpec, store: str, threads: int | None
               ) -> tuple[str, float, bool] | None:
    """Train ``entry`` on ``task`` for ``seed`` into its part of ``store`` (None when another
    process holds the part or it is finished)."""
    import torch

    from taskset_lab.engine.single import train_single

    if threads:
        torch.set_num_threads(threads)
    label = entry.label()
    part = part_name(task.name, label, 0, seed)
    if part_done(store, part) or not claim_part(store, part):
        return None
    try:
        built = task.build(data_dir=spec.data_dir, download=spec.download, offline_data=spec.offline_data)
        device, dtype = spec.torch_device(), spec.torch_dtype
        built = built.to(device, dtype)
        result = train_single(built, entry.factory(), spec.total_steps, spec.eval_every,
                              eval_batches=spec.eval_batches, replica=seed, device=device, dtype=dtype,
                              divergence_factor=float(spec.divergence_factor))
        float_dtype = np.float64 if dtype == torch.float64 else np.float32
        curves, runs = result_frames(result, built.name, built.family, built.config, label, [0],
                                     [dict(entry.kwargs, _target_=entry.target)], [-1], seed, spec.total_steps,
                                     spec.eval_every, str(device), float_dtype)
        write_part(store, part, curves, runs)
    except BaseException:
        release_part(store, part)
        raise
    return part, result.seconds, bool(result.diverged[0])


def collect_torch(entry: Entry, spec: CollectionSpec, tasks: Sequence[TaskSpec], store: Path,
                  n_jobs: int = 1) -> dict[str, Any]:
    """Train a ``torch`` entry on every (task, seed) not yet in ``store``: ``n_jobs`` processes
    (joblib's loky backend, one torch thread each) or, with 1, in this process."""
    assert entry.form == TORCH
    label = entry.label()
    ensure_manifest(store, torch_settings(spec, label), [t.to_dict() for t in tasks], spec.replicas)
    clear_stale_claims(store)
    jobs = [(t, seed) for t in tasks for seed in range(spec.replicas)
            if not part_done(store, part_name(t.name, label, 0, seed))]
    start = time.perf_counter()
    procs = min(n_jobs, max(len(jobs), 1))
    log.info("EVALUATE %s: %d of %d (task, seed) runs to train (%s), %d process%s", entry.name, len(jobs),
             len(tasks) * spec.replicas, entry.target, procs, "es" if procs > 1 else "")
    done = diverged = 0
    if n_jobs > 1 and len(jobs) > 1:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
        results = parallel(delayed(_torch_job)(entry, t, s, spec, str(store), 1) for t, s in jobs)
    else:
        results = (_torch_job(entry, t, s, spec, str(store), None) for t, s in jobs)
    for result in results:
        if result is None:
            continue
        done += 1
        diverged += int(result[2])
        if spec.progress:
            log.info("[%s %d/%d] %s: %.1f s%s", entry.name, done, len(jobs), result[0], result[1],
                     " (diverged)" if result[2] else "")
    clear_stale_claims(store)
    seconds = time.perf_counter() - start
    return {"entry": entry.name, "runs": done, "parts_skipped": len(tasks) * spec.replicas - len(jobs),
            "diverged": diverged, "seconds": seconds,
            "config_steps_per_s": done * spec.total_steps / seconds if done and seconds > 0 else None}


class StoredCurves:
    """Every curve of one label in one store, read once (columnar, filters pushed down) and cut
    per task by the ``task`` column, the name the collector recorded (a task on an offline
    stand-in carries ``_on_<stand-in>`` there, while its part files are named after the spec)."""

    def __init__(self, store: Path, label: str):
        self.store, self.label = Path(store), label
        self.curves = read_curves(store, optimizers=label)
        self.runs = read_runs(store, optimizers=label, columns=["task", "config_id", "replica", "status"])

    def task(self, task: str, num_configs: int, seeds: int, steps: Sequence[int]) -> Curves:
        """The curves of ``task`` as arrays; a missing run is a :class:`DataError` naming the
        store (the collection did not finish)."""
        frame = self.curves[(self.curves["task"] == task) & (self.curves["config_id"] < num_configs)
                            & (self.curves["replica"] < seeds)]
        runs = self.runs[(self.runs["task"] == task) & (self.runs["config_id"] < num_configs)
                         & (self.runs["replica"] < seeds)]
        expected = num_configs * seeds
        if len(runs) != expected or len(frame) != expected * len(steps):
            raise DataError(f"curve store {self.store} holds {len(runs)} of the {expected} runs of {self.label} on "
                            f"{task}: the collection did not finish; run the same command again to complete it")
        frame = frame.sort_values(["config_id", "replica", "step"])
        if not np.array_equal(frame["step"].to_numpy()[:len(steps)], np.asarray(steps)):
            raise DataError(f"curve store {self.store}: {self.label} on {task} was evaluated at other steps than "
                            "this evaluation")
        shape = (num_configs, seeds, len(steps))
        losses = {s: frame[s].to_numpy(dtype=float).reshape(shape) for s in SPLITS}
        runs = runs.sort_values(["config_id", "replica"])
        diverged = (runs["status"].to_numpy() == "diverged").reshape(num_configs, seeds)
        return Curves(np.asarray(steps, dtype=float), losses, diverged)


def eval_steps(total_steps: int, eval_every: int) -> list[int]:
    """The evaluation steps of a run (the engine's schedule)."""
    from taskset_lab.engine.state import eval_steps as schedule

    return list(schedule(int(total_steps), int(eval_every)))


def summarize_collection(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals of the collections one evaluation ran (for its summary)."""
    seconds = float(sum(p.get("seconds") or 0.0 for p in parts))
    return {"collections": len(parts), "seconds": seconds,
            "runs": int(sum(p.get("runs") or 0 for p in parts)),
            "parts_skipped": int(sum(p.get("parts_skipped") or 0 for p in parts))}


__all__ = ["BASELINE_SPACE", "Curves", "PopulationStore", "StoredCurves", "baseline_spec", "check_baseline_store",
           "collect_population", "collect_torch", "eval_steps", "population_stores",
           "summarize_collection", "torch_settings"]
