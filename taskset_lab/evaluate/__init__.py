"""Scoring optimizers across tasks the way optimizer papers report it (speedup over tuned
Adam, time to target, performance profiles, aggregates with intervals): plain numpy in,
numbers out."""

from taskset_lab.evaluate.metrics import (AdamEnvelope, ema, interval_estimates, iqm, performance_profiles,
                                          profile_score, steps_to_target)
from taskset_lab.evaluate.score import AdamBaseline, adam_baseline, evaluate_optimizer, score_optimizer

__all__ = ["AdamBaseline", "AdamEnvelope", "adam_baseline", "evaluate_optimizer", "score_optimizer", "ema", "interval_estimates", "iqm", "performance_profiles", "profile_score",
           "steps_to_target"]
