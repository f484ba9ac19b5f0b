"""The population step under ``torch.compile``, the allocator settings and the choice of K
(docs/design.md §Engine).

* :class:`CompiledStep` runs one :meth:`Population.step` (batched gradient, optimizer
  update, divergence freeze) as one compiled function. The step number and the hparams are
  tensor arguments, so nothing recompiles per step; the compiled callable is cached per
  (prepared task and module, family, K, dtype, device, total steps), so the chunks of one
  CURVES run compile once. Batches and noise are fetched eagerly (they are Python-keyed) and
  passed in. Parameters and optimizer state are updated in place (one pass per tensor). Any
  failure while compiling or running the first compiled step falls back to the eager step for
  good, which gives the same curves (the compiled function is the same math).
* :func:`apply_allocator_settings` sets glibc's ``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD``
  through ``mallopt`` so large per-step temporaries stay in the heap instead of being mapped
  and returned to the OS every step (no-op off glibc).
* :func:`probe_population_size` times a few steps at a few K and picks the K with the best
  config-steps per second (within the memory bound).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from taskset_lab.engine.state import PopulationState, is_bad, where_k

log = logging.getLogger(__name__)

#: the compile modes ``learner.compile`` accepts
COMPILE_MODES = ("auto", "true", "false")
#: ``auto`` compiles only when the eager run is estimated to take longer than this many
#: seconds: on the 2-core CPU box compiling one step costs 15-60 s (measured, see
#: benchmarks/README.md) and saves at most about half of the eager time.
COMPILE_PAYS_AFTER_S = 120.0
#: the population sizes the K probe tries (capped by the number of configs and memory)
PROBE_KS = (8, 16, 32, 64, 128, 256, 512)
#: steps timed per K in the probe (after one warm-up step)
PROBE_STEPS = 3
#: runs shorter than this take the memory bound's K unprobed: the probe (about
#: 4 x len(PROBE_KS) steps) would cost more than a better K saves (quickstart: 100 steps)
PROBE_MIN_STEPS = 200


# ------------------------------------------------------------------ allocator


_ALLOCATOR_APPLIED: bool | None = None
#: glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: 1 GiB: temporaries below this come from the heap and the heap is not trimmed below it
ALLOCATOR_THRESHOLD = 1 << 30


def apply_allocator_settings(enable: bool = True, threshold: int = ALLOCATOR_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds (``mallopt``) once per process.

    Without this, glibc maps every temporary above its dynamic mmap threshold fresh and
    unmaps it when freed: at K >= 64 a population step then spends a third of its time in
    page faults (system time). Respects ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
    when the user set them, and ``TASKLAB_MALLOPT=0`` turns it off. Returns whether the
    settings are in effect; a no-op (``False``) off Linux/glibc."""
    global _ALLOCATOR_APPLIED
    if not enable or os.environ.get("TASKLAB_MALLOPT", "1") == "0":
        return False
    if _ALLOCATOR_APPLIED is not None:
        return _ALLOCATOR_APPLIED
    _ALLOCATOR_APPLIED = False
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        _ALLOCATOR_APPLIED = True
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1 and mallopt(M_TRIM_THRESHOLD, int(threshold)) == 1
    _ALLOCATOR_APPLIED = bool(ok)
    log.debug("mallopt(M_MMAP_THRESHOLD/M_TRIM_THRESHOLD=%d): %s", threshold, ok)
    return _ALLOCATOR_APPLIED


# ------------------------------------------------------------------ compiled step


def compile_mode(value: Any) -> str:
    """Normalise ``learner.compile`` (bool or ``auto``/``true``/``false``)."""
    from taskset_lab.errors import ConfigError

    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in COMPILE_MODES:
        raise ConfigError("learner.compile", f"must be one of {COMPILE_MODES} or a bool, got {value!r}")
    return text


def compile_available(device: torch.device) -> bool:
    """Whether ``torch.compile`` can be tried here (Inductor needs a C++ compiler on CPU)."""
    if os.environ.get("TASKLAB_COMPILE", "1") == "0" or sys.platform.startswith("win"):
        return False
    if device.type == "cpu":
        import shutil

        return any(shutil.which(c) for c in ("g++", "c++", "clang++"))
    return device.type == "cuda"


def _step_core(pop: Any, params: dict[str, Tensor], opt_state: dict, task_state: dict[str, Tensor],
               diverged: Tensor, diverged_step: Tensor, bound: Tensor, hparams: dict[str, Tensor],
               coef: dict[str, Tensor] | None, batch: tuple, noise: dict[str, Tensor], step_t: Tensor) -> tuple:
    """The math of :meth:`Population.step` with the step and hparams as tensors; ``coef``
    are an in-place family's coefficients of this step, computed outside the graph (else
    Inductor inlines their powers and schedules into the per-element loops).

    Parameters and optimizer state are written back into ``params`` / ``opt_state`` (the
    freeze folded into the same write): Inductor then updates them in place in one pass,
    where fresh outputs cost a write-allocate read of every new buffer and twice the memory.
    Returns ``(task_state, diverged, diverged_step)``."""
    from taskset_lab.optim.base import BatchedOptimizer

    grads, (values, new_task_state) = pop._grad(params, task_state, batch, noise)
    bad = is_bad(values.detach(), bound)
    dstep = torch.where(bad & ~diverged, step_t, diverged_step)
    diverged = diverged | bad
    with torch.no_grad():
        opt = BatchedOptimizer(pop.family, hparams, pop.total_steps)
        new_params, new_opt = opt.step(params, grads, opt_state, coef=coef)
        for n, p in params.items():
            p.copy_(where_k(diverged, p, new_params[n]))
        for n, st in new_opt.items():
            for key, v in st.items():
                opt_state[n][key].copy_(where_k(diverged, opt_state[n][key], v))
        out_task = {n: where_k(diverged, task_state[n], v) for n, v in new_task_state.items()}
    return out_task, diverged, dstep


