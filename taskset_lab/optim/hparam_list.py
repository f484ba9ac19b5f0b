"""Hparam lists: entry k as a ready optimizer, from a learned list file or a built-in list.

A list file (``hparam_list.json``, written by the HPARAM_LIST pipeline) holds at least::

    {"optimizer": "nadamw", "entries": [{"rank": 0, "config_id": 12, "hparams": {...}}, ...]}

Built-in lists ship with the package and are named instead of a path:

* ``opt_list``: opt_list's published NAdamW list (Metz et al. 2020, "Using a thousand
  optimization tasks to learn hyperparameter search strategies";
  google-research/google-research ``opt_list/``, Apache 2.0). The order is opt_list's
  ``nadamw_opt_list.txt`` (1000 names, shipped in ``taskset_lab/optim/data/``); the hparams
  of ``nadamw_grid_seed<N>`` are our nadamw sampler at seed N, which reproduces opt_list's
  ``nadamw_configs.json``. Entry k's ``config_id`` is N (the nadamw config id of a search
  space with ``seed_offset: 0``).
* ``taskset_lab_v1``: the list this project learned from TaskSet's 1000 ``nadamw_grid``
  configs on 100 TaskSet tasks x 300 steps on 2 CPU cores (``tasklab pipeline=HPARAM_LIST
  index=taskset_cpu``; README, "The headline"), shipped as HPARAM_LIST wrote it
  (``taskset_lab_v1.json``: entries, the collection's settings, tasks, command and held-out
  results). Entry k's ``config_id`` is its ``nadamw_grid`` seed.
* ``adam_lr_grid``: TaskSet's adam1p (TF Adam, only the learning rate free) at the learning
  rates of learned_optimization's ``AdamLR_*`` baselines (``baselines/hparam_sets.py``:
  1e-7, 3e-7, 1e-6, …, 0.3, 1), smallest first: the grid the EVALUATE pipeline tunes Adam on.
  Entry k's ``config_id`` is k.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import torch

from taskset_lab.errors import DataError
from taskset_lab.optim.base import FamilyOptimizer
from taskset_lab.optim.registry import optimizer_family_names, get_optimizer_family
from taskset_lab.optim.released import parse_released_name

#: built-in list name -> the data file holding its order of released config names, or the
#: name of a grid generated here (:data:`GRIDS`)
BUILTIN_LISTS = {"opt_list": "nadamw_opt_list.txt", "adam_lr_grid": "grid", "taskset_lab_v1": "taskset_lab_v1.json"}

#: learned_optimization's baseline learning rates (``AdamLR_10000_R5`` and its siblings)
LOPT_BASELINE_LRS: tuple[float, ...] = (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2,
                                        1e-1, 3e-1, 1.0)
#: generated built-in lists: name -> (optimizer family, hparams of each entry)
GRIDS: dict[str, tuple[str, tuple[dict[str, float], ...]]] = {
    "adam_lr_grid": ("adam1p", tuple({"lr": lr} for lr in LOPT_BASELINE_LRS)),
}


def builtin_list_names() -> list[str]:
    return sorted(BUILTIN_LISTS)


@lru_cache(maxsize=None)
def _builtin(name: str) -> dict[str, Any]:
    if name in GRIDS:
        family, grid = GRIDS[name]
        return {"optimizer": family, "name": name, "source": f"built-in grid {name}",
                "entries": [{"rank": k, "config_id": k, "hparams": dict(hp)} for k, hp in enumerate(grid)]}
    text = resources.files("taskset_lab.optim").joinpath("data", BUILTIN_LISTS[name]).read_text()
    if BUILTIN_LISTS[name].endswith(".json"):  # a list learned here, shipped as HPARAM_LIST wrote it
        data = _checked_list(json.loads(text), f"built-in list {name}")
        data.update(name=name, source=f"built-in list {name} ({BUILTIN_LISTS[name]})")
        return data
    names = [line.strip() for line in text.splitlines() if line.strip()]
    entries, optimizer = [], None
    for rank, config_name in enumerate(names):
        family, seed = parse_released_name(config_name)
        if optimizer not in (None, family.name):
            raise DataError(f"built-in list {name} mixes optimizer families {optimizer} and {family.name}")
        optimizer = family.name
        entries.append({"rank": rank, "config_id": seed, "name": config_name, "hparams": family.sample(seed)})
    return {"optimizer": optimizer, "name": name, "source": f"built-in list {name} ({BUILTIN_LISTS[name]})",
            "entries": entries}


def load_hparam_list(source: str | Path) -> dict[str, Any]:
    """A built-in list by name, or a list file, as a dict checked for its required keys.

    Raises :class:`DataError` for a missing or malformed file.
    """
    if str(source) in BUILTIN_LISTS:
        return copy.deepcopy(_builtin(str(source)))
    path = Path(source)
    if not path.is_file():
        raise DataError(f"hparam list {path} is neither a built-in list ({', '.join(builtin_list_names())}) "
                        "nor a file (run `tasklab pipeline=HPARAM_LIST ...` to learn one)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"hparam list {path} is not readable JSON: {exc}") from None
    return _checked_list(data, f"hparam list {path}")


def _checked_list(data: Any, what: str) -> dict[str, Any]:
    """A parsed list file with its required keys checked (DataError naming ``what``)."""
    if not isinstance(data, dict) or "optimizer" not in data or not isinstance(data.get("entries"), list):
        raise DataError(f"{what} needs an 'optimizer' name and an 'entries' list")
    if data["optimizer"] not in optimizer_family_names():
        raise DataError(f"{what}: unknown optimizer family {data['optimizer']!r}; "
                        f"known: {', '.join(optimizer_family_names())}")
    for i, entry in enumerate(data["entries"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("hparams"), dict):
            raise DataError(f"{what}: entry {i} has no 'hparams' mapping")
    return data


def hparam_list_entry(source: str | Path, index: int) -> tuple[str, dict[str, Any]]:
    """(optimizer family, hparams) of entry ``index`` (0 = the first to try) of a list."""
    data = load_hparam_list(source)
    n = len(data["entries"])
    if not 0 <= int(index) < n:
        raise DataError(f"hparam list {source} has {n} entries; index {index} is out of range [0, {n})")
    return str(data["optimizer"]), dict(data["entries"][int(index)]["hparams"])


def hparam_list_optimizer(params: Iterable, list: str | Path | None = None, index: int = 0,  # noqa: A002
                          total_steps: int | None = None, *,
                          list_path: str | Path | None = None) -> torch.optim.Optimizer:
    """Entry ``index`` of ``list`` (a built-in list name such as ``"opt_list"``, or a list
    file) as an optimizer scheduled over ``total_steps``; opt_list's ``optimizer_for_idx``.

    ``list_path`` is the older name of ``list``.
    """
    source = list if list is not None else list_path
    if source is None:
        raise DataError("hparam_list_optimizer needs a list: a built-in name "
                        f"({', '.join(builtin_list_names())}) or a hparam_list.json path")
    if total_steps is None:
        raise ValueError("hparam_list_optimizer needs total_steps (the schedule's run length)")
    family, hparams = hparam_list_entry(source, index)
    return FamilyOptimizer(params, get_optimizer_family(family), hparams, total_steps)
