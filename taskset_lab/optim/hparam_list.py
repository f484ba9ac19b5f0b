"""Using a learned hparam list: entry k as a ready optimizer.

A list file (``hparam_list.json``, written by the HPARAM_LIST pipeline) holds at least::

    {"optimizer": "nadamw", "entries": [{"rank": 0, "config_id": 12, "hparams": {...}}, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch

from taskset_lab.errors import DataError
from taskset_lab.optim.base import FamilyOptimizer
from taskset_lab.optim.registry import family_names, get_family


def load_hparam_list(path: str | Path) -> dict[str, Any]:
    """The list file as a dict, checked for its required keys (raises :class:`DataError`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"hparam list {path} does not exist (run `tasklab pipeline=HPARAM_LIST ...` first)")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"hparam list {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or "optimizer" not in data or not isinstance(data.get("entries"), list):
        raise DataError(f"hparam list {path} needs an 'optimizer' name and an 'entries' list")
    if data["optimizer"] not in family_names():
        raise DataError(f"hparam list {path}: unknown optimizer family {data['optimizer']!r}; "
                        f"known: {', '.join(family_names())}")
    for i, entry in enumerate(data["entries"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("hparams"), dict):
            raise DataError(f"hparam list {path}: entry {i} has no 'hparams' mapping")
    return data


def hparam_list_entry(path: str | Path, index: int) -> tuple[str, dict[str, Any]]:
    """(optimizer family, hparams) of entry ``index`` (0 = the first to try)."""
    data = load_hparam_list(path)
    n = len(data["entries"])
    if not 0 <= int(index) < n:
        raise DataError(f"hparam list {path} has {n} entries; index {index} is out of range [0, {n})")
    return str(data["optimizer"]), dict(data["entries"][int(index)]["hparams"])


def hparam_list_optimizer(params: Iterable, list_path: str | Path, index: int,
                          total_steps: int) -> torch.optim.Optimizer:
    """Entry ``index`` of the list at ``list_path`` as an optimizer scheduled over ``total_steps``."""
    family, hparams = hparam_list_entry(list_path, index)
    return FamilyOptimizer(params, get_family(family), hparams, total_steps)
