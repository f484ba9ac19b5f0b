"""HPARAM_LIST's input checks: nothing adjusted silently, nothing learned from no data.

* :func:`apply_store_manifest`: an existing store knows how it was collected (its
  ``manifest.json``), so ``curves_dir=`` alone is enough; an explicit override that
  contradicts the store is refused.
* :func:`check_settings`: values that used to be clipped or ignored without a word
  (``length`` beyond the store's configs, ``ks`` out of ``[1, length]``, ``tpe.trials < 1``
  with TPE on, ``learner.divergence_factor <= 0``) are refused, naming the field.
* :func:`check_store_optimizer` and :func:`check_curves`: a store of another optimizer, or
  one with no finite run, is refused; each task whose runs are all NaN is warned about in
  the log and in ``data_warnings.txt``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from taskset_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# config field <- manifest key (taskset_lab.curves.store.ensure_manifest)
MANIFEST_FIELDS = {
    "search_space.family": "optimizer",
    "search_space.num_configs": "num_configs",
    "search_space.seed_offset": "config_seed_offset",
    "total_steps": "total_steps",
    "eval_every": "eval_every",
    "learner.eval_batches": "eval_batches",
    "learner.chunk_size": "chunk_size",
    "learner.dtype": "dtype",
    "learner.divergence_factor": "divergence_factor",
}
WARNINGS_FILE = "data_warnings.txt"


def _explicit_keys() -> tuple[str, ...] | None:
    from taskset_lab.overrides import explicit_overrides, override_key

    explicit = explicit_overrides()
    return None if explicit is None else tuple(override_key(o) for o in explicit)


def _is_explicit(field: str, keys: tuple[str, ...] | None) -> bool:
    return bool(keys) and any(field == k or field.startswith(k + ".") for k in keys)


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def apply_store_manifest(cfg: DictConfig) -> dict[str, Any] | None:
    """Take the collection settings (and task set) of the store at ``curves_dir`` from its
    manifest; an explicit command-line override that differs is refused. Returns the
    manifest, or None where the store has none (nothing changes then)."""
    from taskset_lab.curves.store import MANIFEST, read_manifest

    store = Path(str(cfg.curves_dir))
    if store.exists() and not store.is_dir():
        raise ConfigError("curves_dir", f"{store} is a file, not a curve store folder")
    manifest = read_manifest(store) if store.is_dir() else None
    if manifest is None:
        return None
    keys = _explicit_keys()
    with open_dict(cfg):
        for field, key in MANIFEST_FIELDS.items():
            if key not in manifest:
                continue
            asked = OmegaConf.select(cfg, field, default=None)
            if _is_explicit(field, keys) and not _same(asked, manifest[key]):
                raise ConfigError(field, f"is {asked!r} but the curve store {store} was collected with "
                                         f"{manifest[key]!r} ({store / MANIFEST}); leave it out or use another "
                                         f"curves_dir")
            OmegaConf.update(cfg, field, manifest[key], force_add=True)
        if "replicas" in manifest and not _is_explicit("replicas", keys):
            cfg.replicas = int(manifest["replicas"])
        if not _is_explicit("task_set", keys):
            _store_tasks(cfg, store, manifest)
    log.info("curve store %s: %s configs of %s, %s steps, %d tasks (from its manifest)", store,
             manifest.get("num_configs"), manifest.get("optimizer"), manifest.get("total_steps"),
             len(manifest.get("tasks") or []))
    return manifest


def _store_parts(store: Path, manifest: dict[str, Any]) -> tuple[set[str], set[str]] | None:
    """(the parts the store's manifest promises — tasks x config chunks x replicas —, those
    written), or None where the manifest does not name its tasks."""
    from taskset_lab.curves.store import list_parts, part_name

    names = [t.get("name") for t in manifest.get("tasks") or [] if isinstance(t, dict)]
    if not names or not all(names):
        return None
    chunks = -(-int(manifest["num_configs"]) // int(manifest["chunk_size"]))
    expected = {part_name(n, str(manifest["optimizer"]), c, r) for n in names for c in range(chunks)
                for r in range(int(manifest.get("replicas", 1)))}
    return expected, expected & set(list_parts(store))


def store_is_complete(store: str | Path, manifest: dict[str, Any] | None) -> bool:
    """Whether every part the store's manifest promises has been written."""
    parts = _store_parts(Path(store), manifest) if manifest else None
    return parts is not None and parts[0] == parts[1]


def store_task_specs(manifest: dict[str, Any] | None) -> list[Any] | None:
    """The tasks a store was collected on, as task specs, from its manifest (None where the
    manifest does not record them in full)."""
    from taskset_lab.tasks.task_set import TaskSpec

    entries = (manifest or {}).get("tasks") or []
    if not entries or not all(isinstance(t, dict) and t.get("name") and t.get("family")
                              and isinstance(t.get("config"), (dict, type(None))) for t in entries):
        return None
    return [TaskSpec(str(t["name"]), str(t["family"]), t["config"]) for t in entries]


