"""MTL algorithms: how the tasks' losses and gradients combine into one update.

Every step the LightningModule computes each task's gradient of the shared parameters
(``torch.autograd.grad`` per task). An algorithm then

* ``weights(losses, grads)``: gives each task a loss weight (EW 1; UW from learned
  log-variances; DWA from the tasks' loss ratios over the last two epochs; GradNorm from
  learned weights that equalize the weighted gradient norms);
* ``combine(weighted)``: may change the weighted per-task gradients (PCGrad projects out
  conflicting components).

The optimizer then receives the per-task gradients: a plain optimizer steps on their sum,
an AdaTask optimizer keeps state per task. Algorithm-owned parameters (UW's log-variances,
GradNorm's weights) are trained by the algorithm's own Adam (``weight_lr``), so they never
enter the model optimizer (AdaTask has no "task" for them).
Formulas follow the papers; constants as in LibMTL (DWA temperature 2, GradNorm alpha 1.5).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Grads = list[list[Tensor]]  # [task][shared param]


class MTLAlgorithm:
    """Equal weights, no gradient surgery; subclasses override what they change."""

    name = "EW"
    single_task = False  # True: the pipeline trains one model per task instead (STL)

    def setup(self, n_tasks: int, device: torch.device | str = "cpu") -> None:
        self.n_tasks = int(n_tasks)
        self.device = torch.device(device)
        self.last_weights = torch.ones(self.n_tasks)

    def weights(self, losses: Tensor, grads: Grads, step: int) -> Tensor:
        return torch.ones(self.n_tasks, device=losses.device)

    def combine(self, weighted: Grads) -> Grads:
        return weighted

    def on_epoch_end(self, mean_losses: Tensor) -> None:
        """Mean training loss of each task over the epoch that just ended."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class EW(MTLAlgorithm):
    """Joint training with equal weights (the sum of the task losses)."""


class STL(EW):
    """Single-task learning: every task trained alone (the reference of Δm)."""

    name = "STL"
    single_task = True


