"""Population training: K hparam configs of one task stepped together (docs/design.md §Engine).

One replica's module is initialised once; its parameters and task state (BatchNorm
statistics) are stacked on a leading ``[K]`` axis (every config starts from the same
point), the loss and gradient are ``vmap(grad_and_value(loss))`` over
:meth:`Task.functional_loss` with the batch shared by all K and each config's own random
numbers, and the family's :class:`BatchedOptimizer` steps all K at once.
:class:`Population` exposes this as ``init`` / ``step`` / ``evaluate``.

Schedule of one run (shared with :func:`taskset_lab.engine.single.train_single`):

* training step ``s`` (``0 <= s < total_steps``) uses ``task.data.batch("train", s)`` and is
  update number ``s + 1``;
* evaluations happen at step 0, every ``eval_every`` steps and at ``total_steps``, *before*
  the update of that step; each is the mean eval-mode loss (running statistics, no
  dropout) over ``eval_batches`` fixed batches (``task.data.eval_batches``) of every split,
  for all K in one vectorised pass.

Divergence rule (:func:`divergence_bound`): with ``L0`` the train-split evaluation at
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
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from taskset_lab.optim.base import BatchedOptimizer, FlatBuffers, OptimizerFamily, compute_dtype
from taskset_lab.tasks.base import SPLITS, Batch, Task, eval_key, state_names
from taskset_lab.tasks.context import StepContext, step_context

from taskset_lab.engine.state import (BOUND_FLOOR, PopulationState, divergence_bound, is_bad,  # noqa: F401
                                      mask_after_divergence, where_k)
from taskset_lab.engine.compiled import (PROBE_KS, PROBE_MIN_STEPS, CompiledStep,  # noqa: E402
                                         compile_available, compile_mode, probe_population_size,
                                         should_compile)

_log = logging.getLogger(__name__)

#: the default ``divergence_factor`` (also the learner config's default)
DEFAULT_DIVERGENCE_FACTOR = 100.0
#: the CPU memory budget when none is given and the free memory cannot be read
DEFAULT_CPU_BUDGET = 4 << 30

Progress = Callable[[int], None]


@dataclass
class PopulationResult:
    """Curves of K configs of one task and one replica.

    ``losses[split]`` is ``[K, len(steps)]`` (NaN at and after a divergence);
    ``diverged_step[k]`` is the step config k diverged at, ``-1`` if it never did;
    ``seconds`` is the wall time of the whole run (all K).
    """

    steps: list[int]
    losses: dict[str, Tensor]
    diverged_step: Tensor
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_configs(self) -> int:
        return int(self.diverged_step.shape[0])

    @property
    def diverged(self) -> Tensor:
        return self.diverged_step >= 0


def eval_steps(total_steps: int, eval_every: int) -> list[int]:
    """The evaluation steps: 0, every ``eval_every`` steps, and ``total_steps``."""
    if total_steps < 1 or eval_every < 1:
        raise ValueError(f"total_steps and eval_every must be >= 1, got {total_steps}, {eval_every}")
    steps = list(range(0, total_steps + 1, eval_every))
    if steps[-1] != total_steps:
        steps.append(total_steps)
    return steps


def init_seed(replica: int) -> int:
    """The module-initialisation seed of a replica (replica r uses seed r)."""
    return int(replica)


# ------------------------------------------------------------------ memory / chunking


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return DEFAULT_CPU_BUDGET


def default_memory_budget(device: torch.device | str) -> int:
    """Half of the free memory of ``device`` (CPU: of the available RAM)."""
    return _available_bytes(torch.device(device)) // 2


def estimate_config_bytes(task: Task, module: nn.Module, num_state: int,
                          dtype: torch.dtype, eval_batches: int = 1) -> int:
    """A rough per-config memory estimate: parameters x (params, grads, new params,
    optimizer state, kept copies) plus 4x the summed outputs of every submodule on one
    training batch (activations kept for the backward pass). Meant for chunking, not
    accounting: pass ``max_chunk`` when the estimate is off."""
    elem = torch.empty((), dtype=dtype).element_size()
    n_params = sum(p.numel() for p in module.parameters())
    param_bytes = n_params * elem * (4 + 2 * num_state)
    outputs: list[int] = []

    def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            outputs.append(out.numel())

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        # a probe pass: draws nothing for real and leaves task state (BatchNorm statistics) alone
        with torch.no_grad(), step_context(StepContext(train=True, probe=True)):
            task.forward_loss(module, task.data.batch("train", 0))
    finally:
        for h in handles:
            h.remove()
    return int(param_bytes + 4 * sum(outputs) * elem)


def auto_chunk(num_configs: int, per_config_bytes: int, memory_budget: int) -> int:
    """How many configs fit in ``memory_budget`` (at least 1, at most ``num_configs``)."""
    return max(1, min(num_configs, int(memory_budget // max(per_config_bytes, 1))))


# ------------------------------------------------------------------ the engine


def _prepare(task: Task, replica: int, device: torch.device | str, dtype: torch.dtype
             ) -> tuple[Task, nn.Module]:
    module = task.init_module(init_seed(replica)).to(device=device, dtype=dtype)
    return task.to(device, dtype), module


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
        if isinstance(family, str):
            from taskset_lab.optim import get_family

            family = get_family(family)
        if not configs:
            raise ValueError("a population needs at least one config")
        if eval_batches < 1:
            raise ValueError(f"eval_batches must be >= 1, got {eval_batches}")
        self.family = family
        self.configs = [dict(c) for c in configs]
        self.k = len(self.configs)
        self.config_ids = list(range(self.k)) if config_ids is None else [int(c) for c in config_ids]
        if len(self.config_ids) != self.k:
            raise ValueError("config_ids must have one id per config")
        self.total_steps, self.replica = int(total_steps), int(replica)
        self.device, self.dtype = torch.device(device), dtype
        self.divergence_factor = float(divergence_factor)
        self.task, self.module = prepared or _prepare(task, replica, self.device, dtype)
        names = set(state_names(self.module))
        buffers = dict(self.module.named_buffers())
        self._state0 = {n: b for n, b in buffers.items() if n in names}
        self._constants = {n: b for n, b in buffers.items() if n not in names}
        self.eval_sets = {s: self.task.data.eval_batches(s, eval_batches) for s in SPLITS}
        self.opt = BatchedOptimizer.from_configs(family, self.configs, self.total_steps,
                                                 device=self.device, dtype=dtype)
        self._eval_noise = {s: [self._stacked_noise(b, False, eval_key(s, i)) for i, b in enumerate(bs)]
                            for s, bs in self.eval_sets.items()}
        self._grad = vmap(grad_and_value(self._train_loss, has_aux=True), in_dims=(0, 0, None, 0))
        self._eval = vmap(self._eval_losses, in_dims=(0, 0, 0))

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

    def _stacked_noise(self, batch: Batch, train: bool, key: int | str) -> dict[str, Tensor]:
        spec = self.task.noise_spec(self.module, batch, train)
        if not spec:
            return {}
        draws = [self.task.draw_noise(spec, key, cid, self.replica, self.dtype, self.device)
                 for cid in self.config_ids]
        return {name: torch.stack([d[name] for d in draws]) for name in spec}

    # -- the API ---------------------------------------------------------------------------------
    @property
    def fused(self) -> bool:
        """Whether :meth:`init` lays the population out flat for the in-place update: the
        family has the in-place form and the parameters are in their compute dtype (bf16/fp16
        parameters take the per-tensor path, which updates in float32 and rounds back)."""
        return self.opt.family.fused and compute_dtype(self.dtype) == self.dtype

    def init(self, flat: bool | None = None) -> PopulationState:
        """Every config at the replica's initial parameters, fresh optimizer state, step 0.
        ``flat`` (default :attr:`fused`) lays parameters and optimizer state out as views of
        ``[K, P]`` buffers that :meth:`step` then updates in place."""
        k = self.k
        flat = self.fused if flat is None else bool(flat) and self.fused
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
        noise = self._stacked_noise(batch, True, s)
        grads, (values, new_task_state) = self._grad(state.params, state.task_state, batch, noise)
        bad = is_bad(values.detach(), state.bound)
        dstep = torch.where(bad & ~state.diverged, s, state.diverged_step)
        diverged = state.diverged | bad
        with torch.no_grad():
            task_state = {n: where_k(diverged, state.task_state[n], v) for n, v in new_task_state.items()}
            if state.flat is not None:
                self.opt.step_flat_(state.flat, grads, ~diverged)
                return dataclasses.replace(state, step=s + 1, task_state=task_state, diverged=diverged,
                                           diverged_step=dstep)
            new_params, new_opt = self.opt.step(state.params, grads, state.opt_state)
            params = {n: where_k(diverged, state.params[n], new_params[n]) for n in state.params}
            opt_state = {n: {key: where_k(diverged, state.opt_state[n][key], v) for key, v in st.items()}
                         for n, st in new_opt.items()}
        return PopulationState(s + 1, params, opt_state, task_state, diverged, dstep, state.bound)

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


def _run_chunk(population: Population, steps: list[int], progress: Progress | None,
               compiled: bool = False) -> tuple[Tensor, Tensor]:
    """Train one population over the schedule; returns ``(evals [K, n_evals, 4] on CPU,
    diverged_step [K])``."""
    k = population.k
    state = population.init()
    # the compiled step (engine/compiled.py), same curves as population.step
    step_fn = CompiledStep(population).step if compiled else population.step
    evals: list[Tensor] = []
    eval_set = set(steps)
    last_reported = 0
    for s in range(population.total_steps):
        if s in eval_set:
            values, state = population.evaluate(state)
            evals.append(values)
            if progress is not None and s > last_reported:
                progress(k * (s - last_reported))
                last_reported = s
        state = step_fn(state)
    values, state = population.evaluate(state)
    evals.append(values)
    if progress is not None:
        progress(k * (population.total_steps - last_reported))
    return torch.stack(evals, dim=1).cpu(), state.diverged_step.cpu()


def train_population(task: Task, family: OptimizerFamily | str, configs: Sequence[Mapping[str, Any]],
                     total_steps: int, eval_every: int, eval_batches: int = 4, replica: int = 0,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                     divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
                     max_chunk: int | None = None, memory_budget: int | None = None,
                     progress: Progress | None = None,
                     config_ids: Sequence[int] | None = None,
                     compile: str | bool = "auto") -> PopulationResult:
    """Train ``configs`` (hparam dicts of ``family``) on ``task`` as one population.

    Configs are split into chunks of at most ``max_chunk`` (default: as many as fit in
    ``memory_budget`` bytes by :func:`estimate_config_bytes`; default budget: half the free
    memory of ``device``); results are concatenated in config order. ``progress`` is called
    with the number of config-steps done since its last call. ``config_ids`` (default
    ``0..K-1``) key each config's randomness (see :class:`Population`).
    Without ``max_chunk`` the chunk size is picked by a short timing probe within the memory
    bound; ``compile`` (``auto``/``true``/``false``) runs the step through ``torch.compile``
    (engine/compiled.py; ``auto``: only when the run is long enough to pay for compiling).
    """
    if isinstance(family, str):
        from taskset_lab.optim import get_family

        family = get_family(family)
    if not configs:
        raise ValueError("train_population needs at least one config")
    if eval_batches < 1:
        raise ValueError(f"eval_batches must be >= 1, got {eval_batches}")
    start = time.perf_counter()
    steps = eval_steps(int(total_steps), int(eval_every))
    device = torch.device(device)
    task, module = _prepare(task, replica, device, dtype)
    k = len(configs)
    if max_chunk is None:
        budget = default_memory_budget(device) if memory_budget is None else int(memory_budget)
        per_config = estimate_config_bytes(task, module, len(family.state_names), dtype)
        chunk = auto_chunk(k, per_config, budget)
    else:
        chunk = max(1, int(max_chunk))
    ids = list(range(k)) if config_ids is None else [int(c) for c in config_ids]
    # K from a timing probe, compile or not (engine/compiled.py); the allocator is the caller's
    # choice (apply_allocator_settings: the CLI opts in, a library call changes no process setting)
    mode = compile_mode(compile)
    step_s = 0.0
    time_it = mode == "auto" and compile_available(device) and int(total_steps) * math.ceil(k / chunk) >= 200
    probe_k = max_chunk is None and chunk > 1 and int(total_steps) >= PROBE_MIN_STEPS
    if probe_k or time_it:
        def probe_population(n: int) -> Population:
            return Population(task, family, configs[:n], int(total_steps), config_ids=ids[:n], replica=replica,
                              eval_batches=1, device=device, dtype=dtype,
                              divergence_factor=divergence_factor, prepared=(task, module))
        probe_ks = PROBE_KS if probe_k else (chunk,)
        chunk, step_s = probe_population_size(probe_population, k, chunk, probe_ks, need_time=time_it)
    _log.info("population size K=%d of %d configs (%s)", chunk, k, "max_population" if max_chunk is not None
              else "timing probe" if probe_k else "memory bound; run too short to probe")
    use_compile = should_compile(mode, device, step_s * int(total_steps) * math.ceil(k / chunk))
    parts, dsteps = [], []
    for lo in range(0, k, chunk):
        population = Population(task, family, configs[lo:lo + chunk], int(total_steps),
                                config_ids=ids[lo:lo + chunk], replica=replica, eval_batches=eval_batches,
                                device=device, dtype=dtype, divergence_factor=divergence_factor,
                                prepared=(task, module))
        ev, ds = _run_chunk(population, steps, progress, compiled=use_compile)
        parts.append(ev)
        dsteps.append(ds)
    evals = torch.cat(parts, dim=0)
    dstep = torch.cat(dsteps, dim=0)
    losses = mask_after_divergence({s: evals[:, :, i] for i, s in enumerate(SPLITS)}, steps, dstep)
    return PopulationResult(steps=steps, losses=losses, diverged_step=dstep,
                            seconds=time.perf_counter() - start, extra={"chunk": chunk, "compiled": use_compile})
