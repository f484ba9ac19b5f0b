"""Optimizer families by name."""

from __future__ import annotations

from typing import Iterable

import torch

from taskset_lab.optim.adam import ADAM1P, ADAM4P, ADAM8P
from taskset_lab.optim.base import FamilyOptimizer, OptimizerFamily
from taskset_lab.optim.nadamw import NADAMW

_FAMILIES: dict[str, OptimizerFamily] = {f.name: f for f in (ADAM8P, ADAM4P, ADAM1P, NADAMW)}


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> OptimizerFamily:
    if name not in _FAMILIES:
        raise KeyError(f"unknown optimizer family '{name}'; known: {', '.join(family_names())}")
    return _FAMILIES[name]


def sampled_optimizer(params: Iterable, family: str, seed: int, total_steps: int) -> torch.optim.Optimizer:
    """Draw ``seed`` of ``family``'s search space, as a ready optimizer."""
    fam = get_family(family)
    return FamilyOptimizer(params, fam, fam.sample(int(seed)), total_steps)
