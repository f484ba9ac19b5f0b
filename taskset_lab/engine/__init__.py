"""Training engines: a vectorised population of configs, and one config at a time."""

from taskset_lab.engine.compiled import apply_allocator_settings
from taskset_lab.engine.evaluate import RunTracker, evaluate_model
from taskset_lab.engine.population import (
    DEFAULT_DIVERGENCE_FACTOR,
    Population,
    PopulationResult,
    PopulationState,
    divergence_bound,
    eval_steps,
    init_seed,
    train_population,
)
from taskset_lab.engine.single import train_single

__all__ = ["DEFAULT_DIVERGENCE_FACTOR", "apply_allocator_settings", "Population", "PopulationResult", "PopulationState", "RunTracker",
           "divergence_bound", "eval_steps", "evaluate_model", "init_seed", "train_population", "train_single"]
