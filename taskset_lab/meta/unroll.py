"""Truncated unrolls of one inner task on the population engine, for ES and PES.

An :class:`InnerRun` trains one task with a :class:`~taskset_lab.engine.Population` whose
members are the perturbed optimizers: member i steps with weights θ+ε_i, member N+i with
θ−ε_i (and, for antithetic ES, member 2N with θ itself: the run's shared trajectory, which
every member restarts from at each truncation). Each member's weights are its
"hyperparameters" (``BatchedOptimizer`` with ``theta`` ``[K, D]``), so the inner step is the
engine's own step: the vmapped gradient, the learned update vmapped over members, the
divergence rule and freeze.

Meta-objectives (per member, divided by the run's initial loss so tasks of different scales
weigh alike): ``train``, the mean minibatch training loss over the truncation's steps;
``valid``, the ``valid_inner`` loss at the truncation's end (fixed evaluation batches).

A member that diverges (the engine's rule: a non-finite loss or one above the divergence
bound) invalidates its pair for this truncation; the run is then ended (truncated), and the
caller counts it. Nothing about a diverged member is averaged in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from taskset_lab.engine import Population
from taskset_lab.engine.compiled import CompiledGrad, compiled_update
from taskset_lab.engine.state import PopulationState
from taskset_lab.optim.base import BatchedOptimizer
from taskset_lab.optim.learned import LearnedOptimizerFamily
from taskset_lab.tasks.base import Task

ESTIMATORS = ("pes", "es")
OBJECTIVES = ("train", "valid")


@dataclass
class Truncation:
    """What one truncation gives: the pairs' meta-losses (``[N]`` each), which pairs are
    valid, the ξ to weigh them with (``[N, D]``), the inner steps taken and whether the run
    ended (its unroll is over, or a member diverged)."""

    loss_pos: Tensor
    loss_neg: Tensor
    valid: Tensor
    xi: Tensor
    steps: int
    ended: bool
    diverged_pairs: int


@dataclass
class InnerRun:
    """One inner task trained by the perturbed population for ``unroll_length`` steps, one
    truncation at a time (module docstring). ``state`` and ``xi`` are the run's whole
    state (with ``l0``): what an outer checkpoint saves."""

    family: LearnedOptimizerFamily
    task: Task
    unroll_length: int
    num_pairs: int
    estimator: str = "pes"
    objective: str = "train"
    lr: float = 1e-3
    replica: int = 0
    dtype: torch.dtype = torch.float32
    eval_batches: int = 1
    divergence_factor: float = 3.0
    #: run the batched gradient and the learned update through ``torch.compile``
    #: (:class:`~taskset_lab.engine.compiled.CompiledGrad`, :func:`~taskset_lab.engine.compiled.compiled_update`;
    #: shared by every run of the same task and family, so each compiles once)
    compile: bool = False
    pop: Population = field(init=False)
    state: PopulationState = field(init=False)
    xi: Tensor = field(init=False)
    l0: Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        k = 2 * self.num_pairs + (1 if self.estimator == "es" else 0)
        theta0 = self.family.init_theta(0).tolist()
        self.pop = Population(self.task, self.family, [{"lr": self.lr, "theta": theta0}] * k, self.unroll_length,
                              config_ids=list(range(k)), replica=self.replica, eval_batches=self.eval_batches,
                              dtype=self.dtype, divergence_factor=self.divergence_factor)
        self._losses: Tensor | None = None
        self._grad = engine_grad = CompiledGrad(self.pop, self.task) if self.compile else self.pop.grad_and_loss
        self._update = compiled_update(self.family) if self.compile else None

        def capture(*args):  # the engine's gradient, keeping each step's minibatch losses
            grads, (values, new_state) = engine_grad(*args)
            self._losses = values.detach()
            return grads, (values, new_state)

        self.pop.grad_and_loss = capture
        values, self.state = self.pop.evaluate(self.pop.init(flat=False))
        self.l0 = values[0].detach().clone()  # every member starts at the same point: [4] split losses
        self.xi = torch.zeros(self.num_pairs, self.family.num_weights, dtype=self.dtype)

    @property
    def k(self) -> int:
        return self.pop.k

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def done(self) -> bool:
        return self.state.step >= self.unroll_length

    def _set_weights(self, theta: Tensor, eps: Tensor) -> None:
        rows = [theta + eps, theta - eps] + ([theta.unsqueeze(0)] if self.estimator == "es" else [])
        weights = torch.cat(rows).to(self.dtype)
        self.pop.opt = BatchedOptimizer(self.family, {"lr": torch.full((self.k,), self.lr, dtype=self.dtype),
                                                      "theta": weights}, self.unroll_length)
        self.pop.opt.multi_tensor_update = self._update

    def _restart_from_center(self) -> None:
        """Antithetic ES: every member continues from the shared trajectory (member 2N)."""
        c = self.k - 1
        st = self.state
        for n, p in st.params.items():
            st.params[n] = p[c:c + 1].expand_as(p).clone()
        for n, per in st.opt_state.items():
            st.opt_state[n] = {key: (v if v.dim() == 0 else v[c:c + 1].expand_as(v).clone()) for key, v in per.items()}
        for n, v in st.task_state.items():
            st.task_state[n] = v[c:c + 1].expand_as(v).clone()

    def truncation(self, theta: Tensor, eps: Tensor, length: int) -> Truncation:
        """Run ``min(length, steps left)`` inner steps with the members at θ±ε (``eps``
        ``[N, D]``), and return the pairs' meta-losses (module docstring)."""
        n = self.num_pairs
        if self.estimator == "pes":
            self.xi = self.xi + eps.to(self.dtype)
            xi = self.xi
        else:
            self._restart_from_center()
            xi = eps.to(self.dtype)
        self._set_weights(theta.to(self.dtype), eps.to(self.dtype))
        steps = min(int(length), self.unroll_length - self.state.step)
        total = torch.zeros(self.k, dtype=self.dtype)
        with torch.no_grad():
            for _ in range(steps):
                self.state = self.pop.step(self.state)
                total += torch.where(self.state.diverged, torch.zeros_like(total), self._losses)
            if self.objective == "train":
                meta = total / max(steps, 1) / self.l0[0]
            else:
                values, self.state = self.pop.evaluate(self.state)
                meta = values[:, 1] / self.l0[1]
        bad = self.state.diverged
        valid = ~bad[:n] & ~bad[n:2 * n]
        meta = torch.where(bad, torch.full_like(meta, float("nan")), meta)
        diverged_pairs = int((~valid).sum())
        ended = self.done or bool(bad.any())
        return Truncation(meta[:n].clone(), meta[n:2 * n].clone(), valid, xi.clone(), steps, ended, diverged_pairs)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        st = self.state
        return {"step": st.step, "params": st.params, "opt_state": st.opt_state, "task_state": st.task_state,
                "diverged": st.diverged, "diverged_step": st.diverged_step, "bound": st.bound,
                "xi": self.xi, "l0": self.l0}

    def load_state_dict(self, saved: dict) -> None:
        self.state = PopulationState(step=int(saved["step"]), params=saved["params"], opt_state=saved["opt_state"],
                                     task_state=saved["task_state"], diverged=saved["diverged"],
                                     diverged_step=saved["diverged_step"], bound=saved["bound"])
        self.xi, self.l0 = saved["xi"], saved["l0"]


__all__ = ["ESTIMATORS", "InnerRun", "OBJECTIVES", "Truncation"]