class UW(MTLAlgorithm):
    """Uncertainty weighting (Kendall et al. 2018): loss sum_i L_i / (2 exp(s_i)) + s_i / 2,
    s_i = log sigma_i^2 learned; the model sees weights 1 / (2 exp(s_i))."""

    name = "UW"

    def __init__(self, weight_lr: float = 1e-3):
        self.weight_lr = float(weight_lr)

    def setup(self, n_tasks: int, device: torch.device | str = "cpu") -> None:
        super().setup(n_tasks, device)
        self.log_vars = torch.zeros(n_tasks, device=self.device, requires_grad=True)
        self.opt = torch.optim.Adam([self.log_vars], lr=self.weight_lr)

    def weights(self, losses: Tensor, grads: Grads, step: int) -> Tensor:
        with torch.enable_grad():
            objective = (losses.detach() / (2 * self.log_vars.exp()) + self.log_vars / 2).sum()
            self.opt.zero_grad()
            objective.backward()
        w = (1 / (2 * self.log_vars.detach().exp())).clone()
        self.opt.step()
        return w

    def state_dict(self) -> dict:
        return {"log_vars": self.log_vars.detach().cpu(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.log_vars.copy_(state["log_vars"])
        self.opt.load_state_dict(state["opt"])


class DWA(MTLAlgorithm):
    """Dynamic weight average (Liu et al. 2019): w_i = T softmax_i(r_i / temperature) with
    r_i = L_i(e-1) / L_i(e-2), the ratio of task i's mean training losses over the last two
    epochs; equal weights for the first two epochs."""

    name = "DWA"

    def __init__(self, temperature: float = 2.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.history: list[Tensor] = []

    def setup(self, n_tasks: int, device: torch.device | str = "cpu") -> None:
        super().setup(n_tasks, device)
        self.history = []

    def on_epoch_end(self, mean_losses: Tensor) -> None:
        self.history.append(mean_losses.detach().cpu().double())

    def weights(self, losses: Tensor, grads: Grads, step: int) -> Tensor:
        if len(self.history) < 2:
            return torch.ones(self.n_tasks, device=losses.device)
        ratio = self.history[-1] / self.history[-2]
        return (self.n_tasks * F.softmax(ratio / self.temperature, dim=0)).to(losses.device, losses.dtype)

    def state_dict(self) -> dict:
        return {"history": [h.clone() for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])


class GradNorm(MTLAlgorithm):
    """GradNorm (Chen et al. 2018): weights w = T softmax(s) (sum fixed at T); s minimizes
    sum_i |G_i - mean(G) r_i^alpha| where G_i = ||w_i grad L_i|| over the shared parameters and
    r_i is task i's loss ratio L_i(t)/L_i(0) relative to the mean ratio (target held fixed)."""

    name = "GradNorm"

    def __init__(self, alpha: float = 1.5, weight_lr: float = 0.025):
        self.alpha, self.weight_lr = float(alpha), float(weight_lr)

    def setup(self, n_tasks: int, device: torch.device | str = "cpu") -> None:
        super().setup(n_tasks, device)
        self.scores = torch.zeros(n_tasks, device=self.device, requires_grad=True)
        self.opt = torch.optim.Adam([self.scores], lr=self.weight_lr)
        self.initial_losses: Tensor | None = None

    def weights(self, losses: Tensor, grads: Grads, step: int) -> Tensor:
        losses = losses.detach()
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        norms = torch.stack([torch.sqrt(sum((g.double() ** 2).sum() for g in task)) for task in grads]).float()
        with torch.enable_grad():
            w = self.n_tasks * F.softmax(self.scores, dim=0)
            g_norm = w * norms.to(w.device)
            ratio = losses / self.initial_losses.clamp_min(1e-12)
            target = (g_norm.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
            objective = (g_norm - target).abs().sum()
            self.opt.zero_grad()
            objective.backward()
        weights = w.detach().clone()
        self.opt.step()
        return weights

    def state_dict(self) -> dict:
        return {"scores": self.scores.detach().cpu(), "opt": self.opt.state_dict(),
                "initial_losses": self.initial_losses}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.scores.copy_(state["scores"])
        self.opt.load_state_dict(state["opt"])
        self.initial_losses = state["initial_losses"]


class PCGrad(MTLAlgorithm):
    """PCGrad (Yu et al. 2020): for each task i, for the other tasks j in random order, if
    g_i . g_j < 0 remove from g_i its component along g_j (the original g_j); equal weights."""

    name = "PCGrad"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def setup(self, n_tasks: int, device: torch.device | str = "cpu") -> None:
        super().setup(n_tasks, device)
        self.generator = torch.Generator().manual_seed(self.seed)

    def combine(self, weighted: Grads) -> Grads:
        return project_conflicts(weighted, self.generator)


def project_conflicts(grads: Grads, generator: torch.Generator | None = None) -> Grads:
    """PCGrad's projection on per-task gradient lists (flattened over the shared parameters)."""
    shapes = [g.shape for g in grads[0]]
    flat = [torch.cat([g.reshape(-1) for g in task]) for task in grads]
    out = []
    for i, gi in enumerate(flat):
        g = gi.clone()
        order = torch.randperm(len(flat), generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = torch.dot(g, flat[j])
            if dot < 0:
                g = g - dot / flat[j].pow(2).sum().clamp_min(1e-20) * flat[j]
        out.append(list(_unflatten(g, shapes)))
    return out


def _unflatten(flat: Tensor, shapes: Sequence[torch.Size]) -> list[Tensor]:
    parts, start = [], 0
    for shape in shapes:
        n = shape.numel()
        parts.append(flat[start:start + n].view(shape))
        start += n
    return parts


ALGORITHMS = {cls.name: cls for cls in (EW, STL, UW, DWA, GradNorm, PCGrad)}
