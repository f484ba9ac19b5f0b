"""One config at a time, the simple way: an ``nn.Module``, a ``torch.optim.Optimizer``,
``loss.backward()``, ``optimizer.step()``.

Same batches, same evaluation schedule, same divergence rule and the same result type as
:func:`taskset_lab.engine.population.train_population` (see its module docstring), so the
two can be compared config by config. Divergence is tracked in device tensors and only
looked at when evaluating, so the step loop does not synchronise with the host either.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping, Union

import torch

from taskset_lab.engine.evaluate import evaluate_model
from taskset_lab.engine.population import (
    DEFAULT_DIVERGENCE_FACTOR,
    PopulationResult,
    _prepare,
    divergence_bound,
    eval_steps,
    is_bad,
    mask_after_divergence,
)
from taskset_lab.optim.base import FamilyOptimizer, OptimizerFamily
from taskset_lab.tasks.base import SPLITS, Task

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
OptimizerSpec = Union[OptimizerFactory, tuple[Union[OptimizerFamily, str], Mapping[str, Any]]]


def _factory(optimizer: OptimizerSpec, total_steps: int) -> OptimizerFactory:
    if callable(optimizer):
        return optimizer
    family, hparams = optimizer
    if isinstance(family, str):
        from taskset_lab.optim import get_family

        family = get_family(family)
    fam: OptimizerFamily = family
    return lambda params: FamilyOptimizer(params, fam, dict(hparams), total_steps)


def train_single(task: Task, optimizer: OptimizerSpec, total_steps: int, eval_every: int,
                 eval_batches: int = 4, replica: int = 0, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32,
                 divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR) -> PopulationResult:
    """Train one config of ``task``; ``optimizer`` is ``params -> torch.optim.Optimizer`` or
    ``(family, hparams)`` (then a :class:`FamilyOptimizer`). Returns a K=1 result."""
    if eval_batches < 1:
        raise ValueError(f"eval_batches must be >= 1, got {eval_batches}")
    start = time.perf_counter()
    steps = eval_steps(int(total_steps), int(eval_every))
    eval_at = set(steps)
    task, model = _prepare(task, replica, device, dtype)
    opt = _factory(optimizer, int(total_steps))(model.parameters())
    eval_sets = {s: task.data.eval_batches(s, eval_batches) for s in SPLITS}
    rows: list[list[float]] = []
    bound = torch.zeros((), dtype=dtype, device=device)
    dstep = torch.full((), -1, dtype=torch.long, device=device)

    def evaluate(step: int) -> bool:
        """Record an evaluation; False once the run has diverged (then training stops)."""
        nonlocal bound, dstep
        losses = evaluate_model(task, model, eval_sets)
        rows.append([losses[s] for s in SPLITS])
        train = torch.tensor(losses["train"], dtype=dtype, device=device)
        if step == 0:
            bound = divergence_bound(train, divergence_factor)
        dstep = torch.where((dstep < 0) & is_bad(train, bound), step, dstep)
        return bool(dstep < 0)

    alive = True
    for s in range(int(total_steps)):
        if s in eval_at and not evaluate(s):
            alive = False
            break
        loss = task.forward_loss(model, task.data.batch("train", s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dstep = torch.where((dstep < 0) & is_bad(loss.detach(), bound), s, dstep)
        opt.step()
    if alive:
        evaluate(int(total_steps))
    rows += [[math.nan] * len(SPLITS)] * (len(steps) - len(rows))
    table = torch.tensor(rows, dtype=dtype)  # [n_evals, 4]
    dstep_k = dstep.reshape(1).cpu()
    losses = {s: table[:, i].unsqueeze(0) for i, s in enumerate(SPLITS)}
    losses = mask_after_divergence(losses, steps, dstep_k)
    return PopulationResult(steps=steps, losses=losses, diverged_step=dstep_k,
                            seconds=time.perf_counter() - start)
