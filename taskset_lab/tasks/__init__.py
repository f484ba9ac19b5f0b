"""Tasks: the Task interface, task families (samplers + builders), fixed tasks, task sets."""

from taskset_lab.tasks.base import SPLITS, NoiseData, Task, TaskData, TensorData, task_name
from taskset_lab.tasks.registry import (
    build_task,
    family_names,
    get_family,
    register_family,
    sample_task,
    sample_task_config,
)

__all__ = [
    "SPLITS", "NoiseData", "Task", "TaskData", "TensorData", "task_name", "build_task",
    "family_names", "get_family", "register_family", "sample_task", "sample_task_config",
]
