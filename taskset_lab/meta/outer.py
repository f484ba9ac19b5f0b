"""The outer loop: meta-train a learned optimizer's weights θ by ES/PES over truncated unrolls.

Each outer step, every one of ``num_workers`` inner runs (:class:`~taskset_lab.meta.unroll.InnerRun`)
takes one truncation with fresh antithetic perturbations; the workers' estimates are combined
(pair-weighted mean), the gradient is clipped to ``clip_norm`` (global norm) and applied by
Adam. A run whose unroll is over, or whose population had a member diverge, is replaced at the
next step by a fresh run: a task drawn from the training tasks, its initialization the
episode's replica, its unroll length drawn log-uniformly from ``[min_unroll, max_unroll]``.

Every random choice is a pure function of counters (the seed, the outer step, the worker, the
episode), so the whole trajectory is fixed by the seed and the checkpoint need only hold
tensors and counters: θ, Adam's state, the step, the counters, the log rows and each
worker's run (its population state, ξ, its task and length). The checkpoint is written
atomically after every ``checkpoint_every`` steps; a killed run started again with the same
spec continues from the last one and follows the same outer trajectory as an uninterrupted
run (a test checks equality).

``compile`` (``auto``/``true``/``false``) runs the inner runs' batched gradient and learned
update through ``torch.compile`` (``InnerRun.compile``: about 15 s per task shape, then about
2-3x faster); ``auto`` compiles when the inner steps are estimated to take over two minutes eager.

A non-finite meta-gradient (or one with no valid pair) skips the update; it is counted and
logged. Diverged pairs are counted in ``diverged_pairs``, the runs they end in
``truncated_runs``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from taskset_lab.engine.driver import COMPILE_MODES, compile_mode, should_compile
from taskset_lab.errors import DataError
from taskset_lab.meta.estimators import Estimate, antithetic_estimate, combine, perturbations
from taskset_lab.meta.unroll import ESTIMATORS, OBJECTIVES, InnerRun
from taskset_lab.optim.learned import ARCHITECTURES, LearnedCheckpoint
from taskset_lab.tasks.base import Task

CHECKPOINT_FORMAT = "taskset_lab.meta_train"
#: a rough eager inner step (one population of 2·num_pairs members), for ``compile: auto``:
#: 8 and 29 ms for 32 members on the quickstart's two digits MLPs (1x32 relu, 2x64 tanh), one
#: thread; compiled 5 and 12 ms after 6 and 23 s of compiling
EAGER_SECONDS_PER_INNER_STEP = 0.02


@dataclass
class MetaSpec:
    """What a meta-training run is (every field has a default; the pipeline fills it from the
    config). ``sigma`` is the perturbations' standard deviation, ``truncation`` the steps per
    truncation, ``lr`` the learned optimizer's step multiplier (fixed), ``outer_lr`` Adam's; ``init`` is where θ starts: ``random`` (Haiku's initialization,
    ``init_seed``) or ``designed`` (:meth:`LearnedOptimizerFamily.designed_theta`)."""

    architecture: str = "small_fc_lopt"
    estimator: str = "pes"
    objective: str = "train"
    num_pairs: int = 8
    num_workers: int = 4
    sigma: float = 0.01
    truncation: int = 20
    min_unroll: int = 50
    max_unroll: int = 400
    outer_steps: int = 100
    outer_lr: float = 3e-3
    clip_norm: float = 1.0
    lr: float = 1e-3
    init: str = "random"
    init_seed: int = 0
    seed: int = 0
    checkpoint_every: int = 1
    divergence_factor: float = 3.0
    eval_batches: int = 1
    compile: str = "auto"

    def check(self) -> list[tuple[str, str]]:
        """Every problem as (field, problem)."""
        bad: list[tuple[str, str]] = []
        if self.architecture not in ARCHITECTURES:
            bad.append(("architecture", f"{self.architecture!r} is not one of {', '.join(ARCHITECTURES)}"))
        if self.init not in ("random", "designed"):
            bad.append(("init", f"{self.init!r} is not one of random, designed"))
        if self.estimator not in ESTIMATORS:
            bad.append(("estimator", f"{self.estimator!r} is not one of {', '.join(ESTIMATORS)}"))
        if self.objective not in OBJECTIVES:
            bad.append(("objective", f"{self.objective!r} is not one of {', '.join(OBJECTIVES)}"))
        for name in ("num_pairs", "num_workers", "truncation", "min_unroll", "outer_steps", "checkpoint_every",
                     "eval_batches"):
            if int(getattr(self, name)) < 1:
                bad.append((name, f"must be >= 1, got {getattr(self, name)}"))
        if self.max_unroll < self.min_unroll:
            bad.append(("max_unroll", f"must be >= min_unroll ({self.min_unroll}), got {self.max_unroll}"))
        if str(self.compile).strip().lower() not in COMPILE_MODES:
            bad.append(("compile", f"{self.compile!r} is not one of {', '.join(COMPILE_MODES)}"))
        for name in ("sigma", "outer_lr", "clip_norm", "lr", "divergence_factor"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                bad.append((name, f"must be a positive number, got {value}"))
        return bad


@dataclass
class WorkerSlot:
    """One worker: its current run and the counters that define the next one."""

    episode: int = -1
    task_index: int = -1
    unroll_length: int = 0
    run: InnerRun | None = None


@dataclass
class MetaState:
    """The outer state (what a checkpoint holds besides the workers' runs)."""

    theta: Tensor
    adam: dict
    step: int = 0
    skipped_steps: int = 0
    diverged_pairs: int = 0
    truncated_runs: int = 0
    finished_runs: int = 0
    inner_config_steps: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


def log_uniform_length(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer drawn log-uniformly from ``[low, high]``."""
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


class MetaTrainer:
    """Meta-train ``spec.architecture`` on ``tasks`` (module docstring). ``checkpoint_path``
    (optional) is where the outer state is saved and resumed from; ``on_step`` receives each
    step's log row."""

    def __init__(self, spec: MetaSpec, tasks: Sequence[Task], checkpoint_path: str | os.PathLike | None = None,
                 on_step: Callable[[dict[str, Any]], None] | None = None, dtype: torch.dtype = torch.float32):
        if not tasks:
            raise ValueError("meta-training needs at least one task")
        self.spec, self.tasks, self.dtype = spec, list(tasks), dtype
        self.family = ARCHITECTURES[spec.architecture]
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.on_step = on_step
        start = self.family.designed_theta() if spec.init == "designed" else self.family.init_theta(spec.init_seed)
        self.theta = torch.nn.Parameter(start.to(torch.float32))
        self.adam = torch.optim.Adam([self.theta], lr=spec.outer_lr)
        self.state = MetaState(theta=self.theta.data, adam=self.adam.state_dict())
        self.workers = [WorkerSlot() for _ in range(spec.num_workers)]
        inner_steps = spec.outer_steps * spec.num_workers * spec.truncation
        #: whether the inner runs' gradient and learned update are compiled (``spec.compile``)
        self.compiled = should_compile(compile_mode(spec.compile), torch.device("cpu"),
                                       inner_steps * EAGER_SECONDS_PER_INNER_STEP)
        self.resumed_from: int | None = None
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._load(self.checkpoint_path)

    # -- the runs ------------------------------------------------------------------------------
    def _start_run(self, w: int) -> None:
        slot = self.workers[w]
        slot.episode += 1
        rng = np.random.default_rng([self.spec.seed, 1, w, slot.episode])
        slot.task_index = int(rng.integers(len(self.tasks)))
        slot.unroll_length = log_uniform_length(rng, self.spec.min_unroll, self.spec.max_unroll)
        slot.run = self._make_run(w, slot)

    def _make_run(self, w: int, slot: WorkerSlot) -> InnerRun:
        s = self.spec
        return InnerRun(self.family, self.tasks[slot.task_index], slot.unroll_length, s.num_pairs, s.estimator,
                        s.objective, s.lr, replica=slot.episode * s.num_workers + w, dtype=self.dtype,
                        eval_batches=s.eval_batches, divergence_factor=s.divergence_factor,
                        compile=self.compiled)

    def _eps(self, w: int) -> Tensor:
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.spec.seed, 2, self.state.step, w])
                                                .integers(2 ** 62)))
        return perturbations(self.spec.num_pairs, self.family.num_weights, self.spec.sigma, gen, torch.float32)

    # -- one outer step ------------------------------------------------------------------------
    def outer_step(self) -> dict[str, Any]:
        """One truncation per worker, the combined estimate, the clipped Adam update; returns
        the step's log row."""
        s, st = self.spec, self.state
        start = time.perf_counter()
        estimates: list[Estimate] = []
        inner_steps = 0
        diverged_pairs = truncated = finished = 0
        theta = self.theta.detach()
        for w, slot in enumerate(self.workers):
            if slot.run is None or slot.run.done:
                self._start_run(w)
            run = slot.run
            assert run is not None
            tr = run.truncation(theta, self._eps(w), s.truncation)
            inner_steps += tr.steps * run.k
            estimates.append(antithetic_estimate(tr.xi.to(torch.float32), tr.loss_pos, tr.loss_neg, s.sigma,
                                                 tr.valid))
            diverged_pairs += tr.diverged_pairs
            if tr.diverged_pairs or bool(run.state.diverged.any()):
                truncated += 1
                slot.run = None  # truncated: a fresh run next step
            elif tr.ended:
                finished += 1
                slot.run = None
        est = combine(estimates)
        grad = est.grad.to(torch.float32)
        finite = est.pairs > 0 and bool(torch.isfinite(grad).all())
        grad_norm = float(grad.norm()) if finite else float("nan")
        if finite:
            scale = min(1.0, s.clip_norm / (grad_norm + 1e-12))
            self.theta.grad = grad * scale
            self.adam.step()
            self.adam.zero_grad(set_to_none=True)
        else:
            st.skipped_steps += 1
        st.step += 1
        st.diverged_pairs += diverged_pairs
        st.truncated_runs += truncated
        st.finished_runs += finished
        st.inner_config_steps += inner_steps
        seconds = time.perf_counter() - start
        row = {"step": st.step, "meta_loss": est.meta_loss, "grad_norm": grad_norm,
               "grad_stderr_norm": est.stderr_norm if finite else float("nan"),
               "pairs": est.pairs, "diverged_pairs": diverged_pairs, "skipped": int(not finite),
               "skipped_total": st.skipped_steps, "truncated_runs_total": st.truncated_runs,
               "finished_runs_total": st.finished_runs, "theta_norm": float(self.theta.detach().norm()),
               "inner_config_steps": inner_steps, "inner_steps_per_s": inner_steps / max(seconds, 1e-9),
               "seconds": seconds}
        st.rows.append(row)
        return row

    def run(self) -> MetaState:
        """Outer steps until ``spec.outer_steps``, checkpointing as the spec says."""
        while self.state.step < self.spec.outer_steps:
            row = self.outer_step()
            if self.checkpoint_path is not None and (self.state.step % self.spec.checkpoint_every == 0
                                                     or self.state.step == self.spec.outer_steps):
                self.save(self.checkpoint_path)
            if self.on_step is not None:
                self.on_step(row)
        return self.state

    def result(self, meta: dict[str, Any] | None = None) -> LearnedCheckpoint:
        """The meta-trained optimizer as a checkpoint."""
        return LearnedCheckpoint(self.spec.architecture, self.theta.detach().to(torch.float32).clone(),
                                 self.spec.lr, dict(meta or {}, spec=asdict(self.spec), outer_steps=self.state.step))

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the whole outer state atomically."""
        from taskset_lab.files import atomic_path

        st = self.state
        payload = {"format": CHECKPOINT_FORMAT, "spec": asdict(self.spec), "theta": self.theta.detach().clone(),
                   "adam": self.adam.state_dict(),
                   "counters": {k: getattr(st, k) for k in ("step", "skipped_steps", "diverged_pairs",
                                                            "truncated_runs", "finished_runs",
                                                            "inner_config_steps")},
                   "rows": st.rows,
                   "workers": [{"episode": w.episode, "task_index": w.task_index, "unroll_length": w.unroll_length,
                                "run": None if w.run is None else w.run.state_dict()} for w in self.workers]}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def _load(self, path: Path) -> None:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the same user error
            raise DataError(f"meta-training checkpoint {path}: unreadable ({type(exc).__name__}); "
                            f"remove it to start over") from None
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise DataError(f"meta-training checkpoint {path}: not a META_TRAIN checkpoint")
        if saved["spec"] != asdict(self.spec):
            changed = sorted(k for k, v in asdict(self.spec).items() if saved["spec"].get(k) != v)
            raise DataError(f"meta-training checkpoint {path} was written with other settings ({', '.join(changed)}); "
                            f"use another output folder or the same settings")
        with torch.no_grad():
            self.theta.copy_(saved["theta"])
        self.adam.load_state_dict(saved["adam"])
        for k, v in saved["counters"].items():
            setattr(self.state, k, v)
        self.state.rows = list(saved["rows"])
        for w, (slot, rec) in enumerate(zip(self.workers, saved["workers"])):
            slot.episode, slot.task_index, slot.unroll_length = rec["episode"], rec["task_index"], rec["unroll_length"]
            if rec["run"] is not None:
                slot.run = self._make_run(w, slot)
                slot.run.load_state_dict(rec["run"])
        self.resumed_from = self.state.step


__all__ = ["CHECKPOINT_FORMAT", "MetaSpec", "MetaState", "MetaTrainer", "log_uniform_length"]
