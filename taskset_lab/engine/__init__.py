"""Training engines: a vectorised population of configs, and one config at a time.

Layers, each importing only the ones above it in this list: ``state`` (the population's
state, the divergence rule, the schedule, the result type), ``step`` (the one step function),
``population`` (:class:`Population`: ``init`` / ``step`` / ``evaluate``), ``compiled`` (that
step under ``torch.compile``), ``driver`` (:func:`train_population`: chunks, memory bound, K
probe, compile policy, the allocator opt-in); ``evaluate`` and ``single`` are the one-config
engine on the same schedule and rule.
"""

from taskset_lab.engine.driver import apply_allocator_settings, train_population
from taskset_lab.engine.evaluate import RunTracker, evaluate_model
from taskset_lab.engine.population import Population
from taskset_lab.engine.single import train_single
from taskset_lab.engine.state import (DEFAULT_DIVERGENCE_FACTOR, PopulationResult, PopulationState, divergence_bound,
                                      eval_steps, init_seed)
from taskset_lab.engine.step import population_step

__all__ = ["DEFAULT_DIVERGENCE_FACTOR", "apply_allocator_settings", "Population", "PopulationResult", "PopulationState",
           "RunTracker", "divergence_bound", "eval_steps", "evaluate_model", "init_seed", "population_step",
           "train_population", "train_single"]
