"""Evaluation of one model on fixed eval batches (the one-config form)."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from taskset_lab.tasks.base import Batch, Task


@torch.no_grad()
def evaluate_model(task: Task, model: Callable[..., torch.Tensor],
                   eval_sets: Mapping[str, Sequence[Batch]]) -> dict[str, float]:
    """Mean loss of ``model`` over each split's fixed batches (one host sync per call)."""
    means = torch.stack([torch.stack([task.forward_loss(model, b) for b in batches]).mean()
                         for batches in eval_sets.values()])
    return dict(zip(eval_sets.keys(), means.double().cpu().tolist()))
