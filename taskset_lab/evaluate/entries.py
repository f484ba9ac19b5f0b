"""What the EVALUATE pipeline scores: its ``optimizers`` entries, as plain typed values.

Each entry is one optimizer to score, in one of four forms (the keys say which):

* ``{_target_: torch.optim.SGD, lr: 0.1, momentum: 0.9}``: any ``torch.optim.Optimizer``
  class by import path (third-party classes included) with fixed hyperparameters; trained one
  config at a time (``engine.train_single``), one job per (task, seed). A learned optimizer
  is one of these: ``{_target_: taskset_lab.optim.LearnedOptimizer, checkpoint: <name>}``.
* ``{family: nadamw, hparams: {...}}`` (or ``hparams: [{...}, ...]``, k configs picked by
  the select split): configs of a TaskSet optimizer family, on the population engine.
* ``{list: opt_list, k: 10}``: a list's first k entries (a built-in list or a
  ``hparam_list.json``), the best by the select split reported: "opt_list@10".
* ``{search_space: nadamw, trials: 20, studies: 3}``: external tuning (AlgoPerf): each study
  tries ``trials`` configs of the family's sampler (study s takes configs
  ``[s·trials, (s+1)·trials)``, drawn at seeds ``seed_offset + id``), picks by the select
  split and reports on the test split; the median over studies is reported.
* ``{learn_list: nadamw, configs: 32, k: 10}``: a list learned here, TaskSet's way, on the
  task split's ``train`` tasks (``configs`` configs of the family, the greedy list of
  HPARAM_LIST on their normalized losses), then scored as its first k entries on the reported
  tasks: a learned list evaluated on tasks it never saw.

The population forms are *search spaces* in the curve store's sense (a family, or a list of
configs), so their curves are collected by :func:`taskset_lab.curves.collect.collect_curves`
with all its guarantees (atomic parts, resume, claims).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch

from taskset_lab.errors import ConfigError, ConfigProblems

#: the entry forms, by the key that selects them
TORCH, CONFIGS, LIST, TUNING, LEARNED = "torch", "configs", "list", "tuning", "learned"
_FORM_KEYS = {"_target_": TORCH, "family": CONFIGS, "list": LIST, "search_space": TUNING, "learn_list": LEARNED}
_ALLOWED = {TORCH: None,  # any keyword argument of the class
            CONFIGS: {"family", "hparams"},
            LIST: {"list", "k"},
            TUNING: {"search_space", "trials", "studies", "seed_offset"},
            LEARNED: {"learn_list", "configs", "k"}}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")


@dataclass(frozen=True)
class Entry:
    """One optimizer to score. ``form`` is one of ``torch``, ``configs``, ``list``, ``tuning``.

    ``trials`` configs make one study (``studies`` of them for tuning); the select split
    picks one config per study, task and seed.
    """

    name: str
    form: str
    target: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    family: str | None = None
    hparams: tuple[Mapping[str, Any], ...] = ()
    space: str | None = None
    trials: int = 1
    studies: int = 1
    seed_offset: int = 0
    configs: int = 0  # a learned list: configs of ``space`` it is learned from

    @property
    def num_configs(self) -> int:
        """Configs trained per (task, seed): every trial of every study."""
        return self.trials * self.studies

    @property
    def on_population(self) -> bool:
        return self.form != TORCH

    def factory(self) -> Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]:
        """``params -> optimizer`` for a ``torch`` entry."""
        cls, kwargs = optimizer_class(self.target or "", f"optimizers.{self.name}._target_"), dict(self.kwargs)
        return lambda params: cls(params, **kwargs)

    def label(self) -> str:
        """The store label of a ``torch`` entry: its name and 8 hex digits of its config, so a
        changed hyperparameter never reuses another config's curves."""
        digest = hashlib.sha256(json.dumps({"target": self.target, "kwargs": dict(self.kwargs)}, sort_keys=True,
                                           default=str).encode()).hexdigest()[:8]
        return f"{self.name.replace('__', '_')}-{digest}"


