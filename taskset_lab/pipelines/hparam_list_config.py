"""HPARAM_LIST's config layer: what the composed config asks of the list learner, checked
and completed before anything runs (the library in :mod:`taskset_lab.hparam_list` takes
plain values).

* :func:`apply_store_manifest`: an existing store knows how it was collected (its
  ``manifest.json``), so ``curves_dir=`` alone is enough; an explicit override that
  contradicts the store is refused.
* :func:`check_settings`: values that would otherwise be clipped or ignored without a word
  (``length`` beyond the store's configs, ``ks`` out of ``[1, length]``, ``tpe.trials < 1``
  with TPE on, ``learner.divergence_factor <= 0``) are refused, naming the field.
* :func:`reference_lists`, :func:`collect_reference_lists`: the published lists
  (``hparam_list.reference_lists: {opt_list: 20}``) recorded beside the sampled configs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.curves.store import PART_SETTINGS
from taskset_lab.errors import ConfigError
from taskset_lab.hparam_list.checks import store_parts
from taskset_lab.hparam_list.references import reference_store

log = logging.getLogger(__name__)

# config field <- manifest key: the part settings a store records, where the collection spec reads them
MANIFEST_FIELDS = {CollectionSpec.CONFIG_KEYS[name]: name for name in PART_SETTINGS}


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


def _store_tasks(cfg: DictConfig, store: Path, manifest: dict[str, Any]) -> None:
    """A complete store is learned from as it is (its parts are not collected again: the
    pipeline asks :func:`store_is_complete`); an incomplete one is completed only with the
    task set it was collected for."""
    from taskset_lab.pipelines.curves import task_specs

    parts = store_parts(store, manifest)
    if parts is None or parts[0] == parts[1] or not OmegaConf.select(cfg, "collect_if_missing", default=False):
        return
    names = {t["name"] for t in manifest["tasks"]}
    asked = {spec.name for spec in task_specs(cfg)}
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


def reference_lists(cfg: Any) -> dict[str, int]:
    """``{list name: number of entries}`` from ``hparam_list.reference_lists`` (empty if unset)."""
    from omegaconf import OmegaConf

    from taskset_lab.optim.search_space import search_space_problem

    raw = OmegaConf.select(cfg, "hparam_list.reference_lists", default=None) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("hparam_list.reference_lists", f"must map list names to sizes, got {raw!r}")
    out: dict[str, int] = {}
    for name, size in raw.items():
        field = f"hparam_list.reference_lists.{name}"
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(field, f"must be a positive integer, got {size!r}")
        problem = search_space_problem(str(name), int(size))
        if problem:
            raise ConfigError(field, problem)
        out[str(name)] = int(size)
    return out


def collect_reference_lists(cfg: Any, store: str | Path, tasks: list[Any] | None = None) -> list[dict[str, Any]]:
    """Collect the first N entries of every reference list (finished parts are skipped) on
    ``tasks`` (default: the store's own tasks from its manifest, else ``cfg.task_set``)."""
    from taskset_lab.curves.collect import collect_curves
    from taskset_lab.pipelines.curves import collection_spec, task_specs

    lists = reference_lists(cfg)
    if not lists:
        return []
    from taskset_lab.curves.store import read_manifest
    from taskset_lab.hparam_list.checks import store_task_specs

    spec = collection_spec(cfg)
    tasks = tasks or store_task_specs(read_manifest(Path(store))) or task_specs(cfg)
    summaries = []
    from taskset_lab.hparam_list.references import collection_ids

    for name, size in lists.items():
        if collection_ids(name, size, spec.optimizer, spec.config_seed_offset, spec.num_configs) is not None:
            log.info("reference list %s: its first %d entries are configs of this collection; their curves are "
                     "read from it", name, size)
            continue
        ref = dataclasses.replace(spec, optimizer=name, num_configs=size, config_seed_offset=0)
        log.info("reference list %s: %d entries x %d tasks -> %s", name, size, len(tasks),
                 reference_store(store, name))
        summaries.append(collect_curves(ref, tasks, reference_store(store, name)))
    return summaries
