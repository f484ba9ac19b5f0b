"""The driver: :func:`train_population` trains any number of configs of one task through
:class:`Population`, in chunks (docs/design.md §Engine).

* Chunks: at most ``max_chunk`` configs at once, by default as many as fit in the memory
  budget (:func:`estimate_config_bytes`, :func:`auto_chunk`), or the K of the best
  config-steps per second within it (:func:`probe_population_size` times a few eager steps
  at a few K).
* Compile policy (:func:`compile_mode`, :func:`should_compile`): ``learner.compile`` is
  ``true``, ``false`` or ``auto`` (compile when the run is long enough to pay for it);
  compiled chunks run :class:`~taskset_lab.engine.compiled.CompiledStep`.
* Process settings are not the driver's to change: :func:`apply_allocator_settings` (glibc's
  ``mallopt``, so large per-step temporaries stay in the heap) is an explicit opt-in that
  the ``tasklab`` command and the benchmarks take.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from taskset_lab.engine.compiled import CompiledStep, compile_available
from taskset_lab.engine.population import Population
from taskset_lab.engine.state import (DEFAULT_DIVERGENCE_FACTOR, PopulationResult, checked_family, eval_steps,
                                      mask_after_divergence, prepare_replica)
from taskset_lab.optim.base import OptimizerFamily
from taskset_lab.tasks.base import SPLITS, Task
from taskset_lab.tasks.context import StepContext, step_context

log = logging.getLogger(__name__)

#: the CPU memory budget when none is given and the free memory cannot be read
DEFAULT_CPU_BUDGET = 4 << 30

Progress = Callable[[int], None]

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



# ------------------------------------------------------------------ compile policy


def compile_mode(value: Any) -> str:
    """Normalise ``learner.compile`` (bool or ``auto``/``true``/``false``)."""
    from taskset_lab.errors import ConfigError

    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in COMPILE_MODES:
        raise ConfigError("learner.compile", f"must be one of {COMPILE_MODES} or a bool, got {value!r}")
    return text



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


def probe_population_size(make_population: Callable[[int], Population], num_configs: int, memory_cap: int,
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



# ------------------------------------------------------------------ memory / chunking


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return DEFAULT_CPU_BUDGET


def default_memory_budget(device: torch.device | str) -> int:
    """Half of the free memory of ``device`` (CPU: of the available RAM)."""
    return _available_bytes(torch.device(device)) // 2


def estimate_config_bytes(task: Task, module: nn.Module, num_state: int,
                          dtype: torch.dtype, eval_batches: int = 1) -> int:
    """A rough per-config memory estimate: parameters x (params, grads, new params,
    optimizer state, kept copies) plus 4x the summed outputs of every submodule on one
    training batch (activations kept for the backward pass). Meant for chunking, not
    accounting: pass ``max_chunk`` when the estimate is off."""
    elem = torch.empty((), dtype=dtype).element_size()
    n_params = sum(p.numel() for p in module.parameters())
    param_bytes = n_params * elem * (4 + 2 * num_state)
    outputs: list[int] = []

    def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            outputs.append(out.numel())

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        # a probe pass: draws nothing for real and leaves task state (BatchNorm statistics) alone
        with torch.no_grad(), step_context(StepContext(train=True, probe=True)):
            task.forward_loss(module, task.data.batch("train", 0))
    finally:
        for h in handles:
            h.remove()
    return int(param_bytes + 4 * sum(outputs) * elem)


def auto_chunk(num_configs: int, per_config_bytes: int, memory_budget: int) -> int:
    """How many configs fit in ``memory_budget`` (at least 1, at most ``num_configs``)."""
    return max(1, min(num_configs, int(memory_budget // max(per_config_bytes, 1))))


# ------------------------------------------------------------------ the driver


def _run_chunk(population: Population, steps: list[int], progress: Progress | None,
               compiled: bool = False) -> tuple[Tensor, Tensor]:
    """Train one population over the schedule; returns ``(evals [K, n_evals, 4] on CPU,
    diverged_step [K])``."""
    k = population.k
    state = population.init()
    step_fn = CompiledStep(population).step if compiled else population.step
    evals: list[Tensor] = []
    eval_set = set(steps)
    last_reported = 0
    for s in range(population.total_steps):
        if s in eval_set:
            values, state = population.evaluate(state)
            evals.append(values)
            if progress is not None and s > last_reported:
                progress(k * (s - last_reported))
                last_reported = s
        state = step_fn(state)
    values, state = population.evaluate(state)
    evals.append(values)
    if progress is not None:
        progress(k * (population.total_steps - last_reported))
    return torch.stack(evals, dim=1).cpu(), state.diverged_step.cpu()


def train_population(task: Task, family: OptimizerFamily | str, configs: Sequence[Mapping[str, Any]],
                     total_steps: int, eval_every: int, eval_batches: int = 4, replica: int = 0,
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                     divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR,
                     max_chunk: int | None = None, memory_budget: int | None = None,
                     progress: Progress | None = None,
                     config_ids: Sequence[int] | None = None,
                     compile: str | bool = "auto") -> PopulationResult:
    """Train ``configs`` (hparam dicts of ``family``) on ``task`` as one population.

    Configs are split into chunks of at most ``max_chunk`` (default: as many as fit in
    ``memory_budget`` bytes by :func:`estimate_config_bytes`; default budget: half the free
    memory of ``device``); results are concatenated in config order. ``progress`` is called
    with the number of config-steps done since its last call. ``config_ids`` (default
    ``0..K-1``) key each config's randomness (see :class:`Population`).
    Without ``max_chunk`` the chunk size is picked by a short timing probe within the memory
    bound; ``compile`` (``auto``/``true``/``false``) runs the step through ``torch.compile``
    (engine/compiled.py; ``auto``: only when the run is long enough to pay for compiling).
    """
    family = checked_family(family, configs, eval_batches, "train_population")
    start = time.perf_counter()
    steps = eval_steps(int(total_steps), int(eval_every))
    device = torch.device(device)
    task, module = prepare_replica(task, replica, device, dtype)
    k = len(configs)
    if max_chunk is None:
        budget = default_memory_budget(device) if memory_budget is None else int(memory_budget)
        per_config = estimate_config_bytes(task, module, family.state_elements, dtype)
        chunk = auto_chunk(k, per_config, budget)
    else:
        chunk = max(1, int(max_chunk))
    ids = list(range(k)) if config_ids is None else [int(c) for c in config_ids]
    # K from a timing probe, compile or not (engine/compiled.py); the allocator is the caller's
    # choice (apply_allocator_settings: the CLI opts in, a library call changes no process setting)
    mode = compile_mode(compile)
    step_s = 0.0
    time_it = mode == "auto" and compile_available(device) and int(total_steps) * math.ceil(k / chunk) >= 200
    probe_k = max_chunk is None and chunk > 1 and int(total_steps) >= PROBE_MIN_STEPS
    if probe_k or time_it:
        def probe_population(n: int) -> Population:
            return Population(task, family, configs[:n], int(total_steps), config_ids=ids[:n], replica=replica,
                              eval_batches=1, device=device, dtype=dtype,
                              divergence_factor=divergence_factor, prepared=(task, module))
        probe_ks = PROBE_KS if probe_k else (chunk,)
        chunk, step_s = probe_population_size(probe_population, k, chunk, probe_ks, need_time=time_it)
    log.info("population size K=%d of %d configs (%s)", chunk, k, "max_population" if max_chunk is not None
              else "timing probe" if probe_k else "memory bound; run too short to probe")
    use_compile = should_compile(mode, device, step_s * int(total_steps) * math.ceil(k / chunk))
    parts, dsteps = [], []
    for lo in range(0, k, chunk):
        population = Population(task, family, configs[lo:lo + chunk], int(total_steps),
                                config_ids=ids[lo:lo + chunk], replica=replica, eval_batches=eval_batches,
                                device=device, dtype=dtype, divergence_factor=divergence_factor,
                                prepared=(task, module))
        ev, ds = _run_chunk(population, steps, progress, compiled=use_compile)
        parts.append(ev)
        dsteps.append(ds)
    evals = torch.cat(parts, dim=0)
    dstep = torch.cat(dsteps, dim=0)
    losses = mask_after_divergence({s: evals[:, :, i] for i, s in enumerate(SPLITS)}, steps, dstep)
    return PopulationResult(steps=steps, losses=losses, diverged_step=dstep,
                            seconds=time.perf_counter() - start, extra={"chunk": chunk, "compiled": use_compile})
