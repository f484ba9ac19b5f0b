"""Task families and fixed tasks by name (docs/design.md §Registries, §Names).

* A **task family** is a sampler (``seed -> config``), a builder (``config -> Task``) and the
  typed fields its configs may hold (:mod:`taskset_lab.tasks.fields`). Task ``seed`` of
  family ``f`` is named ``<f>_seed<seed>`` (TaskSet's convention).
* A **fixed task** is a hand-designed task registered under its own name with
  ``@fixed_task("TwoD_Bowl1", kind="TwoD")`` on a builder
  ``(data_dir=None, download=False, offline_data="error") -> Task``.

Both registries refuse duplicate names; a lookup miss raises
:class:`~taskset_lab.registry.UnknownNameError` listing the known names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, TypeVar

from taskset_lab.errors import TasklabError
from taskset_lab.registry import Registry, UnknownNameError
from taskset_lab.tasks.base import Task

Sampler = Callable[[int], dict[str, Any]]
Builder = Callable[..., Task]


@dataclass(frozen=True)
class TaskFamily:
    name: str
    sample: Sampler  # seed -> JSON-serializable config with "family": name
    build: Builder  # (config, data_dir=None, download=False) -> Task
    fields: Mapping[str, Any] = field(default_factory=dict)  # key -> fields.Field (validation)
    derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # recompute derived keys
    #: TaskSet's released sampler of this family (seed -> the entry TaskSet published for
    #: ``<name>_seed<seed>``), when the family is one of TaskSet's; usually ``sample`` itself
    released: Sampler | None = None


@dataclass(frozen=True)
class FixedTask:
    name: str
    kind: str  # the group the task belongs to ("TwoD", "FixedMLP", ...): its curve-store family
    build: Callable[..., Task]  # (data_dir=None, download=False) -> Task


def _load_families() -> None:
    from taskset_lab.tasks import families  # noqa: F401  (importing registers them)


def _load_fixed() -> None:
    from taskset_lab.tasks import fixed  # noqa: F401


TASK_FAMILIES: Registry[TaskFamily] = Registry("task family", _load_families)
FIXED_TASKS: Registry[FixedTask] = Registry("fixed task", _load_fixed)


def register_task_family(name: str, sample: Sampler, build: Builder, fields: Mapping[str, Any] | None = None,
                         derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                         released: Sampler | None = None) -> TaskFamily:
    """Register a task family (duplicates refused). ``released`` is TaskSet's sampler for a
    family TaskSet released configs of (``released_task_config`` and the reference tests
    use it); ``sample`` may reshape its output (``losg_tasks_family`` does)."""
    return TASK_FAMILIES.register(name, TaskFamily(name, sample, build, dict(fields or {}), derive, released))


def released_samplers() -> dict[str, Sampler]:
    """``{family: TaskSet's released sampler}`` of every registered family that has one."""
    return {name: fam.released for name in TASK_FAMILIES.names()
            if (fam := TASK_FAMILIES.get(name)).released is not None}


def fixed_task(name: str, kind: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator registering a fixed-task builder under ``name`` (duplicates refused)."""

    def register(build: Callable[..., Task]) -> Callable[..., Task]:
        FIXED_TASKS.register(name, FixedTask(name, kind, build))
        return build

    return register


SpecT = TypeVar("SpecT")


def register_fixed_tasks(specs: Iterable[SpecT], build: Callable[..., Task],
                         kind: str | Callable[[SpecT], str]) -> dict[str, SpecT]:
    """Register one fixed task per spec of a table and return the table ``{spec.name: spec}``.

    ``build(spec, data_dir=None, download=False, offline_data="error") -> Task`` builds a
    spec's task; ``kind`` is the kind of every spec, or a function of the spec. A new fixed
    task of an existing kind is one more spec in its module's table."""
    table: dict[str, SpecT] = {}
    for spec in specs:
        name = getattr(spec, "name")
        FIXED_TASKS.register(name, FixedTask(name, kind(spec) if callable(kind) else kind,
                                             functools.partial(build, spec)))
        table[name] = spec
    return table


def task_family_names() -> list[str]:
    return TASK_FAMILIES.names()


def get_task_family(name: str) -> TaskFamily:
    return TASK_FAMILIES.get(name)


def fixed_task_names(pattern: str | None = None) -> list[str]:
    return FIXED_TASKS.names(pattern)


def as_json(value: Any) -> Any:
    """``value`` through a JSON round trip (tuples become lists, keys strings): task configs
    are plain Python values; a config node is converted by the caller (the pipelines do)."""
    try:
        return json.loads(json.dumps(value))
    except TypeError as exc:
        raise TypeError(f"a task config must hold plain values (dicts, lists, numbers, strings): {exc}") from None


def sampled_name(family: str, seed: int, overrides: Mapping[str, Any] | None = None) -> str:
    """``<family>_seed<seed>``; with overrides ``<family>_seed<seed>_<8 hex of the overrides>``."""
    name = f"{family}_seed{int(seed)}"
    if overrides:
        canonical = json.dumps(as_json(overrides), sort_keys=True, separators=(",", ":"))
        name += "_" + hashlib.sha1(canonical.encode()).hexdigest()[:8]
    return name


_SAMPLED = re.compile(r"^(?P<family>.+)_seed(?P<seed>\d+)$")


def parse_sampled_name(name: str) -> tuple[str, int] | None:
    """``(family, seed)`` of a name ``<family>_seed<N>`` whose family is registered, else None."""
    match = _SAMPLED.match(name)
    if match and match.group("family") in TASK_FAMILIES:
        return match.group("family"), int(match.group("seed"))
    return None


#: TaskSet seeds a family's sampler with ``numpy.random.RandomState(seed)``: seeds are uint32
MAX_TASK_SEED = 2**32 - 1


def check_task_seed(family: str, seed: Any) -> int:
    """``seed`` as an int in TaskSet's range ``[0, 2**32 - 1]``; a :class:`TasklabError` otherwise."""
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_TASK_SEED:
        raise TasklabError(f"task seed of {family} must be an integer in [0, {MAX_TASK_SEED}] "
                           f"(TaskSet's sampler seeds), got {seed!r}")
    return int(seed)


def sample_task_config(family: str, seed: int, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config of task ``seed`` of ``family`` (JSON round-trip safe), with ``overrides`` applied
    and checked against the family's fields; derived keys are recomputed."""
    fam = get_task_family(family)
    seed = check_task_seed(family, seed)
    try:
        config = as_json(fam.sample(seed))
    except ValueError as exc:  # numpy's RandomState(seed + the family's offset) beyond uint32
        if "Seed must be between" not in str(exc):
            raise
        raise TasklabError(f"task seed {seed} is out of range for {family}: TaskSet's sampler seeds numpy with "
                           f"the seed plus the family's offset, which must stay below 2**32") from None
    if overrides:
        from taskset_lab.tasks.fields import check_override_keys

        overrides = as_json(overrides)
        check_override_keys(fam, overrides)
        config.update(overrides)
        if fam.derive is not None:
            config = fam.derive(config)
    config["family"] = family
    return config


OFFLINE_DATA = ("error", "substitute")


def _finish(task: Task, name: str | None) -> Task:
    """Set the task's name; a task built on an offline stand-in says so in its name
    (``<name>_on_<stand-in>``), so its curves never mix with real ones."""
    if name is not None:
        task.name = name
    substitute = getattr(task, "data_substitute", None)
    if substitute:
        task.name = f"{task.name}_on_{substitute}"
    return task


def build_task(config: Mapping[str, Any], data_dir: str | None = None, download: bool = False,
               name: str | None = None, offline_data: str = "error") -> Task:
    """Build a Task from its full config (``config["family"]`` picks the builder), validated
    against the family's fields first. ``name`` overrides the default ``<family>_<hash>``.
    ``offline_data="substitute"`` lets a task whose dataset is absent run on an explicit
    stand-in (the builder sets ``task.data_substitute``; the name records it)."""
    from taskset_lab.tasks.fields import validate_config

    config = as_json(config)
    if not isinstance(config, dict) or "family" not in config:
        from taskset_lab.errors import ConfigError

        raise ConfigError("task.family", "a task config needs a 'family' field")
    if offline_data not in OFFLINE_DATA:
        from taskset_lab.errors import ConfigError

        raise ConfigError("misc.offline_data", f"must be one of {OFFLINE_DATA}, got {offline_data!r}")
    fam = get_task_family(config["family"])
    validate_config(fam, config)
    task = fam.build(config, data_dir=data_dir, download=download, offline_data=offline_data)
    return _finish(task, name)


def sample_task(family: str, seed: int, overrides: Mapping[str, Any] | None = None,
                data_dir: str | None = None, download: bool = False, offline_data: str = "error") -> Task:
    return build_task(sample_task_config(family, seed, overrides), data_dir=data_dir, download=download,
                      name=sampled_name(family, seed, overrides), offline_data=offline_data)


def build_fixed_task(name: str, data_dir: str | None = None, download: bool = False,
                     offline_data: str = "error") -> Task:
    """Build fixed task ``name``; its builder is called with ``data_dir``, ``download`` and
    ``offline_data`` (builders of tasks that generate their own data ignore them)."""
    entry = FIXED_TASKS.get(name)
    task = entry.build(data_dir=data_dir, download=download, offline_data=offline_data)
    task.family = entry.kind
    return _finish(task, name)


def get_task(name: str, data_dir: str | None = None, download: bool = False,
             offline_data: str = "error") -> Task:
    """The task called ``name``: a fixed task, or ``<family>_seed<N>`` of a registered family."""
    if not isinstance(name, str) or not name:
        raise TasklabError(f"a task name must be a non-empty string (a fixed task or <family>_seed<N>), got {name!r}; "
                           "task_names() lists them")
    if name in FIXED_TASKS:
        return build_fixed_task(name, data_dir=data_dir, download=download, offline_data=offline_data)
    parsed = parse_sampled_name(name)
    if parsed is not None:
        return sample_task(*parsed, data_dir=data_dir, download=download, offline_data=offline_data)
    if name in TASK_FAMILIES:
        raise TasklabError(f"'{name}' is a task family, not a task: its tasks are {name}_seed<N> "
                           f"(N in [0, {MAX_TASK_SEED}]); `tasklab pipeline=TASKS name={name}` describes the family")
    known = [f"{f}_seed<N>" for f in task_family_names()] + fixed_task_names()
    raise UnknownNameError("task", name, known)


def task_names(pattern: str = "*", seeds: range = range(0, 100)) -> list[str]:
    """Task names matching a glob: every fixed task, and ``<family>_seed<N>`` for N in ``seeds``."""
    import fnmatch

    sampled = [f"{f}_seed{s}" for f in task_family_names() for s in seeds]
    return [n for n in fixed_task_names() + sampled if fnmatch.fnmatchcase(n, pattern)]
