"""One population step, the function every path runs: eager on per-tensor state, eager on the
flat ``[K, P]`` layout, and under ``torch.compile`` (engine/compiled.py).

A step is: the gradient and minibatch loss of all K configs (``grad_and_loss``, the
population's ``vmap(grad_and_value(loss))``), the divergence check of that loss against
each config's bound, the optimizer update, and the freeze of every diverged config (its
parameters, optimizer state and task state keep their old values). Only the optimizer
update has three forms:

* multi-tensor (a family with :meth:`~taskset_lab.optim.base.OptimizerFamily.update_tensors`,
  the learned optimizers): every tensor of the K configs in one call, the freeze done inside
  it (the diverged configs' rows keep their old values);
* flat (``flat`` given): :meth:`BatchedOptimizer.step_flat_`, in place over the ``[K, P]``
  buffers the parameter dicts are views of, the freeze folded into the update (a zeroed
  gradient row and frozen coefficients);
* per tensor: :meth:`BatchedOptimizer.step` (the pure update), then ``torch.where`` per
  tensor; ``in_place`` writes the result back into the given tensors (what the compiled step
  wants: Inductor then updates them in one pass), else fresh tensors are returned and the
  inputs are left as they are.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import torch
from torch import Tensor

from taskset_lab.engine.state import is_bad, where_k
from taskset_lab.optim.base import BatchedOptimizer, FlatBuffers

Params = dict[str, Tensor]
OptState = dict[str, dict[str, Tensor]]
#: ``(params, task_state, batch, noise) -> (grads, (losses [K], new task state))``
GradAndLoss = Callable[..., tuple[Params, tuple[Tensor, dict[str, Tensor]]]]


class StepOutput(NamedTuple):
    """What one step changes (``params``/``opt_state`` are the given dicts when updated in place)."""

    params: Params
    opt_state: OptState
    task_state: dict[str, Tensor]
    diverged: Tensor
    diverged_step: Tensor


def population_step(grad_and_loss: GradAndLoss, opt: BatchedOptimizer, params: Params, opt_state: OptState,
                    task_state: dict[str, Tensor], diverged: Tensor, diverged_step: Tensor, bound: Tensor,
                    batch: tuple, noise: Mapping[str, Tensor], step: int | Tensor, *,
                    flat: FlatBuffers | None = None, coef: Mapping[str, Tensor] | None = None,
                    in_place: bool = False) -> StepOutput:
    """One training step of K configs.

    Args:
        grad_and_loss: the population's batched gradient function.
        opt: the K configs' batched optimizer.
        params, opt_state, task_state: the stacked ``[K, ...]`` state before the step.
        diverged, diverged_step, bound: the divergence bookkeeping (``[K]`` each).
        batch, noise: the training batch of this step and each config's random numbers.
        step: the step number (recorded as the divergence step of configs that diverge now).
        flat: the ``[K, P]`` buffers ``params`` and ``opt_state`` are views of, for the
            in-place update.
        coef: an in-place family's coefficients of this update, ``[K, 1]`` each (the
            compiled step computes them outside the graph).
        in_place: write the per-tensor update back into ``params`` and ``opt_state``.

    Returns:
        The :class:`StepOutput` after the update and the freeze.
    """
    grads, (values, new_task_state) = grad_and_loss(params, task_state, batch, noise)
    bad = is_bad(values.detach(), bound)
    dstep = torch.where(bad & ~diverged, step, diverged_step)
    diverged = diverged | bad
    with torch.no_grad():
        task_state = {n: where_k(diverged, task_state[n], v) for n, v in new_task_state.items()}
        if flat is not None:
            opt.step_flat_(flat, grads, ~diverged)
            return StepOutput(params, opt_state, task_state, diverged, dstep)
        together = opt.family.has_multi_tensor_update  # it freezes the diverged configs itself
        new_params, new_opt = opt.step(params, grads, opt_state, coef=coef, alive=~diverged if together else None)

        def frozen(old: Tensor, new: Tensor) -> Tensor:
            return new if together else where_k(diverged, old, new)

        if in_place:
            for n, p in params.items():
                p.copy_(frozen(p, new_params[n]))
            for n, st in new_opt.items():
                for key, v in st.items():
                    opt_state[n][key].copy_(frozen(opt_state[n][key], v))
            return StepOutput(params, opt_state, task_state, diverged, dstep)
        params = {n: frozen(params[n], new_params[n]) for n in params}
        opt_state = {n: {key: frozen(opt_state[n][key], v) for key, v in st.items()}
                     for n, st in new_opt.items()}
    return StepOutput(params, opt_state, task_state, diverged, dstep)
