"""Population training: K hparam configs of one task stepped together (DESIGN.md §3, §6).

One replica's module is initialised once; its parameters are stacked on a leading ``[K]``
axis (every config starts from the same point), the loss and gradient are
``vmap(grad_and_value(loss), in_dims=(0, None))`` over ``torch.func.functional_call`` with
the batch shared by all K, and the family's :class:`BatchedOptimizer` steps all K at once.

Schedule of one run (shared with :func:`taskset_lab.engine.single.train_single`):

* training step ``s`` (``0 <= s < total_steps``) uses ``task.data.batch("train", s)`` and is
  update number ``s + 1``;
* evaluations happen at step 0, every ``eval_every`` steps and at ``total_steps``, *before*
  the update of that step; each is the mean loss over ``eval_batches`` fixed batches
  (``task.data.eval_batches``) of every split, for all K in one vectorised pass.

Divergence rule (:func:`divergence_bound`): with ``L0`` the train-split evaluation at
step 0, a config diverges at the first step where a loss it produces is NaN/inf or above
``bound = L0 + divergence_factor * max(|L0|, 1e-12)``. Checked are the training minibatch
loss of every step ``s`` (loss of the parameters before update ``s + 1``) and the train
evaluation of every eval step. A diverged config is frozen (its parameters and optimizer
state stop changing; ``torch.where``, so nothing else is touched) and every evaluation at
or after its divergence step is reported as NaN. The check is tensor arithmetic: the step
loop never synchronises with the host.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from taskset_lab.optim.base import BatchedOptimizer, OptimizerFamily
from taskset_lab.tasks.base import SPLITS, Batch, Task

#: the default ``divergence_factor`` (also the learner config's default)
DEFAULT_DIVERGENCE_FACTOR = 100.0
#: ``|L0|`` is floored at this value in the bound, so a zero initial loss still has a bound
BOUND_FLOOR = 1e-12
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


def divergence_bound(initial_loss: Tensor, divergence_factor: float) -> Tensor:
    """``L0 + factor * max(|L0|, BOUND_FLOOR)``; NaN where ``L0`` is not finite (so it diverges)."""
    bound = initial_loss + divergence_factor * initial_loss.abs().clamp_min(BOUND_FLOOR)
    return torch.where(torch.isfinite(initial_loss), bound, torch.full_like(bound, math.nan))


def is_bad(loss: Tensor, bound: Tensor) -> Tensor:
    """Whether a loss counts as divergence (non-finite, above the bound, or bound is NaN)."""
    return ~torch.isfinite(loss) | ~(loss <= bound)


def mask_after_divergence(losses: dict[str, Tensor], steps: Sequence[int],
                          diverged_step: Tensor) -> dict[str, Tensor]:
    """NaN every evaluation at or after each config's divergence step."""
    step_t = torch.tensor(list(steps), dtype=torch.long)
    dstep = diverged_step.to(torch.long).cpu()
    dead = (dstep[:, None] >= 0) & (step_t[None, :] >= dstep[:, None])
    return {s: torch.where(dead, torch.full_like(v, math.nan), v) for s, v in losses.items()}


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
        with torch.no_grad():
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


def _where_k(keep: Tensor, old: Tensor, new: Tensor) -> Tensor:
    """``old`` where ``keep[k]`` else ``new``, for tensors with a leading [K] axis."""
    if new.dim() == 0 or new.shape[0] != keep.shape[0]:
        return new
    return torch.where(keep.view((-1,) + (1,) * (new.dim() - 1)), old, new)


