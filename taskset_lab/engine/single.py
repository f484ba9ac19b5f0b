"""One config at a time, the simple way: an ``nn.Module``, a ``torch.optim.Optimizer``,
``loss.backward()``, ``optimizer.step()``.

Same batches, same randomness, same evaluation schedule, same divergence rule and the same
result type as :func:`taskset_lab.engine.driver.train_population` (see its module
docstring), so the two can be compared config by config. The step and the evaluation are
:func:`train_step` and :func:`evaluate_model`, which TRAIN's LightningModule uses too.
Divergence is tracked in device tensors and only looked at when evaluating, so the step
loop does not synchronise with the host either.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, Union

import torch

from taskset_lab.engine.evaluate import RunTracker, evaluate_model
from taskset_lab.engine.state import DEFAULT_DIVERGENCE_FACTOR, PopulationResult, eval_steps, prepare_replica
from taskset_lab.optim.base import FamilyOptimizer, OptimizerFamily
from taskset_lab.tasks.base import SPLITS, Task

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
OptimizerSpec = Union[OptimizerFactory, tuple[Union[OptimizerFamily, str], Mapping[str, Any]]]


def _factory(optimizer: OptimizerSpec, total_steps: int) -> OptimizerFactory:
    if callable(optimizer):
        return optimizer
    family, hparams = optimizer
    if isinstance(family, str):
        from taskset_lab.optim import get_optimizer_family

        family = get_optimizer_family(family)
    fam: OptimizerFamily = family
    return lambda params: FamilyOptimizer(params, fam, dict(hparams), total_steps)


def train_single(task: Task, optimizer: OptimizerSpec, total_steps: int, eval_every: int,
                 eval_batches: int = 4, replica: int = 0, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32,
                 divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR, config_id: int = 0) -> PopulationResult:
    """Train one config of ``task``; ``optimizer`` is ``params -> torch.optim.Optimizer`` or
    ``(family, hparams)`` (then a :class:`FamilyOptimizer`). ``config_id`` keys the config's
    randomness as in a population. Returns a K=1 result."""
    if eval_batches < 1:
        raise ValueError(f"eval_batches must be >= 1, got {eval_batches}")
    start = time.perf_counter()
    steps = eval_steps(int(total_steps), int(eval_every))
    eval_at = set(steps)
    task, model = prepare_replica(task, replica, device, dtype)
    opt = _factory(optimizer, int(total_steps))(model.parameters())
    eval_sets = {s: task.data.eval_batches(s, eval_batches) for s in SPLITS}
    tracker = RunTracker(steps, divergence_factor, dtype=dtype, device=device)
    for s in range(int(total_steps)):
        if s in eval_at:
            tracker.record_eval(s, evaluate_model(task, model, eval_sets, config_id, replica))
            if tracker.stopped:
                break
        loss = task.train_loss(model, task.data.batch("train", s), s, config_id, replica)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        tracker.record_train_loss(s, loss.detach())
        opt.step()
    if not tracker.stopped:
        tracker.record_eval(int(total_steps), evaluate_model(task, model, eval_sets, config_id, replica))
    return tracker.result(time.perf_counter() - start)
