"""Tasks: the Task interface, task families (samplers + builders), fixed tasks, task sets."""

from taskset_lab.tasks.base import SPLITS, NoiseData, Task, TaskData, TensorData, task_name
from taskset_lab.tasks.registry import (
    build_fixed_task,
    build_task,
    task_family_names,
    fixed_task,
    fixed_task_names,
    get_task_family,
    get_task,
    register_task_family,
    sample_task,
    sample_task_config,
    task_names,
)
from taskset_lab.tasks.released import released_task_config

__all__ = [
    "SPLITS", "NoiseData", "Task", "TaskData", "TensorData", "task_name", "build_fixed_task", "build_task",
    "task_family_names", "fixed_task", "fixed_task_names", "get_task_family", "get_task", "register_task_family",
    "released_task_config", "sample_task", "sample_task_config", "task_names",
]
