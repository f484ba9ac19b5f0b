"""The population step under ``torch.compile`` (docs/design.md §Engine).

:class:`CompiledStep` runs :func:`taskset_lab.engine.step.population_step` (batched gradient,
optimizer update, divergence freeze) as one compiled function, the same function
:meth:`Population.step` runs eagerly. The step number and the hparams are tensor arguments,
so nothing recompiles per step; the compiled callable is cached per (prepared task and module,
family, K, dtype, device, total steps), so the chunks of one CURVES run compile once. Batches
and noise are fetched eagerly (they are Python-keyed) and passed in. Parameters and optimizer
state are updated in place (one pass per tensor). Any failure while compiling or running the
first compiled step falls back to the eager step for good, which gives the same curves.
Whether to compile at all is the driver's choice (engine/driver.py).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import types
from typing import TYPE_CHECKING, Callable, Mapping

import torch
from torch import Tensor

from taskset_lab.engine.state import PopulationState
from taskset_lab.engine.step import GradAndLoss, OptState, Params, population_step
from taskset_lab.optim.base import BatchedOptimizer, OptimizerFamily
from taskset_lab.tasks.base import Task

if TYPE_CHECKING:
    from taskset_lab.engine.population import Population

log = logging.getLogger(__name__)


def compile_available(device: torch.device, backend: str | Callable | None = None) -> bool:
    """Whether ``torch.compile`` with ``backend`` (default :func:`default_backend`) can be
    tried here. Inductor needs a C++ compiler on CPU, and it is not used on CPU while
    ``ATEN_CPU_CAPABILITY`` forces a kernel set: under ``default`` its CPU code does not build
    (it still emits ``at::vec`` code), and under ``avx2`` on an AVX-512 machine its compiled
    step gave adam1p losses 2% away from the eager step's in float64 (2026-12-07, torch
    2.14.1). Other backends build nothing."""
    if os.environ.get("TASKLAB_COMPILE", "1") == "0" or sys.platform.startswith("win"):
        return False
    if (default_backend() if backend is None else backend) != "inductor":
        return True
    if device.type == "cpu":
        import shutil

        if os.environ.get("ATEN_CPU_CAPABILITY", "").strip():
            return False

        return any(shutil.which(c) for c in ("g++", "c++", "clang++"))
    return device.type == "cuda"


def _step_core(grad_and_loss: GradAndLoss, family: OptimizerFamily, total_steps: int, params: Params,
               opt_state: OptState, task_state: dict[str, Tensor], diverged: Tensor, diverged_step: Tensor,
               bound: Tensor, hparams: dict[str, Tensor], coef: Mapping[str, Tensor] | None, batch: tuple,
               noise: dict[str, Tensor], step_t: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """:func:`population_step` with the step and hparams as tensors, the per-tensor update
    written back into ``params`` / ``opt_state`` (Inductor then updates them in place in one
    pass, where fresh outputs cost a write-allocate read of every new buffer and twice the
    memory). ``coef`` are an in-place family's coefficients of this step, computed outside
    the graph (else Inductor inlines their powers and schedules into the per-element loops).
    Returns ``(task_state, diverged, diverged_step)``."""
    opt = BatchedOptimizer(family, hparams, total_steps)
    out = population_step(grad_and_loss, opt, params, opt_state, task_state, diverged, diverged_step, bound,
                          batch, noise, step_t, coef=coef, in_place=True)
    return out.task_state, out.diverged, out.diverged_step

_CACHE: dict[tuple, tuple[object, Callable]] = {}
#: compiled steps kept (a CURVES run compiles once per task and chunk size)
CACHE_SIZE = 8
_TAGS = iter(range(1 << 62))


def _cache_key(pop: Population, backend: str) -> tuple:
    return (id(pop.task), id(pop.module), pop.family.name, pop.k, pop.dtype, str(pop.device), pop.total_steps,
            backend)


def default_backend() -> str:
    """``TASKLAB_COMPILE_BACKEND`` or Inductor (tests use ``aot_eager``: same tracing, no C++ build)."""
    return os.environ.get("TASKLAB_COMPILE_BACKEND", "inductor")


def _fresh_copy(fn: Callable) -> Callable:
    """A copy of ``fn`` with its own code object: dynamo keeps its compiled graphs (and its
    recompile limit of 8) per code object, so each cached population shape (or task) gets its
    own instead of evicting the others'."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{next(_TAGS)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__)


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message (for a one-line fallback warning)."""
    text = str(err)
    return text.splitlines()[0] if text else ""


class CompiledStep:
    """``Population.step`` through ``torch.compile``, with an eager fallback.

    ``step(state)`` returns the same :class:`PopulationState` as ``Population.step``, and
    like the eager step on a flat state it updates parameters and optimizer state in place
    (a flat state is first copied into tensors of its own, once); keep an old state with
    :meth:`PopulationState.copy`.
    ``compiled`` says whether the compiled path is in use; ``compile_seconds`` is the time
    the first (compiling) call took."""

    def __init__(self, population: Population, backend: str | Callable | None = None):
        self.pop = population
        self.backend = default_backend() if backend is None else backend
        self._key = _cache_key(population, str(self.backend))
        self.compiled = compile_available(population.device, self.backend)
        self.compile_seconds = 0.0
        self._fn: Callable | None = None
        self._first = True
        if self.compiled:
            hit = _CACHE.get(self._key)
            if hit is not None and hit[0] is population.task:
                self._fn, self._first = hit[1], False
            else:
                self._fn = torch.compile(_fresh_copy(_step_core), backend=self.backend, dynamic=False)
                _CACHE[self._key] = (population.task, self._fn)
                while len(_CACHE) > CACHE_SIZE:  # CURVES visits many tasks: keep the latest
                    _CACHE.pop(next(iter(_CACHE)))

    def _fallback(self, err: BaseException) -> None:
        log.warning("torch.compile of the population step failed (%s: %s); using the eager step",
                    type(err).__name__, _first_line(err))
        self.compiled, self._fn = False, None
        _CACHE.pop(self._key, None)

    def step(self, state: PopulationState) -> PopulationState:
        pop = self.pop
        if not self.compiled:
            return pop.step(state)
        # the compiled step updates contiguous tensors of its own in place: a flat state (views
        # of [K, P] buffers) is copied out once, so the graph is traced for one set of strides.
        # The first (compiling) call works on a copy, so a failure falls back from an intact state.
        given = state
        state = state.copy() if self._first else state.unflattened()
        s = state.step
        batch = pop.task.data.batch("train", s)
        noise = pop.config_noise(batch, True, s)
        step_t = torch.tensor(s, dtype=torch.long, device=pop.device)
        coef = pop.opt.next_coefficients(state.opt_state) if pop.family.has_in_place_update else None
        start = time.perf_counter()
        try:
            out = self._fn(pop.grad_and_loss, pop.family, pop.total_steps, state.params, state.opt_state, state.task_state, state.diverged,
                           state.diverged_step, state.bound, pop.opt.hparams, coef, batch, noise, step_t)
        except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
            if not self._first:
                raise
            self._fallback(err)
            return pop.step(given)
        if self._first:
            self.compile_seconds = time.perf_counter() - start
            self._first = False
            log.info("compiled the population step (K=%d) in %.1f s", pop.k, self.compile_seconds)
        task_state, diverged, dstep = out
        return PopulationState(s + 1, state.params, state.opt_state, task_state, diverged, dstep, state.bound)


def _batched_grad(task: Task, module: torch.nn.Module, constants: dict[str, Tensor], params: Params,
                  task_state: dict[str, Tensor], batch: tuple, noise: dict[str, Tensor]):
    """A population's ``grad_and_loss`` (``vmap(grad_and_value(loss))`` over the configs) as a
    free function of the task, its module and its constant buffers: compiled once, it serves
    every population of the task (other replicas, other perturbations) without recompiling."""
    def loss(p: Params, state: dict[str, Tensor], b: tuple, n: dict[str, Tensor]):
        return task.functional_loss(module, p, state, constants, b, n, True)
    return torch.func.vmap(torch.func.grad_and_value(loss, has_aux=True), in_dims=(0, 0, None, 0))(
        params, task_state, batch, noise)


_GRADS: dict[tuple, tuple[object, Callable]] = {}


class CompiledGrad:
    """``population.grad_and_loss`` through ``torch.compile``, called like it. The compiled
    function is cached per ``task`` (the task the population was built from: its replicas and
    perturbed populations share it; a fresh code object per task, as for
    :class:`CompiledStep`). Any failure while compiling or running falls back to the eager
    gradient for good."""

    def __init__(self, population: Population, task: Task, backend: str | Callable | None = None):
        self.pop = population
        self._eager = population.grad_and_loss
        backend = default_backend() if backend is None else backend
        self._fn: Callable | None = None
        if compile_available(population.device, backend):
            key = (id(task), population.k, population.dtype, str(population.device), str(backend))
            hit = _GRADS.get(key)
            if hit is None or hit[0] is not task:
                hit = _GRADS[key] = (task, torch.compile(_fresh_copy(_batched_grad), backend=backend, dynamic=False))
                while len(_GRADS) > CACHE_SIZE:
                    _GRADS.pop(next(iter(_GRADS)))
            self._fn = hit[1]

    @property
    def compiled(self) -> bool:
        return self._fn is not None

    def __call__(self, params: Params, task_state: dict[str, Tensor], batch: tuple, noise: dict[str, Tensor]):
        if self._fn is not None:
            try:
                return self._fn(self.pop.task, self.pop.module, self.pop.constants, params, task_state, batch, noise)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                log.warning("torch.compile of the batched gradient failed (%s: %s); using the eager one",
                            type(err).__name__, _first_line(err))
                self._fn = None
        return self._eager(params, task_state, batch, noise)


class CompiledUpdate:
    """A multi-tensor family's update (:meth:`OptimizerFamily.update_tensors`) through
    ``torch.compile``, called like it; set it as a :class:`BatchedOptimizer`'s
    ``multi_tensor_update`` (with :class:`CompiledGrad` for the gradient, instead of compiling
    the whole step: benchmarks/README.md §bench_meta). It compiles in 6-23 s per set of
    shapes on a CPU. Any failure while compiling or running falls back to the eager update
    for good (the update is pure: nothing is lost)."""

    def __init__(self, family: OptimizerFamily, device: torch.device | str = "cpu",
                 backend: str | Callable | None = None):
        self.family = family
        self.backend = default_backend() if backend is None else backend
        self.compiled = compile_available(torch.device(device), self.backend)
        self._fn = torch.compile(self._update, backend=self.backend, dynamic=False) if self.compiled else None

    def _update(self, *args, **kwargs):
        new_ps, new_states = self.family.update_tensors(*args, **kwargs)
        # fresh outputs: compiled graphs do not return views of their intermediates
        return [p.clone() for p in new_ps], [{k: v.clone() for k, v in st.items()} for st in new_states]

    def __call__(self, *args, **kwargs):
        if self._fn is not None:
            try:
                return self._fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                log.warning("torch.compile of the %s update failed (%s: %s); using the eager update",
                            self.family.name, type(err).__name__, _first_line(err))
                self.compiled, self._fn = False, None
        return self.family.update_tensors(*args, **kwargs)


_UPDATES: dict[tuple, CompiledUpdate] = {}


def compiled_update(family: OptimizerFamily, device: torch.device | str = "cpu") -> CompiledUpdate:
    """The one :class:`CompiledUpdate` of ``family`` on ``device`` (dynamo then keeps one
    compiled graph per set of tensor shapes)."""
    key = (family.name, str(device))
    if key not in _UPDATES:
        _UPDATES[key] = CompiledUpdate(family, device)
    return _UPDATES[key]
