"""Δm (the average relative change against single-task baselines) and AU/rAU (task dominance).

Δm% (Maninis et al. 2019; as in LibMTL): for every task i and each of its K_i metrics k,
    Δm = 100/T * sum_i 1/K_i * sum_k s_k (M_i,k - B_i,k) / B_i,k,
with s_k = +1 for higher-is-better metrics and -1 for lower-is-better ones.
**Positive Δm is better** than training every task alone.

AU (Yang et al., AAAI 2023): for every shared parameter element and task i, the exponentially
decaying average of the square of task i's share of the parameter's update,
AU_i <- beta AU_i + (1 - beta) u_i^2. rAU_i = AU_i / sum_j AU_j, averaged over the elements of
a layer (elements no task moved are left out). With a shared Adam denominator a task with
large gradients takes most of the update (rAU near 1 for it); AdaTask normalizes each task by
its own moments.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import torch
from torch import Tensor

from taskset_lab.mtl.kinds import HIGHER_IS_BETTER


def delta_m(method: Mapping[int, Mapping[str, float]], baseline: Mapping[int, Mapping[str, float]]) -> float:
    """Δm% of ``method`` against ``baseline``: ``{task: {metric: value}}`` for the same tasks
    (only metrics with a known direction count; ``loss`` does not)."""
    if set(method) != set(baseline) or not method:
        raise ValueError(f"Δm needs the same tasks in method {sorted(method)} and baseline {sorted(baseline)}")
    per_task = []
    for task, metrics in method.items():
        names = [m for m in metrics if m in HIGHER_IS_BETTER]
        if not names:
            raise ValueError(f"task {task} has no metric with a known direction: {sorted(metrics)}")
        terms = []
        for name in names:
            base = float(baseline[task][name])
            if base == 0:
                raise ValueError(f"task {task} baseline {name} is 0; the relative change is undefined")
            sign = 1.0 if HIGHER_IS_BETTER[name] else -1.0
            terms.append(sign * (float(metrics[name]) - base) / abs(base))
        per_task.append(sum(terms) / len(terms))
    return 100.0 * sum(per_task) / len(per_task)


def layer_name(param_name: str) -> str:
    """The layer of a parameter: its module path (``backbone.layers.0.weight`` -> ``backbone.layers.0``)."""
    return re.sub(r"\.(weight|bias)$", "", param_name)


class AUTracker:
    """AU per shared parameter and task, updated from each step's per-task update shares."""

    def __init__(self, named_params: Sequence[tuple[str, Tensor]], n_tasks: int, beta: float = 0.999):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.names = [n for n, _ in named_params]
        self.n_tasks, self.beta = int(n_tasks), float(beta)
        self.au = [torch.zeros((self.n_tasks, *p.shape), device=p.device) for _, p in named_params]
        self.steps = 0

    @torch.no_grad()
    def update(self, shares: Sequence[Sequence[Tensor | None]]) -> None:
        """``shares[i][t]``: task t's share of the update of the i-th tracked parameter."""
        if len(shares) != len(self.au):
            raise ValueError(f"got shares of {len(shares)} parameters, tracking {len(self.au)}")
        for au, per_task in zip(self.au, shares):
            u = torch.stack([s if s is not None else torch.zeros_like(au[0]) for s in per_task])
            au.mul_(self.beta).add_(u.to(au.dtype) ** 2, alpha=1 - self.beta)
        self.steps += 1

    def rau_per_layer(self) -> dict[str, list[float]]:
        """Layer -> rAU of each task (mean over the layer's elements that some task moved)."""
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        for name, au in zip(self.names, self.au):
            total = au.sum(0)
            moved = total > 0
            shares = (au[:, moved] / total[moved]).sum(1).double().cpu()
            layer = layer_name(name)
            sums[layer] = sums.get(layer, torch.zeros(self.n_tasks, dtype=torch.float64)) + shares
            counts[layer] = counts.get(layer, 0) + int(moved.sum())
        return {layer: [float(v) / counts[layer] if counts[layer] else math.nan for v in sums[layer]]
                for layer in sums}

    def au_per_layer(self) -> dict[str, list[float]]:
        """Layer -> each task's mean AU (absolute, for the record)."""
        out: dict[str, list[Tensor]] = {}
        for name, au in zip(self.names, self.au):
            out.setdefault(layer_name(name), []).append(au.flatten(1).double().cpu())
        return {layer: [float(v) for v in torch.cat(parts, 1).mean(1)] for layer, parts in out.items()}
