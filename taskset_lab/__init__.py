"""taskset_lab: TaskSet in PyTorch — optimization tasks, learning curves, learned hparam lists.

For people who study optimizers::

    import taskset_lab
    task = taskset_lab.get_task("mlp_family_seed12", offline_data="substitute")
    module = task.init_module(seed=0)
    ...  # task.train_loss(module, task.data.batch("train", step), step) in any PyTorch loop
"""

__version__ = "0.2.0"

__all__ = ["get_task", "task_names"]


def get_task(name: str, data_dir: str | None = None, download: bool = False, offline_data: str = "error"):
    """The task called ``name`` (a fixed task or ``<family>_seed<N>``); see
    :func:`taskset_lab.tasks.registry.get_task`."""
    from taskset_lab.tasks.registry import get_task as _get_task

    return _get_task(name, data_dir=data_dir, download=download, offline_data=offline_data)


def task_names(pattern: str = "*", seeds: range = range(0, 100)) -> list[str]:
    """Task names matching a glob (every fixed task; ``<family>_seed<N>`` for N in ``seeds``)."""
    from taskset_lab.tasks.registry import task_names as _task_names

    return _task_names(pattern, seeds)
