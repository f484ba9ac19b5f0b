"""Optimizers for multi-task steps, plain and AdaTask.

Every optimizer here takes *per-task* gradients of the shared parameters
(``step(task_grads=...)``) and moves each shared parameter by the sum of per-task steps:

* ``MTLAdam`` / ``MTLRMSprop`` / ``MTLAdagrad`` (``per_task=False``): the base optimizer on the
  summed gradient. The adaptive denominator is built from the sum of the task gradients, the
  (linear) numerator is kept per task, so the step equals the base optimizer's step while each
  task's share of it is known; that share is what AU measures for plain Adam.
* ``AdaTaskAdam`` / ``AdaTaskRMSprop`` / ``AdaTaskAdagrad`` (``per_task=True``, Yang et al.,
  AAAI 2023): one set of moment/accumulator state per task, fed by that task's gradient only;
  the parameter moves by the sum of the per-task adaptive steps, so a task with large
  gradients cannot shrink the other tasks' steps through a shared denominator.

Task-specific parameters (param groups with ``mtl_role: "task"``) get the base update on their
own ``.grad``. Groups without a role are shared. Called with no ``task_grads`` every shared
parameter's ``.grad`` is one task: then all six classes equal ``torch.optim.Adam`` /
``RMSprop`` / ``Adagrad`` exactly (same operations in the same order; tests check it bitwise).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

TaskGrads = Sequence[Sequence[Tensor | None]]  # [shared param][task] -> gradient or None


class TaskwiseOptimizer(torch.optim.Optimizer):
    """Shared machinery: roles of parameters, per-task gradient bookkeeping, update shares."""

    per_task: bool = False

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], n_tasks: int = 1,
                 record_task_updates: bool = False):
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        super().__init__(params, defaults)
        self.n_tasks = int(n_tasks)
        self.record_task_updates = record_task_updates
        # shared parameter -> each task's share of its last update (a step, sign included)
        self.task_updates: dict[Tensor, list[Tensor]] = {}

    def shared_params(self) -> list[Tensor]:
        return [p for g in self.param_groups if g.get("mtl_role", "shared") == "shared" for p in g["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, task_grads: TaskGrads | None = None) -> Any:
        """One update. ``task_grads[i][t]``: task t's gradient of the i-th shared parameter (in
        ``shared_params()`` order); None there counts as zero. Without it, ``.grad`` is one task."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        shared_index = {p: i for i, p in enumerate(self.shared_params())}
        if task_grads is not None and len(task_grads) != len(shared_index):
            raise ValueError(f"task_grads has {len(task_grads)} entries for {len(shared_index)} shared parameters")
        self.task_updates = {}
        for group in self.param_groups:
            shared = group.get("mtl_role", "shared") == "shared"
            for p in group["params"]:
                if shared and task_grads is not None:
                    grads = [g if g is not None else torch.zeros_like(p) for g in task_grads[shared_index[p]]]
                    if len(grads) != self.n_tasks:
                        raise ValueError(f"expected gradients of {self.n_tasks} tasks, got {len(grads)}")
                    if all(g is None for g in task_grads[shared_index[p]]):
                        continue
                elif p.grad is not None:
                    grads = [p.grad]
                else:
                    continue
                state = self.state[p]
                if not state:
                    self._init_state(state, p, len(grads) if not shared or task_grads is None else self.n_tasks,
                                     group)
                shares = self._update(p, grads, state, group, split=self.per_task and shared)
                if shared and self.record_task_updates:
                    self.task_updates[p] = shares
        return loss

    def _weight_decayed(self, p: Tensor, grads: list[Tensor], wd: float) -> list[Tensor]:
        """L2 weight decay as in the base optimizer, split evenly over the task gradients."""
        if wd == 0:
            return grads
        return [g.add(p, alpha=wd / len(grads)) for g in grads]

    def _init_state(self, state: dict, p: Tensor, n: int, group: dict) -> None:
        raise NotImplementedError

    def _update(self, p: Tensor, grads: list[Tensor], state: dict, group: dict, split: bool) -> list[Tensor]:
        raise NotImplementedError


def _slots(state: dict, n: int, names: Sequence[str], p: Tensor, fill: float = 0.0) -> None:
    for t in range(n):
        for name in names:
            state[f"{name}_{t}"] = torch.full_like(p, fill, memory_format=torch.preserve_format)


