"""taskset_lab: TaskSet in PyTorch — optimization tasks, learning curves, learned hparam lists."""

__version__ = "0.1.0"
