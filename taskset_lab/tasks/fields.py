"""Typed, validated task-family configs (docs/design.md §Family configs).

A family declares its config keys as :class:`Field` s: a type, an allowed range or set of
choices, whether the key may be absent. :func:`validate_config` checks a whole config and
:func:`check_override_keys` the keys of an override, before anything is trained, so a bad
value fails in the first second of a CURVES run with one line naming the family, the key,
the value and what is allowed — not hours in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from taskset_lab.errors import ConfigError

#: keys every task config may carry besides the family's own
COMMON_KEYS = ("family",)


@dataclass(frozen=True)
class Field:
    """One config key: ``kind`` is ``int``, ``float``, ``bool``, ``str``, ``list``, ``dict`` or
    ``any``; ``low``/``high`` bound numbers (and every number of a list), ``choices`` lists the
    allowed values, ``items`` the kind of a list's items, ``check`` is an extra predicate with
    its description ``allowed``; ``optional`` keys may be absent or null."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: Sequence[Any] | None = None
    items: str | None = None
    optional: bool = False
    check: Callable[[Any], bool] | None = None
    allowed: str = ""

    def describe(self) -> str:
        if self.allowed:
            return self.allowed
        if self.choices is not None:
            return "one of " + ", ".join(map(repr, self.choices))
        what = f"a list of {self.items}" if self.kind == "list" and self.items else f"a {self.kind}"
        if self.low is not None and self.high is not None:
            what += f" in [{self.low}, {self.high}]"
        elif self.low is not None:
            what += f" >= {self.low}"
        elif self.high is not None:
            what += f" <= {self.high}"
        return what + (" (or null)" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.choices is not None:
            if value not in self.choices:
                return False
        elif not _is_kind(value, self.kind):
            return False
        if self.kind == "list":
            if self.items and not all(_is_kind(v, self.items) for v in value):
                return False
            if not all(self._in_range(v) for v in value if _is_kind(v, "float")):
                return False
        elif _is_kind(value, "float") and not self._in_range(value):
            return False
        return self.check is None or bool(self.check(value))

    def _in_range(self, v: float) -> bool:
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "list": list, "dict": dict}[kind])


class FieldedFamily(Protocol):
    """What the checks read of a task family (:class:`taskset_lab.tasks.registry.TaskFamily`)."""

    name: str
    fields: Mapping[str, Field]


def _bad(family: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"task.{key}", f"family {family}: {problem}")


def check_override_keys(family: FieldedFamily, overrides: Mapping[str, Any]) -> None:
    """Refuse override keys the family does not have (a typo would change the task's name
    but not the task)."""
    if not family.fields:
        return
    for key in overrides:
        if key not in family.fields and key not in COMMON_KEYS:
            raise _bad(family.name, key, f"unknown key {key!r}; the family's keys are "
                                         f"{', '.join(sorted(family.fields))}")


def validate_config(family: FieldedFamily, config: Mapping[str, Any]) -> None:
    """Check every key of ``config`` against the family's fields (no-op for families that
    declare none)."""
    if not family.fields:
        return
    check_override_keys(family, config)
    for key, spec in family.fields.items():
        if key not in config:
            if spec.optional:
                continue
            raise _bad(family.name, key, f"missing key {key!r} ({spec.describe()})")
        value = config[key]
        if not spec.accepts(value):
            raise _bad(family.name, key, f"{key}={value!r} is not allowed; expected {spec.describe()}")