_CACHE: dict[tuple, tuple[Any, Callable]] = {}
#: compiled steps kept (a CURVES run compiles once per task and chunk size)
CACHE_SIZE = 8
_TAGS = iter(range(1 << 62))


def _cache_key(pop: Any, backend: str) -> tuple:
    return (id(pop.task), id(pop.module), pop.family.name, pop.k, pop.dtype, str(pop.device), pop.total_steps,
            backend)


def default_backend() -> str:
    """``TASKLAB_COMPILE_BACKEND`` or Inductor (tests use ``aot_eager``: same tracing, no C++ build)."""
    return os.environ.get("TASKLAB_COMPILE_BACKEND", "inductor")


def _fresh_step_core(tag: int) -> Callable:
    """A copy of :func:`_step_core` with its own code object: dynamo keeps its compiled
    graphs (and its recompile limit of 8) per code object, so each cached population shape
    gets its own instead of evicting the others'."""
    import types

    code = _step_core.__code__.replace(co_name=f"_step_core_{tag}")
    return types.FunctionType(code, _step_core.__globals__, code.co_name, _step_core.__defaults__)


class CompiledStep:
    """``Population.step`` through ``torch.compile``, with an eager fallback.

    ``step(state)`` returns the same :class:`PopulationState` as ``Population.step``, and
    like the eager step on a flat state it updates parameters and optimizer state in place
    (a flat state is first copied into tensors of its own, once); keep an old state with
    :meth:`PopulationState.copy`.
    ``compiled`` says whether the compiled path is in use; ``compile_seconds`` is the time
    the first (compiling) call took."""

    def __init__(self, population: Any, backend: str | Callable | None = None):
        self.pop = population
        self.backend = default_backend() if backend is None else backend
        self._key = _cache_key(population, str(self.backend))
        self.compiled = compile_available(population.device) or self.backend != "inductor"
        self.compile_seconds = 0.0
        self._fn: Callable | None = None
        self._first = True
        if self.compiled:
            hit = _CACHE.get(self._key)
            if hit is not None and hit[0] is population.task:
                self._fn, self._first = hit[1], False
            else:
                self._fn = torch.compile(_fresh_step_core(next(_TAGS)), backend=self.backend, dynamic=False)
                _CACHE[self._key] = (population.task, self._fn)
                while len(_CACHE) > CACHE_SIZE:  # CURVES visits many tasks: keep the latest
                    _CACHE.pop(next(iter(_CACHE)))

    def _fallback(self, err: BaseException) -> None:
        log.warning("torch.compile of the population step failed (%s: %s); using the eager step",
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        self.compiled, self._fn = False, None
        _CACHE.pop(self._key, None)

    def step(self, state: Any) -> Any:

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
        noise = pop._stacked_noise(batch, True, s)
        step_t = torch.tensor(s, dtype=torch.long, device=pop.device)
        coef = pop.opt.next_coefficients(state.opt_state) if pop.family.fused else None
        start = time.perf_counter()
        try:
            out = self._fn(pop, state.params, state.opt_state, state.task_state, state.diverged,
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


def should_compile(mode: str, device: torch.device, eager_seconds_estimate: float) -> bool:
    """``true``/``false`` as given; ``auto`` compiles when the platform allows and the eager
    run is estimated to last longer than :data:`COMPILE_PAYS_AFTER_S` (compiling costs tens of
    seconds on a CPU and at best halves the step time, so short runs are faster eager)."""
    if mode == "false" or not compile_available(device):
        return False
    if mode == "true":
        return True
    return eager_seconds_estimate > COMPILE_PAYS_AFTER_S


# ------------------------------------------------------------------ automatic K


def probe_population_size(make_population: Callable[[int], Any], num_configs: int, memory_cap: int,
                          ks: Sequence[int] = PROBE_KS, steps: int = PROBE_STEPS,
                          need_time: bool = True) -> tuple[int, float]:
    """Pick K: time ``steps`` eager steps (after one warm-up) of ``make_population(k)`` for
    each candidate ``k <= min(num_configs, memory_cap)`` and return ``(best k, its seconds
    per step)``; with one candidate and ``need_time=False`` nothing is timed. Stops growing
    K once the rate falls below 90% of the best so far (larger K only costs memory from
    there). The probe's steps are thrown away."""
    cap = max(1, min(int(num_configs), int(memory_cap)))
    candidates = sorted({min(k, cap) for k in ks if k <= cap} | ({cap} if cap < max(ks) else set()))
    if not candidates:
        candidates = [cap]
    best_k, best_rate, best_step_s = candidates[0], -1.0, 0.0
    if len(candidates) == 1 and not need_time:
        return best_k, 0.0
    for k in candidates:
        pop = make_population(k)
        # no evaluation first: the zero bound freezes every config, which costs the same work
        state = pop.step(pop.init())  # warm-up: allocations, kernel choice
        start = time.perf_counter()
        for _ in range(steps):
            state = pop.step(state)
        float(state.diverged_step.sum())  # wait for the device
        per_step = (time.perf_counter() - start) / steps
        rate = k / per_step
        log.debug("K probe: K=%d %.0f config-steps/s", k, rate)
        if rate > best_rate:
            best_k, best_rate, best_step_s = k, rate, per_step
        elif rate < 0.9 * best_rate:
            break
    return best_k, best_step_s