def optimizer_class(target: str, where: str) -> type:
    """The class an import path names; :class:`ConfigError` (naming ``where``) when it cannot
    be imported or is not a ``torch.optim.Optimizer``."""
    module_name, _, attr = str(target).rpartition(".")
    if not module_name:
        raise ConfigError(where, f"{target!r} is not an import path such as torch.optim.Adam")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(where, f"cannot import {target!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(where, f"{target!r} is not a torch.optim.Optimizer class")
    return cls


def _positive(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(where, f"must be a positive integer, got {value!r}")
    return value


def parse_entry(name: str, raw: Any) -> Entry:
    """One entry from its plain config (see the module docstring); :class:`ConfigError`
    naming ``optimizers.<name>.<key>`` for a bad form, key or value."""
    where = f"optimizers.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(where, "an entry name must be letters, digits and _.@+- (it names files and table rows)")
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"must be a mapping with one of {sorted(_FORM_KEYS)}, got {raw!r}")
    raw = {k: v for k, v in raw.items() if k not in ("name", "_partial_")}
    forms = sorted({_FORM_KEYS[k] for k in raw if k in _FORM_KEYS})
    if len(forms) != 1:
        raise ConfigError(where, f"must have exactly one of {sorted(_FORM_KEYS)} (a torch.optim class, a family's "
                                 f"configs, a list's first k entries, a search space to tune), got keys {sorted(raw)}")
    form = forms[0]
    allowed = _ALLOWED[form]
    if allowed is not None:
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", f"unknown key for a {form} entry; allowed: {sorted(allowed)}")
    if form == TORCH:
        target = raw["_target_"]
        kwargs = {k: v for k, v in raw.items() if k != "_target_"}
        entry = Entry(name, TORCH, target=str(target), kwargs=kwargs)
        _check_torch(entry, where)
        return entry
    if form == CONFIGS:
        from taskset_lab.optim.registry import get_optimizer_family, optimizer_family_names

        family = raw["family"]
        if family not in optimizer_family_names():
            raise ConfigError(f"{where}.family", f"unknown optimizer family {family!r}; known: "
                                                 f"{', '.join(optimizer_family_names())}")
        hps = raw.get("hparams", {})
        configs = [hps] if isinstance(hps, Mapping) else list(hps) if isinstance(hps, (list, tuple)) else None
        if not configs or not all(isinstance(c, Mapping) for c in configs):
            raise ConfigError(f"{where}.hparams", f"must be a mapping of hyperparameters or a list of them, got {hps!r}")
        fam = get_optimizer_family(family)
        checked = []
        for i, hp in enumerate(configs):
            try:
                checked.append(fam.validate(dict(hp)))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{where}.hparams" + (f"[{i}]" if len(configs) > 1 else ""), str(exc)) from None
        return Entry(name, CONFIGS, family=family, hparams=tuple(checked), trials=len(checked))
    if form == LIST:
        from taskset_lab.optim.search_space import search_space_problem

        k = _positive(f"{where}.k", raw.get("k", 1))
        problem = search_space_problem(str(raw["list"]), k)
        if problem:
            raise ConfigError(f"{where}.list", problem)
        return Entry(name, LIST, space=str(raw["list"]), trials=k)
    space = _family_name(f"{where}.{'learn_list' if form == LEARNED else 'search_space'}",
                         raw["learn_list" if form == LEARNED else "search_space"])
    if form == LEARNED:
        values = _positive_fields(where, raw, {"configs": 32, "k": 1})
        if values["k"] > values["configs"]:
            raise ConfigError(f"{where}.k", f"({values['k']}) is more than the {values['configs']} configs "
                                            "the list is learned from")
        return Entry(name, LEARNED, space=space, trials=values["k"], configs=values["configs"])
    problems = ConfigProblems()
    values = {}
    with problems:
        values = _positive_fields(where, raw, {"trials": None, "studies": 1})
    with problems:
        offset = raw.get("seed_offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigError(f"{where}.seed_offset", f"must be an integer >= 0, got {offset!r}")
    problems.raise_all()
    return Entry(name, TUNING, space=space, trials=values["trials"], studies=values["studies"],
                 seed_offset=int(offset))


def _family_name(where: str, value: Any) -> str:
    """``value`` as the name of an optimizer family whose sampler draws configs."""
    from taskset_lab.optim.registry import optimizer_family_names

    if value not in optimizer_family_names():
        raise ConfigError(where, f"must be an optimizer family to draw configs from "
                                 f"({', '.join(optimizer_family_names())}), got {value!r}")
    return str(value)


def _positive_fields(where: str, raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, int]:
    """Each key of ``defaults`` read from ``raw`` as a positive integer (all problems at once)."""
    problems, values = ConfigProblems(), {}
    for key, default in defaults.items():
        with problems:
            values[key] = _positive(f"{where}.{key}", raw.get(key, default))
    problems.raise_all()
    return values


def _check_torch(entry: Entry, where: str) -> None:
    """Build the optimizer once on a dummy parameter, so bad hyperparameters are reported
    before any training."""
    factory = entry.factory()
    try:
        factory([torch.nn.Parameter(torch.zeros(2))])
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a third-party class may raise anything on bad arguments
        raise ConfigError(where, f"{entry.target}(params, **{dict(entry.kwargs)}) fails: "
                                 f"{type(exc).__name__}: {exc}") from None


def parse_entries(raw: Any) -> list[Entry]:
    """Every entry of ``optimizers`` (a mapping name -> entry, or a list of entries each with
    a ``name``); all problems reported at once."""
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, (list, tuple)):
        items = []
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise ConfigError(f"optimizers[{i}]", "a list entry needs a 'name'")
            items.append((item["name"], item))
    else:
        raise ConfigError("optimizers", f"must be a mapping of name -> entry (or a list of named entries), got {raw!r}")
    if not items:
        raise ConfigError("optimizers", "is empty: name at least one optimizer to score")
    problems, entries = ConfigProblems(), []
    for name, item in items:
        with problems:
            entries.append(parse_entry(name, item))
    with problems:
        names = [n for n, _ in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError("optimizers", f"names must be unique; repeated: {', '.join(dupes)}")
    problems.raise_all()
    return entries