def _run_chunk(task: Task, module: nn.Module, family: OptimizerFamily,
               configs: Sequence[Mapping[str, Any]], total_steps: int, steps: list[int],
               eval_sets: dict[str, list[Batch]], device: torch.device, dtype: torch.dtype,
               divergence_factor: float, progress: Progress | None) -> tuple[Tensor, Tensor]:
    """Train one chunk; returns ``(evals [K, n_evals, 4] on CPU, diverged_step [K])``."""
    k = len(configs)
    buffers = {n: b for n, b in module.named_buffers()}
    params = {n: p.detach().unsqueeze(0).expand((k,) + p.shape).clone()
              for n, p in module.named_parameters()}

    def loss_fn(p: dict[str, Tensor], batch: Batch) -> Tensor:
        def model(*inputs: Tensor) -> Tensor:
            return functional_call(module, (p, buffers), inputs)
        return task.forward_loss(model, batch)

    def eval_fn(p: dict[str, Tensor]) -> Tensor:
        return torch.stack([torch.stack([loss_fn(p, b) for b in eval_sets[s]]).mean() for s in SPLITS])

    step_fn = vmap(grad_and_value(loss_fn), in_dims=(0, None))
    eval_all = vmap(eval_fn)

    opt = BatchedOptimizer.from_configs(family, list(configs), total_steps, device=device, dtype=dtype)
    state = opt.init(params)
    diverged = torch.zeros(k, dtype=torch.bool, device=device)
    dstep = torch.full((k,), -1, dtype=torch.long, device=device)
    bound = torch.zeros(k, dtype=dtype, device=device)
    evals: list[Tensor] = []
    last_reported = 0

    def evaluate(step: int) -> None:
        nonlocal bound, diverged, dstep
        with torch.no_grad():
            values = eval_all(params)  # [K, 4]
        if step == 0:
            bound = divergence_bound(values[:, 0], divergence_factor)
        bad = is_bad(values[:, 0], bound)
        dstep = torch.where(bad & ~diverged, step, dstep)
        diverged = diverged | bad
        evals.append(values)

    eval_set = set(steps)
    for s in range(total_steps):
        if s in eval_set:
            evaluate(s)
            if progress is not None and s > last_reported:
                progress(k * (s - last_reported))
                last_reported = s
        grads, values = step_fn(params, task.data.batch("train", s))
        bad = is_bad(values.detach(), bound)
        dstep = torch.where(bad & ~diverged, s, dstep)
        diverged = diverged | bad
        with torch.no_grad():
            new_params, new_state = opt.step(params, grads, state)
            params = {n: _where_k(diverged, params[n], new_params[n]) for n in params}
            state = {n: {key: _where_k(diverged, state[n][key], v) for key, v in st.items()}
                     for n, st in new_state.items()}
    evaluate(total_steps)
    if progress is not None:
        progress(k * (total_steps - last_reported))
    return torch.stack(evals, dim=1).cpu(), dstep.cpu()


def train_population(task: Task, family: OptimizerFamily | str, configs: Sequence[Mapping[str, Any]],
                     total_steps: int, eval_every: int, eval_batches: int = 4, replica: int = 0,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                     divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
                     max_chunk: int | None = None, memory_budget: int | None = None,
                     progress: Progress | None = None) -> PopulationResult:
    """Train ``configs`` (hparam dicts of ``family``) on ``task`` as one population.

    Configs are split into chunks of at most ``max_chunk`` (default: as many as fit in
    ``memory_budget`` bytes by :func:`estimate_config_bytes`; default budget: half the free
    memory of ``device``); results are concatenated in config order. ``progress`` is called
    with the number of config-steps done since its last call.
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
    eval_sets = {s: task.data.eval_batches(s, eval_batches) for s in SPLITS}
    k = len(configs)
    if max_chunk is None:
        budget = default_memory_budget(device) if memory_budget is None else int(memory_budget)
        per_config = estimate_config_bytes(task, module, len(family.state_names), dtype)
        chunk = auto_chunk(k, per_config, budget)
    else:
        chunk = max(1, int(max_chunk))
    parts, dsteps = [], []
    for lo in range(0, k, chunk):
        ev, ds = _run_chunk(task, module, family, configs[lo:lo + chunk], int(total_steps), steps,
                            eval_sets, device, dtype, float(divergence_factor), progress)
        parts.append(ev)
        dsteps.append(ds)
    evals = torch.cat(parts, dim=0)
    dstep = torch.cat(dsteps, dim=0)
    losses = mask_after_divergence({s: evals[:, :, i] for i, s in enumerate(SPLITS)}, steps, dstep)
    return PopulationResult(steps=steps, losses=losses, diverged_step=dstep,
                            seconds=time.perf_counter() - start, extra={"chunk": chunk})
