"""One registry style for everything found by name: pipelines, task families, fixed tasks,
optimizer families (docs/design.md §Registries).

A :class:`Registry` maps names to objects, refuses a second registration under a taken
name (two modules silently shadowing each other is how two different tasks end up with
one name), and raises :class:`UnknownNameError` listing the known names on a miss.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

from taskset_lab.errors import TasklabError

T = TypeVar("T")


class UnknownNameError(TasklabError, KeyError):
    """A name that is not registered; the message lists the known ones (one line)."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        shown = ", ".join(known[:40]) + (f", … ({len(known)} in all)" if len(known) > 40 else "")
        TasklabError.__init__(self, f"unknown {kind} {name!r}; known: {shown}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(TasklabError):
    """A second registration under a name that is already taken."""


class Registry(Generic[T]):
    """Named objects of one ``kind`` (``"task family"``, ``"fixed task"``, ...).

    ``loader`` (optional) is called once before the first lookup; it imports the modules
    whose decorators fill the registry, so lookups work without importing them by hand.
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._loader is not None
            self._loader()

    def register(self, name: str, obj: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items and self._items[name] is not obj:
            raise DuplicateNameError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""
        return lambda obj: self.register(name, obj)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, str(name), self.names()) from None

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally only those matching a glob ``pattern``."""
        self._load()
        names = sorted(self._items)
        return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)
