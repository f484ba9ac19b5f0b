"""Evaluation and the run bookkeeping of one config (the one-config form of the engine's
schedule and divergence rule; see :mod:`taskset_lab.engine.population`)."""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch

from taskset_lab.engine.state import PopulationResult, divergence_bound, is_bad, mask_after_divergence
from taskset_lab.tasks.base import SPLITS, Batch, Task, eval_key


@torch.no_grad()
def evaluate_model(task: Task, model: Callable[..., torch.Tensor],
                   eval_sets: Mapping[str, Sequence[Batch]], config_id: int = 0,
                   replica: int = 0) -> dict[str, float]:
    """Mean eval-mode loss of ``model`` over each split's fixed batches (one host sync per call)."""
    means = torch.stack([torch.stack([task.eval_loss(model, b, eval_key(s, i), config_id, replica)
                                      for i, b in enumerate(batches)]).mean()
                         for s, batches in eval_sets.items()])
    return dict(zip(eval_sets.keys(), means.double().cpu().tolist()))


class RunTracker:
    """The evaluations and the divergence state of one config's run.

    ``record_eval(step, losses)`` at each evaluation step (the one at step 0 sets the bound),
    ``record_train_loss(step, loss)`` after each training loss (a device tensor: no host
    sync). ``stopped`` turns true at the first evaluation at or after a divergence, when the
    run may stop: every later evaluation is NaN in the result, as in the population engine.
    """

    def __init__(self, steps: Sequence[int], divergence_factor: float, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu"):
        self.steps = list(steps)
        self.divergence_factor = float(divergence_factor)
        self.dtype, self.device = dtype, device
        self.rows: list[list[float]] = []
        self.bound = torch.zeros((), dtype=dtype, device=device)
        self.dstep = torch.full((), -1, dtype=torch.long, device=device)
        self.stopped = False

    def _flag(self, step: int, loss: torch.Tensor) -> None:
        self.dstep = torch.where((self.dstep < 0) & is_bad(loss, self.bound), step, self.dstep)

    def record_train_loss(self, step: int, loss: torch.Tensor) -> None:
        self._flag(step, loss.to(self.dtype))

    def record_eval(self, step: int, losses: Mapping[str, float]) -> None:
        self.rows.append([float(losses[s]) for s in SPLITS])
        train = torch.tensor(float(losses["train"]), dtype=self.dtype, device=self.device)
        if step == 0:
            self.bound = divergence_bound(train, self.divergence_factor)
        self._flag(step, train)
        self.stopped = self.diverged_step is not None

    @property
    def diverged_step(self) -> int | None:
        d = int(self.dstep)
        return None if d < 0 else d

    def curve(self) -> list[dict[str, float]]:
        """One dict per evaluation step (``step`` and the four splits), NaN from the divergence on."""
        result = self.result(0.0)
        return [{"step": st, **{s: float(result.losses[s][0, i]) for s in SPLITS}}
                for i, st in enumerate(result.steps)]

    def result(self, seconds: float) -> PopulationResult:
        rows = self.rows + [[math.nan] * len(SPLITS)] * (len(self.steps) - len(self.rows))
        table = torch.tensor(rows, dtype=self.dtype)
        dstep_k = self.dstep.reshape(1).cpu()
        losses = mask_after_divergence({s: table[:, i].unsqueeze(0) for i, s in enumerate(SPLITS)},
                                       self.steps, dstep_k)
        return PopulationResult(steps=self.steps, losses=losses, diverged_step=dstep_k, seconds=seconds)
