"""Task families by name: each is a sampler (``seed -> config``) and a builder (``config -> Task``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from taskset_lab.tasks.base import Task

Sampler = Callable[[int], dict[str, Any]]
Builder = Callable[..., Task]


@dataclass(frozen=True)
class TaskFamily:
    name: str
    sample: Sampler  # seed -> JSON-serializable config with "family": name
    build: Builder  # (config, data_dir=None, download=False) -> Task


_FAMILIES: dict[str, TaskFamily] = {}


def register_family(name: str, sample: Sampler, build: Builder) -> None:
    _FAMILIES[name] = TaskFamily(name, sample, build)


def _ensure_loaded() -> None:
    # Importing the family modules registers them.
    from taskset_lab.tasks import families  # noqa: F401


def family_names() -> list[str]:
    _ensure_loaded()
    return sorted(_FAMILIES)


def get_family(name: str) -> TaskFamily:
    _ensure_loaded()
    if name not in _FAMILIES:
        raise KeyError(f"unknown task family '{name}'; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def plain(node: Any) -> Any:
    """A plain Python container from an OmegaConf node (or the value itself)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def sample_task_config(family: str, seed: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config of task ``seed`` of ``family`` (JSON round-trip safe), with ``overrides`` applied."""
    config = get_family(family).sample(int(seed))
    config = json.loads(json.dumps(config))
    if overrides:
        config.update(json.loads(json.dumps(plain(overrides))))
    config["family"] = family
    return config


def build_task(config: dict[str, Any], data_dir: str | None = None, download: bool = False) -> Task:
    """Build a Task from its full config (``config["family"]`` picks the builder)."""
    config = json.loads(json.dumps(plain(config)))
    if "family" not in config:
        raise KeyError("task config has no 'family' field")
    return get_family(config["family"]).build(config, data_dir=data_dir, download=download)


def sample_task(family: str, seed: int, overrides: dict[str, Any] | None = None,
                data_dir: str | None = None, download: bool = False) -> Task:
    return build_task(sample_task_config(family, seed, overrides), data_dir=data_dir, download=download)
