"""LightningModules: how a task is trained inside a Lightning Trainer."""

from taskset_lab.learners.single_task import SingleTaskLearner

__all__ = ["SingleTaskLearner"]
