"""Search spaces: the configs a curve collection trains, by config id.

Two kinds, both named by one string (``search_space.family`` in the configs):

* a **family** (``"nadamw"``, ``"adam8p"``, …): config ``i`` is the family's draw at seed
  ``seed_offset + i`` (TaskSet's samplers, see :mod:`taskset_lab.optim.released`);
* a **list** (a built-in list such as ``"opt_list"``, or a ``hparam_list.json`` path):
  config ``i`` is the list's entry ``i``, so the first N configs are the list's first N
  entries (``search_space=list search_space.list=opt_list search_space.size=N``).

The space's ``name`` labels its curves in a store: the family name, the built-in list's
name, or ``list-<file stem>-<8 hex digits of its content>`` for a list file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskset_lab.optim.base import HParams, OptimizerFamily
from taskset_lab.optim.sampling import check_range, log_uniform  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class SearchSpace:
    """Configs by id. ``size`` is how many there are (``None``: unbounded)."""

    name: str
    family: OptimizerFamily
    size: int | None = None
    seed_offset: int = 0
    entries: tuple[dict[str, Any], ...] | None = None

    @property
    def is_list(self) -> bool:
        return self.entries is not None

    def _check(self, config_id: int) -> int:
        i = int(config_id)
        if i < 0 or (self.size is not None and i >= self.size):
            raise IndexError(f"search space {self.name} has {self.size} configs; config id {i} is out of range")
        return i

    def hparams(self, config_id: int) -> HParams:
        """The hparams of config ``config_id`` (our names)."""
        i = self._check(config_id)
        if self.entries is not None:
            return dict(self.entries[i]["hparams"])
        return self.family.sample(self.seed_offset + i)

    def config_seed(self, config_id: int) -> int:
        """The sampler seed of a family config; for a list, the entry's ``config_id`` in its
        source space (opt_list: the N of ``nadamw_grid_seed<N>``), or -1 when unknown."""
        i = self._check(config_id)
        if self.entries is not None:
            cid = self.entries[i].get("config_id")
            return int(cid) if isinstance(cid, int) else -1
        return self.seed_offset + i


def list_space_label(source: str | Path) -> str:
    """The store label of a list: its built-in name, or ``list-<stem>-<content hash>``."""
    from taskset_lab.optim.hparam_list import BUILTIN_LISTS

    if str(source) in BUILTIN_LISTS:
        return str(source)
    path = Path(source)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).replace("__", "_") or "list"
    return f"list-{stem}-{digest}"


def resolve_search_space(name: str | Path, seed_offset: int = 0) -> SearchSpace:
    """The search space a family name, a built-in list name or a list file names.

    Raises ``KeyError`` for a name that is none of these, :class:`~taskset_lab.errors.DataError`
    for an unreadable list file.
    """
    from taskset_lab.optim.hparam_list import BUILTIN_LISTS, builtin_list_names, load_hparam_list
    from taskset_lab.optim.registry import optimizer_family_names, get_optimizer_family

    key = str(name)
    if key in optimizer_family_names():
        return SearchSpace(key, get_optimizer_family(key), None, int(seed_offset))
    if key in BUILTIN_LISTS or key.endswith(".json") or Path(key).is_file():
        data = load_hparam_list(key)
        family = get_optimizer_family(str(data["optimizer"]))
        entries = tuple(dict(e) for e in data["entries"])
        return SearchSpace(list_space_label(key), family, len(entries), 0, entries)
    raise KeyError(f"unknown search space {key!r}: not an optimizer family ({', '.join(optimizer_family_names())}), "
                   f"a built-in list ({', '.join(builtin_list_names())}) or a hparam_list.json file")


def search_space_problem(name: str, num_configs: int | None = None) -> str | None:
    """Why ``name`` (with ``num_configs`` configs) is not a usable search space, or None."""
    from taskset_lab.errors import DataError

    try:
        space = resolve_search_space(name)
    except (KeyError, DataError) as exc:
        return str(exc.args[0]) if exc.args else str(exc)
    if num_configs is not None and space.size is not None and int(num_configs) > space.size:
        return f"list {name} has {space.size} entries; {num_configs} configs asked for"
    return None
