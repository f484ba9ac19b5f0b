"""The Task interface (docs/design.md §Tasks).

A task is one optimization problem: a module built from a seed, a loss, and data splits.
It is fully described by a JSON-serializable config; sampled tasks are named
``<family>_seed<N>``, fixed tasks by their registered name.

Batches are a function of ``(split, step)`` only (see :class:`TaskData`), and randomness
(dropout, sampling noise, augmentation) of ``(task, replica, config id, step)`` only (see
:mod:`taskset_lab.tasks.context`), so a config trained alone and the same config trained
inside a population see identical batches and identical random numbers.

The training loss is a function of (parameters, state, batch, randomness, train/eval
mode) returning the loss and the new state: :meth:`Task.functional_loss` in the engines,
:meth:`Task.train_loss` / :meth:`Task.eval_loss` in a plain PyTorch loop.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from taskset_lab.tasks.context import StepContext, draw_noise, step_context

SPLITS: tuple[str, ...] = ("train", "valid_inner", "valid_outer", "test")

Batch = tuple[Tensor, ...]


def task_name(config: dict[str, Any]) -> str:
    """Stable, readable name of a task config: ``<family>_<8 hex of sha1(canonical JSON)>``."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    return f"{config['family']}_{digest}"


class TaskData(ABC):
    """Where a task's batches come from. Deterministic in ``(seed, split, step)``."""

    @abstractmethod
    def batch(self, split: str, step: int) -> Batch:
        """The training/eval batch of ``split`` at ``step`` (same call, same batch)."""

    @abstractmethod
    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TaskData":
        """A copy on ``device`` with floating tensors cast to ``dtype`` (when given)."""

    def eval_batches(self, split: str, num_batches: int) -> list[Batch]:
        """A fixed set of batches used for every evaluation of ``split``."""
        # Negative steps never occur in training, so eval batches never repeat train ones.
        return [self.batch(split, -1 - i) for i in range(num_batches)]


def _cast(t: Tensor, device: torch.device | str, dtype: torch.dtype | None) -> Tensor:
    if dtype is not None and t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device)


INDEX_BLOCK = 256  # steps whose batch indices are drawn together


