"""Optimizer families by name."""

from __future__ import annotations

from typing import Iterable

import torch

from taskset_lab.optim.adam import ADAM1P, ADAM4P
from taskset_lab.optim.adam8p import ADAM6P, ADAM8P
from taskset_lab.optim.base import FamilyOptimizer, OptimizerFamily
from taskset_lab.optim.nadamw import NADAMW
from taskset_lab.registry import Registry

OPTIMIZER_FAMILIES: Registry[OptimizerFamily] = Registry("optimizer family")
for _family in (ADAM8P, ADAM6P, ADAM4P, ADAM1P, NADAMW):
    OPTIMIZER_FAMILIES.register(_family.name, _family)


def register_optimizer_family(family: OptimizerFamily) -> OptimizerFamily:
    """Add an optimizer family (its ``name`` must be new)."""
    return OPTIMIZER_FAMILIES.register(family.name, family)


def optimizer_family_names() -> list[str]:
    return OPTIMIZER_FAMILIES.names()


def get_optimizer_family(name: str) -> OptimizerFamily:
    """The family called ``name`` (:class:`~taskset_lab.registry.UnknownNameError`, a KeyError
    too, listing the known ones otherwise)."""
    return OPTIMIZER_FAMILIES.get(name)


def sampled_optimizer(params: Iterable, family: str, seed: int, total_steps: int) -> torch.optim.Optimizer:
    """Draw ``seed`` of ``family``'s search space, as a ready optimizer."""
    fam = get_optimizer_family(family)
    return FamilyOptimizer(params, fam, fam.sample(int(seed)), total_steps)