class MTLAdam(TaskwiseOptimizer):
    """Adam (Kingma & Ba) with per-task update shares; ``AdaTaskAdam`` splits the moments too."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, n_tasks: int = 1, record_task_updates: bool = False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"invalid Adam hyperparameters lr={lr} betas={tuple(betas)} eps={eps} "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay), n_tasks,
                         record_task_updates)

    def _init_state(self, state: dict, p: Tensor, n: int, group: dict) -> None:
        state["step"] = 0.0
        _slots(state, n, ["exp_avg"], p)
        # AdaTask: one second moment per task; plain: one from the summed gradient
        _slots(state, n if self.per_task else 1, ["exp_avg_sq"], p)

    def _update(self, p: Tensor, grads: list[Tensor], state: dict, group: dict, split: bool) -> list[Tensor]:
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        grads = self._weight_decayed(p, grads, group["weight_decay"])
        state["step"] += 1.0
        step = state["step"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        if not split:
            total = grads[0] if len(grads) == 1 else torch.stack(grads).sum(0)
            exp_avg_sq = state["exp_avg_sq_0"]
            exp_avg_sq.mul_(beta2).addcmul_(total, total, value=1 - beta2)
            shared_denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        shares = []
        for t, grad in enumerate(grads):
            exp_avg = state[f"exp_avg_{t}"]
            exp_avg.lerp_(grad, 1 - beta1)
            if split:
                exp_avg_sq = state[f"exp_avg_sq_{t}"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            else:
                denom = shared_denom
            if self.record_task_updates:
                shares.append(exp_avg / denom * (-step_size))
            p.addcdiv_(exp_avg, denom, value=-step_size)
        return shares


class AdaTaskAdam(MTLAdam):
    """AdaTask with Adam: per-task first and second moments for every shared parameter."""

    per_task = True


class MTLRMSprop(TaskwiseOptimizer):
    """RMSprop (torch's form: eps outside the root, optional momentum/centering) with
    per-task update shares; ``AdaTaskRMSprop`` keeps one square average per task."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, n_tasks: int = 1,
                 record_task_updates: bool = False):
        if lr < 0 or eps < 0 or weight_decay < 0 or momentum < 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"invalid RMSprop hyperparameters lr={lr} alpha={alpha} eps={eps} "
                             f"weight_decay={weight_decay} momentum={momentum}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered), n_tasks, record_task_updates)

    def _init_state(self, state: dict, p: Tensor, n: int, group: dict) -> None:
        state["step"] = 0.0
        k = n if self.per_task else 1
        _slots(state, k, ["square_avg"], p)
        if group["centered"]:
            _slots(state, k, ["grad_avg"], p)
        if group["momentum"] > 0:
            _slots(state, n, ["momentum_buffer"], p)

    def _avg(self, state: dict, t: int, grad: Tensor, group: dict) -> Tensor:
        alpha = group["alpha"]
        square_avg = state[f"square_avg_{t}"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            grad_avg = state[f"grad_avg_{t}"]
            grad_avg.lerp_(grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        return avg.add_(group["eps"])

    def _update(self, p: Tensor, grads: list[Tensor], state: dict, group: dict, split: bool) -> list[Tensor]:
        lr, momentum = group["lr"], group["momentum"]
        grads = self._weight_decayed(p, grads, group["weight_decay"])
        state["step"] += 1.0
        if not split:
            total = grads[0] if len(grads) == 1 else torch.stack(grads).sum(0)
            shared_avg = self._avg(state, 0, total, group)
        shares = []
        for t, grad in enumerate(grads):
            avg = self._avg(state, t, grad, group) if split else shared_avg
            if momentum > 0:
                buf = state[f"momentum_buffer_{t}"]
                buf.mul_(momentum).addcdiv_(grad, avg)
                if self.record_task_updates:
                    shares.append(buf * (-lr))
                p.add_(buf, alpha=-lr)
            else:
                if self.record_task_updates:
                    shares.append(grad / avg * (-lr))
                p.addcdiv_(grad, avg, value=-lr)
        return shares


class AdaTaskRMSprop(MTLRMSprop):
    """AdaTask with RMSprop: per-task square averages (and momentum buffers)."""

    per_task = True


class MTLAdagrad(TaskwiseOptimizer):
    """Adagrad with per-task update shares; ``AdaTaskAdagrad`` keeps one accumulator per task."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, n_tasks: int = 1,
                 record_task_updates: bool = False):
        if lr < 0 or lr_decay < 0 or weight_decay < 0 or initial_accumulator_value < 0 or eps < 0:
            raise ValueError(f"invalid Adagrad hyperparameters lr={lr} lr_decay={lr_decay} eps={eps} "
                             f"weight_decay={weight_decay} initial_accumulator_value={initial_accumulator_value}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value), n_tasks,
                         record_task_updates)

    def _init_state(self, state: dict, p: Tensor, n: int, group: dict) -> None:
        state["step"] = 0.0
        _slots(state, n if self.per_task else 1, ["sum"], p, fill=group["initial_accumulator_value"])

    def _update(self, p: Tensor, grads: list[Tensor], state: dict, group: dict, split: bool) -> list[Tensor]:
        grads = self._weight_decayed(p, grads, group["weight_decay"])
        state["step"] += 1.0
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        if not split:
            total = grads[0] if len(grads) == 1 else torch.stack(grads).sum(0)
            state["sum_0"].addcmul_(total, total, value=1)
            shared_std = state["sum_0"].sqrt().add_(group["eps"])
        shares = []
        for t, grad in enumerate(grads):
            if split:
                state[f"sum_{t}"].addcmul_(grad, grad, value=1)
                std = state[f"sum_{t}"].sqrt().add_(group["eps"])
            else:
                std = shared_std
            if self.record_task_updates:
                shares.append(grad / std * (-clr))
            p.addcdiv_(grad, std, value=-clr)
        return shares


class AdaTaskAdagrad(MTLAdagrad):
    """AdaTask with Adagrad: per-task squared-gradient accumulators."""

    per_task = True


# the optimizer behind each class, for naming the STL baseline (AdaTask with one task = base)
BASE_NAME = {MTLAdam: "adam", AdaTaskAdam: "adam", MTLRMSprop: "rmsprop", AdaTaskRMSprop: "rmsprop",
             MTLAdagrad: "adagrad", AdaTaskAdagrad: "adagrad"}
