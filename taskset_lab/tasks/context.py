"""The step context: train/eval mode, randomness and task state for one loss evaluation
(docs/design.md §Stateful and random tasks).

Layers and losses that need randomness call :func:`draw` with a key, a shape and a kind;
layers that keep state (BatchNorm's running statistics) call :func:`update_state`. What
those calls return or do depends on the active :class:`StepContext`:

* **no context** (a plain PyTorch loop calling the module directly): ``draw`` samples from
  torch's global RNG, ``update_state`` writes the buffer in place, the mode is the module's
  ``training`` flag — the module behaves like any ``nn.Module``;
* **probe** (``StepContext(probe=True)``): ``draw`` samples and *records* ``(key, shape,
  kind)`` — how a task learns what randomness one step needs;
* **replay** (``StepContext(noise=...)``): ``draw`` returns the pre-drawn tensor for the key.
  The engines draw it from a generator seeded by (task seed, replica, config id, step), so
  config k in a population and config k alone see the same numbers, and under ``vmap``
  every config gets its own;
* **collect** (``collect=True``): ``update_state`` records the new state instead of writing
  it, so the functional engine can return it (buffers cannot be mutated under ``vmap``).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch
from torch import Tensor

NOISE_KINDS = ("uniform", "normal")


@dataclass
class StepContext:
    train: bool = True
    noise: Mapping[str, Tensor] | None = None
    probe: bool = False
    collect: bool = False
    recorded: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    new_state: dict[str, Tensor] = field(default_factory=dict)


_LOCAL = threading.local()


def current() -> StepContext | None:
    return getattr(_LOCAL, "ctx", None)


@contextmanager
def step_context(ctx: StepContext) -> Iterator[StepContext]:
    previous = current()
    _LOCAL.ctx = ctx
    try:
        yield ctx
    finally:
        _LOCAL.ctx = previous


def is_training(module: torch.nn.Module) -> bool:
    """The mode a layer runs in: the context's when there is one, else the module's flag."""
    ctx = current()
    return module.training if ctx is None else ctx.train


def draw(key: str, shape: tuple[int, ...], kind: str, like: Tensor) -> Tensor:
    """Random numbers for ``key``: ``uniform`` in [0, 1) or standard ``normal``, of ``shape``,
    with ``like``'s dtype and device (see the module docstring for where they come from)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    shape = tuple(int(s) for s in shape)
    ctx = current()
    if ctx is not None and not ctx.probe and ctx.noise is not None:
        try:
            return ctx.noise[key]
        except KeyError:
            raise KeyError(f"no pre-drawn noise for {key!r} (drawn keys: {sorted(ctx.noise)}); a task's "
                           f"randomness must not depend on the parameters") from None
    if ctx is not None and ctx.probe:
        if key in ctx.recorded and ctx.recorded[key] != (shape, kind):
            raise ValueError(f"noise key {key!r} drawn twice with different shapes")
        ctx.recorded[key] = (shape, kind)
    fn = torch.rand if kind == "uniform" else torch.randn
    return fn(shape, dtype=like.dtype, device=like.device)


def update_state(module: torch.nn.Module, name: str, value: Tensor) -> None:
    """Set buffer ``name`` of ``module`` to ``value`` (recorded instead under ``collect``)."""
    ctx = current()
    if ctx is not None and ctx.probe:
        return
    if ctx is not None and ctx.collect:
        prefix = getattr(module, "_state_prefix", None)
        if prefix is None:
            raise RuntimeError("a stateful layer was not named; build modules through Task.init_module")
        ctx.new_state[f"{prefix}{name}"] = value
        return
    with torch.no_grad():
        getattr(module, name).copy_(value)


def draw_noise(spec: Mapping[str, tuple[tuple[int, ...], str]], generator: torch.Generator,
               dtype: torch.dtype) -> dict[str, Tensor]:
    """Draw every entry of a recorded ``spec`` from ``generator`` (CPU), in sorted key order."""
    out = {}
    for key in sorted(spec):
        shape, kind = spec[key]
        fn = torch.rand if kind == "uniform" else torch.randn
        out[key] = fn(shape, generator=generator, dtype=dtype)
    return out
