"""Task sets: which tasks a CURVES/HPARAM_LIST run covers (docs/design.md §Task sets).

A task set config has two optional lists::

    families:            # sampled tasks: seeds [start, stop) of a family, optional overrides
      - {family: mlp_family, seeds: [0, 8]}
      - {family: quadratic_family, seeds: [0, 4], overrides: {...}}
    fixed:               # task names or glob patterns (fixed tasks, or `<family>_seed<N>`),
      - TwoD_*           # or full task configs (dicts with a `family`), used as they are
      - Copy_LSTM128_BS128_Length5_Tokens10

The result is a list of :class:`TaskSpec` (name, family, config) in a stable order without
duplicates. Every sampled config and override is validated against its family's typed
fields here, before anything is trained.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from taskset_lab.errors import ConfigError, TasklabError
from taskset_lab.tasks.base import Task, task_name
from taskset_lab.tasks.registry import (
    FIXED_TASKS,
    as_json,
    build_fixed_task,
    build_task,
    task_family_names,
    fixed_task_names,
    get_task_family,
    parse_sampled_name,
    sample_task_config,
    sampled_name,
)


@dataclass(frozen=True)
class TaskSpec:
    """One task of a task set: its ``name``, its ``family`` (a fixed task's kind) and its full
    ``config`` (``None`` for fixed tasks, which are built by name)."""

    name: str
    family: str
    config: dict[str, Any] | None = None

    @property
    def fixed(self) -> bool:
        return self.config is None

    def build(self, data_dir: str | None = None, download: bool = False, offline_data: str = "error") -> Task:
        if self.config is None:
            return build_fixed_task(self.name, data_dir=data_dir, download=download, offline_data=offline_data)
        return build_task(self.config, data_dir=data_dir, download=download, name=self.name,
                          offline_data=offline_data)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "config": self.config}


def resolve_task_set(task_set: Mapping[str, Any], field: str = "task_set") -> list[TaskSpec]:
    """Expand a task set config into task specs (raises ConfigError naming the field)."""
    from taskset_lab.tasks.fields import validate_config

    task_set = as_json(task_set)
    if not isinstance(task_set, dict):
        raise ConfigError(field, f"must be a mapping with 'families' and/or 'fixed', got {task_set!r}")
    unknown = set(task_set) - {"families", "fixed", "name"}
    if unknown:
        raise ConfigError(field, f"unknown keys {sorted(unknown)}; expected 'families' and/or 'fixed'")
    specs: list[TaskSpec] = []
    for i, entry in enumerate(task_set.get("families") or []):
        where = f"{field}.families[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, f"must be {{family, seeds: [start, stop), overrides}}, got {entry!r}")
        extra = set(entry) - {"family", "seeds", "overrides"}
        if extra:
            raise ConfigError(where, f"unknown keys {sorted(extra)}; expected family, seeds, overrides")
        family = entry.get("family")
        if family not in task_family_names():
            raise ConfigError(f"{where}.family", f"unknown family {family!r}; known: {', '.join(task_family_names())}")
        seeds = entry.get("seeds")
        if not (isinstance(seeds, list) and len(seeds) == 2 and all(isinstance(s, int) for s in seeds)
                and 0 <= seeds[0] < seeds[1]):
            raise ConfigError(f"{where}.seeds", f"must be [start, stop) with 0 <= start < stop, got {seeds!r}")
        overrides = entry.get("overrides")
        for seed in range(seeds[0], seeds[1]):
            config = _checked(lambda: sample_task_config(family, seed, overrides), f"{where}.overrides")
            _checked(lambda: validate_config(get_task_family(family), config), f"{where}.overrides")
            specs.append(TaskSpec(sampled_name(family, seed, overrides), family, config))
    for i, item in enumerate(task_set.get("fixed") or []):
        specs += _fixed_entry(item, f"{field}.fixed[{i}]")
    if not specs:
        raise ConfigError(field, "selects no tasks")
    return _dedupe(specs)


def _checked(fn: Any, where: str) -> Any:
    try:
        return fn()
    except ConfigError as exc:
        key = exc.field[len("task."):] if exc.field.startswith("task.") else exc.field
        raise ConfigError(f"{where}.{key}", exc.problem) from None


def _fixed_entry(item: Any, where: str) -> list[TaskSpec]:
    from taskset_lab.tasks.fields import validate_config

    if isinstance(item, dict):
        family = item.get("family")
        if family not in task_family_names():
            raise ConfigError(where, f"a task config needs a known 'family' (got {family!r}); "
                                     f"known: {', '.join(task_family_names())}")
        _checked(lambda: validate_config(get_task_family(family), item), where)
        return [TaskSpec(task_name(item), family, item)]
    if not isinstance(item, str) or not item:
        raise ConfigError(where, f"must be a task name, a glob pattern or a task config, got {item!r}")
    if any(c in item for c in "*?["):
        names = fixed_task_names(item)
        if not names:
            raise ConfigError(where, f"pattern {item!r} matches no fixed task")
        return [TaskSpec(n, FIXED_TASKS.get(n).kind) for n in names]
    if item in FIXED_TASKS:
        return [TaskSpec(item, FIXED_TASKS.get(item).kind)]
    parsed = parse_sampled_name(item)
    if parsed is not None:
        return [TaskSpec(item, parsed[0], sample_task_config(*parsed))]
    close = fnmatch.filter(fixed_task_names(), f"*{item[:6]}*")[:5]
    raise ConfigError(where, f"unknown task {item!r}: not a fixed task nor <family>_seed<N> of a known family"
                             + (f" (close: {', '.join(close)})" if close else ""))


def _dedupe(specs: Iterable[TaskSpec]) -> list[TaskSpec]:
    seen: set[str] = set()
    out = []
    for spec in specs:
        if spec.name not in seen:
            seen.add(spec.name)
            out.append(spec)
    return out


__all__ = ["TaskSpec", "TasklabError", "resolve_task_set"]
