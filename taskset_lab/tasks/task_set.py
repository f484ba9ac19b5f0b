"""Task sets: which tasks a CURVES/HPARAM_LIST run covers.

A task set config has two optional lists::

    families:            # sampled tasks: seeds [start, stop) of a family, optional overrides
      - {family: mlp, seeds: [0, 8], overrides: {dataset: digits}}
    fixed:               # full task configs, used as they are
      - {family: quadratic, dim: 10, ...}

The result is a list of full task configs in a stable order, without duplicates.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.registry import family_names, plain, sample_task_config


def resolve_task_set(task_set: Mapping[str, Any], field: str = "task_set") -> list[dict[str, Any]]:
    """Expand a task set config into full task configs (raises ConfigError naming the field)."""
    task_set = json.loads(json.dumps(plain(task_set)))
    unknown = set(task_set) - {"families", "fixed", "name"}
    if unknown:
        raise ConfigError(field, f"unknown keys {sorted(unknown)}; expected 'families' and/or 'fixed'")
    configs: list[dict[str, Any]] = []
    for i, entry in enumerate(task_set.get("families") or []):
        where = f"{field}.families[{i}]"
        family = entry.get("family")
        if family not in family_names():
            raise ConfigError(f"{where}.family", f"unknown family {family!r}; known: {', '.join(family_names())}")
        seeds = entry.get("seeds")
        if not (isinstance(seeds, list) and len(seeds) == 2 and all(isinstance(s, int) for s in seeds)
                and 0 <= seeds[0] < seeds[1]):
            raise ConfigError(f"{where}.seeds", f"must be [start, stop) with 0 <= start < stop, got {seeds!r}")
        for seed in range(seeds[0], seeds[1]):
            configs.append(sample_task_config(family, seed, entry.get("overrides")))
    for i, config in enumerate(task_set.get("fixed") or []):
        if not isinstance(config, dict) or config.get("family") not in family_names():
            raise ConfigError(f"{field}.fixed[{i}]", "must be a full task config with a known 'family'")
        configs.append(config)
    if not configs:
        raise ConfigError(field, "selects no tasks")
    return _dedupe(configs)


def _dedupe(configs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for c in configs:
        key = json.dumps(c, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
