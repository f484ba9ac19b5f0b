"""What every engine path shares (the population eagerly or compiled, one config alone): the
population's state, the divergence rule, the evaluation schedule and the result type.

Divergence rule (:func:`divergence_bound`): with ``L0`` the train-split evaluation at step 0,
a config diverges at the first step where a loss it produces is NaN/inf or above
``bound = L0 + divergence_factor * max(|L0|, 1e-12)`` (:func:`is_bad`). A diverged config is
frozen (:func:`where_k` keeps its old tensors) and its later evaluations read NaN
(:func:`mask_after_divergence`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from dataclasses import field
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from taskset_lab.optim.base import FlatBuffers, OptimizerFamily
from taskset_lab.tasks.base import Task

#: the default ``divergence_factor`` (also the learner config's default)
DEFAULT_DIVERGENCE_FACTOR = 100.0

#: ``|L0|`` is floored at this value in the bound, so a zero initial loss still has a bound
BOUND_FLOOR = 1e-12


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


def where_k(keep: Tensor, old: Tensor, new: Tensor) -> Tensor:
    """``old`` where ``keep[k]`` else ``new``, for tensors with a leading [K] axis."""
    if new.dim() == 0 or new.shape[0] != keep.shape[0]:
        return new
    return torch.where(keep.view((-1,) + (1,) * (new.dim() - 1)), old, new)


@dataclass
class PopulationState:
    """Everything that changes while K configs train: the step about to be taken, the
    stacked parameters, optimizer state and task state (``[K, ...]`` each), and the
    divergence bookkeeping (``bound`` is set by the evaluation at step 0)."""

    step: int
    params: dict[str, Tensor]
    opt_state: dict[str, dict[str, Tensor]]
    task_state: dict[str, Tensor]
    diverged: Tensor
    diverged_step: Tensor
    bound: Tensor
    #: the flat ``[K, P]`` buffers ``params`` and ``opt_state`` are views of, when the step
    #: updates them in place (the eager engine with an in-place optimizer family); ``None``
    #: when they are separate tensors (the compiled step, families with only ``update``)
    flat: FlatBuffers | None = None

    def unflattened(self) -> "PopulationState":
        """The same state with contiguous per-name tensors of its own (``flat = None``); the
        state itself when it is not flat."""
        return self if self.flat is None else self.copy()

    def copy(self) -> "PopulationState":
        """A copy whose parameters and optimizer state are tensors of its own (``flat = None``):
        stepping it in place leaves this state as it is."""
        return dataclasses.replace(
            self, params={n: p.clone() for n, p in self.params.items()},
            opt_state={n: {k: v.clone() for k, v in st.items()} for n, st in self.opt_state.items()}, flat=None)


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


def checked_family(family: OptimizerFamily | str, configs: Sequence[Any], eval_batches: int,
                   who: str) -> OptimizerFamily:
    """``family`` (a name is looked up) after the checks every population entry point makes:
    ``who`` needs at least one config and ``eval_batches >= 1`` (``ValueError`` otherwise)."""
    if not configs:
        raise ValueError(f"{who} needs at least one config")
    if eval_batches < 1:
        raise ValueError(f"eval_batches must be >= 1, got {eval_batches}")
    if isinstance(family, str):
        from taskset_lab.optim import get_optimizer_family

        family = get_optimizer_family(family)
    return family


def prepare_replica(task: Task, replica: int, device: torch.device | str, dtype: torch.dtype
                    ) -> tuple[Task, nn.Module]:
    """``task`` moved to ``device``/``dtype`` and its module initialised for ``replica``
    (seed :func:`init_seed`)."""
    module = task.init_module(init_seed(replica)).to(device=device, dtype=dtype)
    return task.to(device, dtype), module