def _store_tasks(cfg: DictConfig, store: Path, manifest: dict[str, Any]) -> None:
    """A complete store is learned from as it is (its parts are not collected again: the
    pipeline asks :func:`store_is_complete`); an incomplete one is completed only with the
    task set it was collected for."""
    from taskset_lab.tasks.task_set import resolve_task_set

    parts = _store_parts(store, manifest)
    if parts is None or parts[0] == parts[1] or not OmegaConf.select(cfg, "collect_if_missing", default=False):
        return
    names = {t["name"] for t in manifest["tasks"]}
    asked = {spec.name for spec in resolve_task_set(cfg.task_set)}
    if asked != names:
        raise ConfigError("task_set", f"the curve store {store} is incomplete ({len(parts[1])} of {len(parts[0])} "
                                      f"parts) and was collected for {len(names)} other tasks than this task_set's "
                                      f"{len(asked)}; pass the task_set it was collected with to complete it")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_settings(cfg: DictConfig) -> None:
    """Refuse the values that were silently clipped or ignored before (see module doc); all
    their problems at once."""
    from taskset_lab.errors import ConfigProblems

    problems = ConfigProblems()
    hl = cfg.hparam_list
    length = int(hl.length)
    configs = OmegaConf.select(cfg, "search_space.num_configs", default=None)
    with problems:
        if isinstance(configs, int) and length > configs:
            raise ConfigError("hparam_list.length", f"is {length} but there are only {configs} configs "
                                                    f"(search_space.num_configs); use at most {configs}")
    ks = OmegaConf.select(cfg, "hparam_list.ks", default=None)
    with problems:
        if ks is not None:
            ks = list(ks)
            most = min(length, configs) if isinstance(configs, int) else length  # no list is longer
            bad = [k for k in ks if not _positive_int(k) or k > most]
            if not ks or bad:
                limit = f"hparam_list.length={length}" if most == length else f"{most} (the configs a list has)"
                raise ConfigError("hparam_list.ks", f"must be trial counts in [1, {limit}], got {ks}")
    tpe = OmegaConf.select(cfg, "hparam_list.tpe", default=None) or {}
    if tpe.get("enabled", False):
        with problems:
            if not _positive_int(tpe.get("trials", 0)):
                raise ConfigError("hparam_list.tpe.trials", f"must be a positive integer when TPE is on, got "
                                                            f"{tpe.get('trials')!r} (hparam_list.tpe.enabled=false "
                                                            f"leaves TPE out)")
        with problems:
            if not _positive_int(tpe.get("seeds", 2)):
                raise ConfigError("hparam_list.tpe.seeds", f"must be a positive integer, got {tpe.get('seeds')!r}")
    with problems:
        check_divergence_factor(cfg)
    problems.raise_all()


def check_divergence_factor(cfg: DictConfig) -> None:
    """``learner.divergence_factor`` must be a finite number > 0 (<= 0 marks every run diverged)."""
    value = OmegaConf.select(cfg, "learner.divergence_factor", default=None)
    if value is None:
        return
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError("learner.divergence_factor", f"must be a finite number > 0 (a run is diverged above "
                                                       f"this many times its initial loss), got {value!r}")


def check_store_optimizer(store: Path, optimizer: str) -> None:
    """A store holding only other optimizers' curves is refused, naming what it holds."""
    from taskset_lab.curves.store import list_parts, parse_part_name, read_manifest

    manifest = read_manifest(store) if store.is_dir() else None
    held = ({manifest["optimizer"]} if manifest and "optimizer" in manifest
            else {p[1] for p in map(parse_part_name, list_parts(store)) if p is not None})
    if held and optimizer not in held:
        raise DataError(f"curve store {store} holds curves of {', '.join(sorted(held))}, not {optimizer}; "
                        f"set search_space={sorted(held)[0]} or pass only curves_dir=")


def tasks_without_progress(curves: pd.DataFrame, split: str, rel_tol: float = 1e-3) -> list[str]:
    """Tasks on which no run beats initialization: the lowest finite ``split`` loss after the
    first step is not below the median first-step loss by ``rel_tol`` of its size."""
    if split not in curves.columns or curves.empty:
        return []
    stuck = []
    for task, part in curves.groupby("task", sort=True):
        first = part["step"].min()
        init = float(part.loc[part["step"] == first, split].median())
        later = part.loc[part["step"] > first, split].to_numpy(dtype=float)
        later = later[np.isfinite(later)]
        if math.isfinite(init) and (later.size == 0 or later.min() >= init - rel_tol * max(abs(init), 1e-12)):
            stuck.append(str(task))
    return stuck


def check_curves(curves: pd.DataFrame, runs: pd.DataFrame, store: Path, select_split: str, report_split: str,
                 output_dir: Path | None = None) -> list[str]:
    """Warn per task where every run diverged or is NaN from the start; refuse a store where
    that holds for every task (nothing to learn from).

    Returns the warnings (also logged, and written to ``output_dir/data_warnings.txt``).
    """
    if curves.empty:
        raise DataError(f"curve store {store} holds no curves for this optimizer")
    keys = ["task", "config_id", "replica"]
    splits = [s for s in dict.fromkeys((select_split, report_split)) if s in curves.columns]
    finite = np.isfinite(curves[splits].to_numpy(dtype=float)).all(axis=1)
    first = curves.assign(_finite=finite).sort_values("step", kind="stable").groupby(keys)["_finite"].first()
    ok = first
    if "status" in runs.columns and len(runs):
        healthy = runs.set_index(keys)["status"].ne("diverged")
        ok = first & healthy.reindex(first.index, fill_value=True)
    per_task = ok.groupby(level="task").any()
    warnings = [f"task {task}: every run diverged or is NaN from the start ({'/'.join(splits)}); every config "
                f"gets the cap there" for task, good in per_task.items() if not good]
    stuck = tasks_without_progress(curves, report_split)
    warnings += [f"task {task}: no run gets its {report_split} loss below the initial value; it is noise in "
                 f"every evaluation (an unlearnable task or too short a horizon)" for task in stuck
                 if per_task.get(task, True)]
    for w in warnings:
        log.warning(w)
    if not per_task.any():
        raise DataError(f"curve store {store}: every run of every task ({len(per_task)}) diverged or is NaN; "
                        f"nothing to learn a list from")
    if output_dir is not None:
        path = Path(output_dir) / WARNINGS_FILE
        if warnings:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(warnings) + "\n")
        elif path.exists():
            path.unlink()
    return warnings