def block_indices(seed: int, split: str, block: int, num_examples: int, batch_size: int,
                  device: torch.device | str = "cpu") -> Tensor:
    """Example indices ``[INDEX_BLOCK, batch_size]`` of steps ``block * INDEX_BLOCK ...``
    of ``split``: one ``randint`` from a generator seeded by ``(seed, split, block)`` on
    ``device``. Shared by :class:`TensorData` and ``StreamingData``, so both give the same
    batches (for the same generator device)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(_mix(seed, SPLITS.index(split), block))
    return torch.randint(num_examples, (INDEX_BLOCK, batch_size), generator=gen, device=device)


class TensorData(TaskData):
    """Splits held as tensors on the device; batches sampled by index on the device.

    Indices for a block of ``block`` consecutive steps are drawn in one ``randint`` call from
    a generator seeded by ``(seed, split, block index)``; a batch is a row of that block.
    No host synchronisation is needed per step, and any step can be recomputed alone
    (which makes resume exact).
    """

    BLOCK = INDEX_BLOCK

    def __init__(self, splits: dict[str, Batch], batch_size: int, seed: int = 0):
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            raise ValueError(f"TensorData needs splits {SPLITS}; missing {missing}")
        sizes = {s: splits[s][0].shape[0] for s in SPLITS}
        if min(sizes.values()) < 1:
            raise ValueError(f"empty split in {sizes}")
        self.splits = splits
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._blocks: dict[tuple[str, int], Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.splits["train"][0].device

    def _indices(self, split: str, step: int) -> Tensor:
        block, row = divmod(step, self.BLOCK)
        key = (split, block)
        idx = self._blocks.get(key)
        if idx is None:
            n = self.splits[split][0].shape[0]
            idx = block_indices(self.seed, split, block, n, self.batch_size, self.device)
            if len(self._blocks) > 64:
                self._blocks.clear()
            self._blocks[key] = idx
        return idx[row]

    def batch(self, split: str, step: int) -> Batch:
        idx = self._indices(split, step)
        return tuple(t[idx] for t in self.splits[split])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TensorData":
        splits = {s: tuple(_cast(t, device, dtype) for t in ts) for s, ts in self.splits.items()}
        return TensorData(splits, self.batch_size, self.seed)


class NoiseData(TaskData):
    """Batches of Gaussian noise for synthetic tasks (quadratics, 2-D functions).

    ``scale == 0`` gives zeros: the loss is then deterministic.
    """

    def __init__(self, shape: Sequence[int], scale: float = 0.0, seed: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.shape = tuple(int(s) for s in shape)
        self.scale = float(scale)
        self.seed = int(seed)
        self._device = torch.device(device)
        self._dtype = dtype

    def batch(self, split: str, step: int) -> Batch:
        if self.scale == 0.0:
            return (torch.zeros(self.shape, device=self._device, dtype=self._dtype),)
        gen = torch.Generator(device=self._device)
        gen.manual_seed(_mix(self.seed, SPLITS.index(split), step))
        noise = torch.randn(self.shape, generator=gen, device=self._device, dtype=self._dtype)
        return (noise * self.scale,)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "NoiseData":
        return NoiseData(self.shape, self.scale, self.seed, device, dtype or self._dtype)


def _mix(*values: int) -> int:
    """Combine integers into one 63-bit generator seed (stable across runs and machines)."""
    h = hashlib.blake2b(",".join(str(v) for v in values).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class Task(ABC):
    """One optimization problem. Subclasses implement :meth:`make_module` and :meth:`loss`.

    ``forward_loss(model, batch)`` is the only way the engines evaluate a task: ``model`` is
    either the ``nn.Module`` itself or a functional stand-in (``torch.func.functional_call``
    over stacked parameters), so one loss definition serves single and population training.
    """

    def __init__(self, config: dict[str, Any], data: TaskData):
        self.config = dict(config)
        self.data = data
        self._name: str | None = None
        self._family: str | None = None

    @property
    def name(self) -> str:
        """The task's name: ``<family>_seed<N>`` for sampled tasks, the registered name for
        fixed ones (both set by the registry), ``<family>_<hash>`` for an unnamed config."""
        return self._name if self._name is not None else task_name(self.config)

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def family(self) -> str:
        """The family (for a fixed task: its kind, e.g. ``TwoD``); a curve-store column."""
        return self._family if self._family is not None else str(self.config["family"])

    @family.setter
    def family(self, value: str) -> None:
        self._family = str(value)

    @abstractmethod
    def make_module(self) -> nn.Module:
        """Build the module with freshly initialised parameters (uses the global RNG)."""

    def init_module(self, seed: int) -> nn.Module:
        """Build the module with parameters initialised from ``seed`` (global RNG untouched);
        its stateful and random layers are named for the step context."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self.make_module()
        name_layers(module)
        return module

    # -- randomness and state ---------------------------------------------------------------
    def noise_spec(self, module: nn.Module, batch: Batch, train: bool) -> dict[str, tuple[tuple[int, ...], str]]:
        """What randomness one loss evaluation on a batch of this shape draws: ``{key: (shape,
        kind)}``, found by one probe pass (cached per mode and batch shapes)."""
        cache = self.__dict__.setdefault("_noise_specs", {})
        sig = (bool(train), tuple((tuple(t.shape), t.dtype) for t in batch))
        if sig not in cache:
            with step_context(StepContext(train=train, probe=True)) as ctx, torch.no_grad():
                self.forward_loss(module, batch)
            cache[sig] = dict(ctx.recorded)
        return cache[sig]

    def draw_noise(self, spec: dict[str, tuple[tuple[int, ...], str]], key: int | str, config_id: int,
                   replica: int, dtype: torch.dtype, device: torch.device | str) -> dict[str, Tensor]:
        """The random numbers of one loss evaluation: a pure function of (task, replica, config id,
        step or eval key). ``{}`` for tasks without randomness."""
        if not spec:
            return {}
        gen = torch.Generator()
        gen.manual_seed(_mix("noise", self.name, replica, config_id, key))
        return {k: v.to(device) for k, v in draw_noise(spec, gen, dtype).items()}

    def functional_loss(self, module: nn.Module, params: dict[str, Tensor], state: dict[str, Tensor],
                        constants: dict[str, Tensor], batch: Batch, noise: dict[str, Tensor],
                        train: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, new state)`` of ``module`` called with ``params`` and buffers ``state`` (task
        state, e.g. BatchNorm statistics) and ``constants`` (other buffers); vmap-able."""
        with step_context(StepContext(train=train, noise=noise, collect=True)) as ctx:
            def model(*inputs: Tensor) -> Tensor:
                return functional_call(module, (params, {**constants, **state}), inputs)
            loss = self.forward_loss(model, batch)
        return loss, {k: ctx.new_state.get(k, v) for k, v in state.items()}

    def train_loss(self, module: nn.Module, batch: Batch, step: int, config_id: int = 0,
                   replica: int = 0) -> Tensor:
        """The training loss of ``step`` in a plain PyTorch loop (train mode; the module's state,
        e.g. BatchNorm statistics, is updated in place; randomness as in the engines)."""
        ref = _reference_tensor(module, batch)
        spec = self.noise_spec(module, batch, True)
        noise = self.draw_noise(spec, int(step), config_id, replica, ref.dtype, ref.device)
        with step_context(StepContext(train=True, noise=noise)):
            return self.forward_loss(module, batch)

    def eval_loss(self, module: nn.Module, batch: Batch, key: str, config_id: int = 0,
                  replica: int = 0) -> Tensor:
        """The evaluation loss on a fixed batch named ``key`` (eval mode: running statistics, no
        dropout; sampling noise, where a loss has it, fixed per key)."""
        ref = _reference_tensor(module, batch)
        spec = self.noise_spec(module, batch, False)
        noise = self.draw_noise(spec, key, config_id, replica, ref.dtype, ref.device)
        with step_context(StepContext(train=False, noise=noise)):
            return self.forward_loss(module, batch)

    def model_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        """What the module is called with; by default the first tensor of the batch."""
        return (batch[0],)

    @abstractmethod
    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        """Scalar loss from the module's output and the batch."""

    def forward_loss(self, model: Callable[..., Tensor], batch: Batch) -> Tensor:
        return self.loss(model(*self.model_inputs(batch)), batch)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Task":
        """This task with its data moved (the module is built later, on the caller's side)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.data = self.data.to(device, dtype)
        return clone

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def eval_key(split: str, index: int) -> str:
    """The randomness key of fixed evaluation batch ``index`` of ``split``."""
    return f"eval:{split}:{index}"


def name_layers(module: nn.Module) -> None:
    """Give every submodule its qualified name as noise key and state prefix (see
    :mod:`taskset_lab.tasks.context`)."""
    for name, sub in module.named_modules():
        sub._noise_key = name or "root"  # type: ignore[attr-defined]
        sub._state_prefix = f"{name}." if name else ""  # type: ignore[attr-defined]


def state_names(module: nn.Module) -> list[str]:
    """Names of the buffers that are task state (updated by training, e.g. BatchNorm's running
    statistics); other buffers are constants."""
    names = []
    for prefix, sub in module.named_modules():
        if getattr(sub, "task_state", False):
            names += [f"{prefix}.{b}" if prefix else b for b, _ in sub.named_buffers(recurse=False)]
    return names


def _reference_tensor(module: nn.Module, batch: Batch) -> Tensor:
    for t in module.parameters():
        return t
    floats = [t for t in batch if t.is_floating_point()]
    return floats[0] if floats else torch.empty(0)
