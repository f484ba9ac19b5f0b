"""The search strategies a replay runs, each one of Syne Tune's schedulers.

Over a tabular benchmark a strategy chooses among the C recorded configs. Syne Tune's random
samplers draw from the configuration space with replacement, so the strategies that sample
at random are handed a seeded permutation of the recorded configs as their first points
(``points_to_evaluate``): random search over a table is drawing without replacement, as
HPARAM_LIST's exact expectation assumes. Once the C configs are used up they sample from the
space (snapped to the nearest recorded config, so repeats can happen then).

=============  ===========================================================================
``random``     ``RandomSearch`` (FIFO, every trial to the last step), permuted configs
``list``       ``RandomSearch`` whose points are the learned list in order (then the rest,
               permuted): the list tried one config after another, each to the end
``tpe``        ``TPE`` (Syne Tune's KDE searcher), every trial to the end
``asha``       ``ASHA`` (asynchronous successive halving, stopping variant), permuted configs
``list_asha``  ``ASHA`` whose first points are the list's first ``list_asha_entries``
               entries, then the rest permuted: the list as ASHA's starting set
``hyperband``  ``ASHA`` with ``brackets`` brackets: Syne Tune's asynchronous Hyperband (Syne
               Tune 0.16 has no synchronous Hyperband scheduler)
``bohb``       ``BOHB`` (ASHA with the KDE searcher)
=============  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from taskset_lab.hparam_list.baselines import ConfigSpace
from taskset_lab.replay.simulate import FIDELITY, SELECT

STRATEGIES = ("random", "list", "tpe", "asha", "list_asha", "hyperband", "bohb")
LIST_STRATEGIES = ("list", "list_asha")


@dataclass(frozen=True)
class MultiFidelity:
    """ASHA/Hyperband/BOHB settings, in steps: ``grace_period`` (first rung), ``reduction_factor``,
    ``brackets`` (Hyperband), ``max_t`` (the last step)."""

    max_t: int
    grace_period: int
    reduction_factor: float = 3.0
    brackets: int = 3


def _order(c: int, first: Sequence[int], seed: int) -> list[int]:
    """``first`` then the other configs in a seeded random order."""
    first = [int(i) for i in first]
    rest = np.setdiff1d(np.arange(c), first)
    return first + [int(i) for i in np.random.default_rng(seed).permutation(rest)]


def scheduler_factory(name: str, space: ConfigSpace, config_space: dict[str, Any], seed: int,
                      mf: MultiFidelity, hparam_list: Sequence[int] = (),
                      list_asha_entries: int = 10) -> Callable[[], Any]:
    """A function building strategy ``name``'s Syne Tune scheduler (see the module docstring).

    ``hparam_list`` (config rows in order) is needed by the list strategies."""
    from syne_tune.optimizer.baselines import ASHA, BOHB, TPE, RandomSearch

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    if name in LIST_STRATEGIES and not len(hparam_list):
        raise ValueError(f"strategy {name} needs the learned list")
    c = len(space.config_ids)
    first: Sequence[int] = ()
    if name == "list":
        first = hparam_list
    elif name == "list_asha":
        first = list(hparam_list)[: int(list_asha_entries)]
    points = [space.params_of(i) for i in _order(c, first, seed)]
    common = dict(config_space=config_space, random_seed=int(seed))
    multi = dict(metric=SELECT, time_attr=FIDELITY, max_t=int(mf.max_t), grace_period=int(mf.grace_period),
                 reduction_factor=float(mf.reduction_factor))
    if name in ("random", "list"):
        return lambda: RandomSearch(metrics=[SELECT], points_to_evaluate=points, **common)
    if name == "tpe":
        return lambda: TPE(metric=SELECT, **common)
    if name in ("asha", "list_asha"):
        return lambda: ASHA(points_to_evaluate=points, **multi, **common)
    if name == "hyperband":
        return lambda: ASHA(points_to_evaluate=points, brackets=int(mf.brackets), **multi, **common)
    return lambda: BOHB(brackets=1, **multi, **common)
