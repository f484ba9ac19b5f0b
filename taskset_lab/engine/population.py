"""The population: K hparam configs of one task stepped together (docs/design.md §Engine).

One replica's module is initialised once; its parameters and task state (BatchNorm
statistics) are stacked on a leading ``[K]`` axis (every config starts from the same
point), the loss and gradient are ``vmap(grad_and_value(loss))`` over
:meth:`Task.functional_loss` with the batch shared by all K and each config's own random
numbers, and the family's :class:`BatchedOptimizer` steps all K at once.
:class:`Population` exposes this as ``init`` / ``step`` / ``evaluate``; its step is
:func:`taskset_lab.engine.step.population_step`, the same function the compiled step runs, and
:func:`taskset_lab.engine.driver.train_population` drives it in chunks.

Schedule of one run (shared with :func:`taskset_lab.engine.single.train_single`):

* training step ``s`` (``0 <= s < total_steps``) uses ``task.data.batch("train", s)`` and is
  update number ``s + 1``;
* evaluations happen at step 0, every ``eval_every`` steps and at ``total_steps``, *before*
  the update of that step; each is the mean eval-mode loss (running statistics, no
  dropout) over ``eval_batches`` fixed batches (``task.data.eval_batches``) of every split,
  for all K in one vectorised pass.

Divergence rule (:func:`~taskset_lab.engine.state.divergence_bound`): with ``L0`` the train-split evaluation at
step 0, a config diverges at the first step where a loss it produces is NaN/inf or above
``bound = L0 + divergence_factor * max(|L0|, 1e-12)``. Checked are the training minibatch
loss of every step ``s`` (loss of the parameters before update ``s + 1``) and the train
evaluation of every eval step. A diverged config is frozen (its parameters, optimizer
state and task state stop changing; nothing else is touched) and every evaluation at
or after its divergence step is reported as NaN. With the flat in-place update
(:meth:`BatchedOptimizer.step_flat_`) the freeze is a zeroed gradient row plus the family's
frozen coefficients (rate 0, β 1), which leave finite parameters and moments exactly as they
were; otherwise it is a ``torch.where`` per tensor. The check is tensor arithmetic: the step
loop never synchronises with the host.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import grad_and_value, vmap

from taskset_lab.engine.state import (DEFAULT_DIVERGENCE_FACTOR, PopulationState, checked_family, divergence_bound,
                                      is_bad, prepare_replica)
from taskset_lab.engine.step import population_step
from taskset_lab.optim.base import BatchedOptimizer, FlatBuffers, OptimizerFamily, compute_dtype
from taskset_lab.tasks.base import SPLITS, Batch, Task, eval_key, state_names


class Population:
    """K configs of one optimizer family on one task, one replica: ``init`` / ``step`` /
    ``evaluate`` over an explicit :class:`PopulationState` (docs/design.md §Engine).

    CURVES drives it through :func:`train_population`; outside code (a learned optimizer's
    outer loop, say) can drive it step by step. ``config_ids`` are the configs' ids in the
    whole collection: randomness is drawn per id, so config k here equals config k alone.
    """

    def __init__(self, task: Task, family: OptimizerFamily | str, configs: Sequence[Mapping[str, Any]],
                 total_steps: int, *, config_ids: Sequence[int] | None = None, replica: int = 0,
                 eval_batches: int = 4, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32,
                 divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
                 prepared: tuple[Task, nn.Module] | None = None):
        self.family = family = checked_family(family, configs, eval_batches, "a population")
        self.configs = [dict(c) for c in configs]
        self.k = len(self.configs)
        self.config_ids = list(range(self.k)) if config_ids is None else [int(c) for c in config_ids]
        if len(self.config_ids) != self.k:
            raise ValueError("config_ids must have one id per config")
        self.total_steps, self.replica = int(total_steps), int(replica)
        self.device, self.dtype = torch.device(device), dtype
        self.divergence_factor = float(divergence_factor)
        self.task, self.module = prepared or prepare_replica(task, replica, self.device, dtype)
        names = set(state_names(self.module))
        buffers = dict(self.module.named_buffers())
        self._state0 = {n: b for n, b in buffers.items() if n in names}
        self._constants = {n: b for n, b in buffers.items() if n not in names}
        self.eval_sets = {s: self.task.data.eval_batches(s, eval_batches) for s in SPLITS}
        self.opt = BatchedOptimizer.from_configs(family, self.configs, self.total_steps,
                                                 device=self.device, dtype=dtype)
        self._eval_noise = {s: [self.config_noise(b, False, eval_key(s, i)) for i, b in enumerate(bs)]
                            for s, bs in self.eval_sets.items()}
        #: ``(params, task_state, batch, noise) -> (grads, (losses [K], new task state))``, batched
        self.grad_and_loss = vmap(grad_and_value(self._train_loss, has_aux=True), in_dims=(0, 0, None, 0))
        self._eval = vmap(self._eval_losses, in_dims=(0, 0, 0))

    @property
    def constants(self) -> dict[str, Tensor]:
        """The module's buffers that are not task state (the same for every config)."""
        return self._constants

    # -- the pure functions that vmap maps over configs ----------------------------------------
    def _train_loss(self, params: dict[str, Tensor], state: dict[str, Tensor], batch: Batch,
                    noise: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.task.functional_loss(self.module, params, state, self._constants, batch, noise, True)

    def _eval_losses(self, params: dict[str, Tensor], state: dict[str, Tensor],
                     noise: dict[str, list[dict[str, Tensor]]]) -> Tensor:
        per_split = []
        for s in SPLITS:
            losses = [self.task.functional_loss(self.module, params, state, self._constants, b, n, False)[0]
                      for b, n in zip(self.eval_sets[s], noise[s])]
            per_split.append(torch.stack(losses).mean())
        return torch.stack(per_split)

    def config_noise(self, batch: Batch, train: bool, key: int | str) -> dict[str, Tensor]:
        """Each config's random numbers for ``batch`` (dropout masks and the like), stacked
        ``[K, ...]``; drawn per config id, so config k here draws what it draws alone."""
        spec = self.task.noise_spec(self.module, batch, train)
        if not spec:
            return {}
        draws = [self.task.draw_noise(spec, key, cid, self.replica, self.dtype, self.device)
                 for cid in self.config_ids]
        return {name: torch.stack([d[name] for d in draws]) for name in spec}

    # -- the API ---------------------------------------------------------------------------------
    @property
    def flat_update(self) -> bool:
        """Whether :meth:`init` lays the population out flat for the in-place update: the
        family has the in-place form and the parameters are in their compute dtype (bf16/fp16
        parameters take the per-tensor path, which updates in float32 and rounds back)."""
        return self.opt.family.has_in_place_update and compute_dtype(self.dtype) == self.dtype

    def init(self, flat: bool | None = None) -> PopulationState:
        """Every config at the replica's initial parameters, fresh optimizer state, step 0.
        ``flat`` (default :attr:`flat_update`) lays parameters and optimizer state out as views of
        ``[K, P]`` buffers that :meth:`step` then updates in place."""
        k = self.k
        flat = self.flat_update if flat is None else bool(flat) and self.flat_update
        named = dict(self.module.named_parameters())
        buffers = FlatBuffers.stack(named, k, self.family.state_names) if flat else None
        if buffers is not None:
            params, opt_state = buffers.views(buffers.params), buffers.opt_state()
        else:
            params = {n: p.detach().unsqueeze(0).expand((k,) + p.shape).clone() for n, p in named.items()}
            opt_state = self.opt.init(params)
        task_state = {n: b.detach().unsqueeze(0).expand((k,) + b.shape).clone() for n, b in self._state0.items()}
        return PopulationState(
            step=0, params=params, opt_state=opt_state, task_state=task_state,
            diverged=torch.zeros(k, dtype=torch.bool, device=self.device),
            diverged_step=torch.full((k,), -1, dtype=torch.long, device=self.device),
            bound=torch.zeros(k, dtype=self.dtype, device=self.device), flat=buffers)

    def step(self, state: PopulationState) -> PopulationState:
        """One training step on ``batch("train", state.step)``: gradients of all K, the batched
        update, and the divergence freeze (a config whose minibatch loss is bad keeps its
        parameters, optimizer state and task state). No host synchronisation.

        A flat state (``state.flat``, from :meth:`init`) is updated in place and returned
        with the step advanced; keep the old one with :meth:`PopulationState.copy`. Other
        states are left as they are."""
        s = state.step
        batch = self.task.data.batch("train", s)
        out = population_step(self.grad_and_loss, self.opt, state.params, state.opt_state, state.task_state,
                              state.diverged, state.diverged_step, state.bound, batch,
                              self.config_noise(batch, True, s), s, flat=state.flat)
        return dataclasses.replace(state, step=s + 1, params=out.params, opt_state=out.opt_state,
                                   task_state=out.task_state, diverged=out.diverged,
                                   diverged_step=out.diverged_step)

    def evaluate(self, state: PopulationState) -> tuple[Tensor, PopulationState]:
        """Mean eval-mode loss over each split's fixed batches, ``[K, 4]`` in SPLITS order,
        and the state with the divergence check of this evaluation applied (at step 0 it sets
        the bound from the train-split loss)."""
        with torch.no_grad():
            values = self._eval(state.params, state.task_state, self._eval_noise)
        bound = divergence_bound(values[:, 0], self.divergence_factor) if state.step == 0 else state.bound
        bad = is_bad(values[:, 0], bound)
        dstep = torch.where(bad & ~state.diverged, state.step, state.diverged_step)
        return values, dataclasses.replace(state, diverged=state.diverged | bad, diverged_step=dstep,
                                           bound=bound)

