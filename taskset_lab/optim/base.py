"""Optimizer families: one update rule, two front ends.

A family defines its search space (``sample(seed) -> hparams``) and its update as a pure
function of tensors, :meth:`OptimizerFamily.update`. Hyperparameters reach ``update`` either
as 0-dim tensors (one config, through :class:`FamilyOptimizer`, a ``torch.optim.Optimizer``)
or as tensors of shape ``[K, 1, ..., 1]`` broadcasting over stacked parameters
``[K, *shape]`` (a population, through :class:`BatchedOptimizer`). Because both front ends
run the very same arithmetic, config k of a population follows the one-config trajectory.

A family writes its update once, in one of two forms. The *pure* form is ``update``. The
*in-place* form splits it in two: ``coefficients(step, hp, total_steps)`` computes the
per-config numbers of one step (rates, bias corrections, β's), and ``update_(p, g, state, c)``
applies them to the tensors in place, a few passes over memory and no temporaries. A family
with the in-place form gets ``update`` for free (clone, then ``update_``), so every front end
still runs the same arithmetic; the population engine uses the in-place form directly on its
flat ``[K, P]`` buffers (:meth:`BatchedOptimizer.step_flat_`), where a diverged config is
frozen through its coefficients (``coefficients(..., alive=...)``: zero rates, β = 1) and a
zeroed gradient instead of extra passes over the parameters. ``update_`` writes results into
scratch buffers through :class:`BufferOps` (``out=`` in place, fresh tensors in the pure
``update``), so the pure update runs under ``torch.func.vmap``.

Precision: the update runs in the *compute dtype* of the parameters (float64 for float64
parameters, float32 otherwise, so bf16/fp16 parameters are updated in float32 and rounded
back); hyperparameters and the moment states are kept in that dtype. The step counter is a
float32 tensor whatever the parameter dtype (a bf16 counter would stop at 256): float32
counts exactly up to 2**24 steps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor

HParams = dict[str, Any]

#: dtype of every step counter (exact integers up to 2**24)
STEP_DTYPE = torch.float32


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype an update of ``dtype`` parameters computes in (float64 stays, else float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class OptimizerFamily(ABC):
    """A search space plus an update rule. Subclasses are stateless singletons."""

    #: registry name, e.g. ``"nadamw"``
    name: str = ""
    #: the numeric hyperparameters ``update`` reads (booleans are passed as 0.0/1.0)
    hparam_names: tuple[str, ...] = ()
    #: names of per-parameter state tensors ``update`` keeps (all start as zeros)
    state_names: tuple[str, ...] = ()
    #: the name TaskSet / opt_list released configs under (``"<released_name>_seed<N>"``)
    released_name: str = ""
    #: our hparam name -> the released key, in the released (draw) order
    released_keys: Mapping[str, str] = {}

    @abstractmethod
    def sample(self, seed: int) -> HParams:
        """Hyperparameters drawn from the family's search space (same seed, same draw)."""

    def defaults(self) -> HParams:
        """Reasonable hyperparameters for hand use (e.g. ``optimizer=nadamw``)."""
        raise NotImplementedError

    def validate(self, hparams: Mapping[str, Any]) -> HParams:
        """Check names and ranges; returns a plain float dict. Raises ``ValueError``."""
        missing = [k for k in self.hparam_names if k not in hparams]
        unknown = [k for k in hparams if k not in self.hparam_names]
        if missing or unknown:
            raise ValueError(f"{self.name}: missing hparams {missing}, unknown hparams {unknown}")
        return {k: float(hparams[k]) for k in self.hparam_names}

    def to_released(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """``hparams`` under the released keys and in the released order."""
        return {theirs: hparams[ours] for ours, theirs in self.released_keys.items()}

    def from_released(self, released: Mapping[str, Any]) -> HParams:
        """A released config's hparams under our names (raises ``KeyError`` on a missing key)."""
        return {ours: released[theirs] for ours, theirs in self.released_keys.items()}

    def update(self, p: Tensor, g: Tensor, state: dict[str, Tensor], step: Tensor,
               hp: Mapping[str, Tensor], total_steps: int) -> tuple[Tensor, dict[str, Tensor]]:
        """One step for one parameter tensor. Pure: returns ``(new_p, new_state)``.

        ``step`` is the 1-based count of this update (a float32 tensor broadcastable with
        ``p``); ``p``, ``g``, the state and the ``hp`` values share the compute dtype and
        broadcast against each other; ``total_steps`` is the run length the schedule is
        defined over. Families with the in-place form need not override this: it clones and
        calls ``update_``; others must.
        """
        if not self.has_in_place_update:
            raise NotImplementedError(f"optimizer family {self.name!r} defines neither update nor update_")
        return self.apply(p, g, state, self.coefficients(step, hp, total_steps))

    def apply(self, p: Tensor, g: Tensor, state: Mapping[str, Tensor], c: Mapping[str, Tensor]
              ) -> tuple[Tensor, dict[str, Tensor]]:
        """``update_`` on copies, with given coefficients: ``(new_p, new_state)``, the inputs
        left as they are."""
        new_p = p.clone()
        new_state = {k: v.clone() for k, v in state.items()}
        self.update_(new_p, g.clone(), new_state, c, ops=FUNCTIONAL)
        return new_p, new_state

    def update_tensors(self, ps: list[Tensor], gs: list[Tensor], states: list[Mapping[str, Tensor]],
                       steps: list[Tensor], hp: Mapping[str, Tensor], alive: Tensor | None = None
                       ) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
        """The optional *multi-tensor* form: K configs' update of many tensors at once
        (``ps``, ``gs`` and each state with a leading ``[K]`` axis, ``steps`` each tensor's
        1-based update number, ``hp`` values with ``K`` rows; configs where ``alive``
        (``[K]`` bool) is False keep their parameters and state). A family that has it is stepped
        through it by both front ends (the population's tensors together, a param group's
        tensors with K = 1), so the one update stays the one arithmetic."""
        raise NotImplementedError

    @property
    def has_multi_tensor_update(self) -> bool:
        """Whether the family has the multi-tensor form (:meth:`update_tensors`)."""
        return type(self).update_tensors is not OptimizerFamily.update_tensors

    @property
    def state_elements(self) -> int:
        """Tensors of a parameter's size the update keeps (state) or holds while it runs, for
        memory estimates."""
        return len(self.state_names)

    @property
    def has_in_place_update(self) -> bool:
        """Whether the family has the in-place form (``coefficients`` + ``update_``)."""
        return type(self).update_ is not OptimizerFamily.update_

    def coefficients(self, step: Tensor, hp: Mapping[str, Tensor], total_steps: int,
                     alive: Tensor | None = None) -> dict[str, Tensor]:
        """The per-config numbers ``update_`` applies at update number ``step`` (shaped like
        the ``hp`` values). With ``alive`` (bool, same shape), configs where it is False get
        the coefficients that leave parameters and state unchanged for a zero gradient."""
        raise NotImplementedError

    def update_(self, p: Tensor, g: Tensor, state: dict[str, Tensor], c: Mapping[str, Tensor],
                ops: "BufferOps | None" = None) -> None:
        """The in-place form: update ``p`` and ``state`` with the coefficients ``c``; ``g``
        is scratch (overwritten).

        Args:
            p, g, state: the tensors to update (``g`` is scratch).
            c: the coefficients of this update (:meth:`coefficients`).
            ops: how results are written into scratch buffers: :data:`IN_PLACE` (the
                default, ``out=``) on the flat fast path, :data:`FUNCTIONAL` (fresh tensors)
                for the pure :meth:`update`, which therefore runs under ``torch.func.vmap``.
        """
        raise NotImplementedError

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        return {name: torch.zeros_like(p, dtype=compute_dtype(p.dtype)) for name in self.state_names}

    def scheduled_lr(self, step: Tensor, hp: Mapping[str, Tensor], total_steps: int) -> Tensor:
        """The learning rate update number ``step`` (1-based) applies; families with a
        schedule override this with the schedule their ``update`` uses."""
        return hp["lr"] * torch.ones_like(step, dtype=hp["lr"].dtype)


class BufferOps:
    """The operations of an in-place update that write a result into a scratch buffer.

    With ``in_place`` they write through ``out=`` (no allocation: the flat fast path); without,
    they return a fresh tensor and leave the buffer alone, so the same update body has no
    ``out=`` op, which ``torch.func.vmap`` has no batching rule for. Every other in-place op
    of an update (``mul_``, ``add_``, ``addcmul_``) acts on the update's own copies and runs
    under ``vmap`` as it is.
    """

    def __init__(self, in_place: bool):
        self.in_place = in_place

    def sqrt(self, x: Tensor, out: Tensor) -> Tensor:
        """``sqrt(x)``, into ``out`` when in place."""
        return torch.sqrt(x, out=out) if self.in_place else torch.sqrt(x)

    def mul(self, a: Tensor, b: Tensor, out: Tensor) -> Tensor:
        """``a·b``, into ``out`` when in place."""
        return torch.mul(a, b, out=out) if self.in_place else torch.mul(a, b)

    def div(self, a: Tensor, b: Tensor, out: Tensor) -> Tensor:
        """``a/b``, into ``out`` when in place."""
        return torch.div(a, b, out=out) if self.in_place else torch.div(a, b)


#: results written into the buffers (the flat fast path)
IN_PLACE = BufferOps(in_place=True)
#: results as fresh tensors (the pure update; vmappable)
FUNCTIONAL = BufferOps(in_place=False)


def gate(alive: Tensor | None, value: Tensor, frozen: float) -> Tensor:
    """``value`` where ``alive``, else ``frozen`` (for ``coefficients``: ``alive=None`` keeps
    ``value`` as it is)."""
    return value if alive is None else torch.where(alive, value, frozen)


def moment_coefficients(b1: Tensor, b2: Tensor, alive: Tensor | None) -> dict[str, Tensor]:
    """The coefficients of Adam-style moments (β1, 1-β1, β2, 1-β2); frozen configs get 1, 0,
    1, 0, so their moments keep their values."""
    return {"b1": gate(alive, b1, 1.0), "1-b1": gate(alive, 1.0 - b1, 0.0),
            "b2": gate(alive, b2, 1.0), "1-b2": gate(alive, 1.0 - b2, 0.0)}


def update_moments_(state: Mapping[str, Tensor], g: Tensor, c: Mapping[str, Tensor], square: Tensor,
                    ops: BufferOps | None = None) -> Tensor:
    """``m ← β1·m + (1-β1)·g``, ``v ← β2·v + (1-β2)·g²`` in place (coefficients from
    :func:`moment_coefficients`). Returns ``g²``: written into ``square`` (which may be ``g``
    itself) under :data:`IN_PLACE`, a fresh tensor under :data:`FUNCTIONAL`."""
    ops = ops or IN_PLACE
    state["m"].mul_(c["b1"]).addcmul_(g, c["1-b1"])
    square = ops.mul(g, g, out=square)
    state["v"].mul_(c["b2"]).addcmul_(square, c["1-b2"])
    return square


def _as_compute(x: Tensor) -> Tensor:
    return x.to(compute_dtype(x.dtype))


class FamilyOptimizer(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` for one config of a family.

    The hyperparameters live in ``param_groups`` (so schedulers and loggers can read them),
    per-parameter state in ``self.state`` (``step`` a float32 counter, the moments in the
    compute dtype). The learning-rate schedule is part of the family's update and needs
    ``total_steps``.
    """

    family: OptimizerFamily

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], family: OptimizerFamily,
                 hparams: Mapping[str, Any], total_steps: int):
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.family = family
        hp = family.validate(hparams)
        # ``lr`` reports the rate the schedule applies at the current step (so Lightning's
        # LearningRateMonitor shows the real schedule); the sampled rate is ``base_lr``
        # ``updates`` counts the group's steps on the host, so reporting the rate never reads
        # the device step counter (no sync per step)
        # (a family without a learning rate, a learned optimizer say, has neither)
        defaults = dict(hp, total_steps=int(total_steps), updates=0)
        if "lr" in hp:
            defaults["base_lr"] = hp["lr"]
        super().__init__(params, defaults)
        for group in self.param_groups:
            if "lr" in group:
                group.setdefault("base_lr", group["lr"])
                group["lr"] = self._scheduled(group, group["updates"] + 1)

    def _hparams(self, group: Mapping[str, Any], dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        return {k: torch.as_tensor(group["base_lr"] if k == "lr" else group[k], dtype=dtype, device=device)
                for k in self.family.hparam_names}

    def _scheduled(self, group: Mapping[str, Any], step: int) -> float:
        hp = self._hparams(group, torch.float64, torch.device("cpu"))
        return float(self.family.scheduled_lr(torch.tensor(float(step), dtype=torch.float64), hp,
                                              group["total_steps"]))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if self.family.has_multi_tensor_update:
                stepped = self._step_group_together(group)
            else:
                stepped = self._step_group(group)
            if stepped:  # the rate of the next update, for schedulers' readers
                group["updates"] = group.get("updates", 0) + 1
                if "base_lr" in group:
                    group["lr"] = self._scheduled(group, group["updates"] + 1)
        return loss

    def _state_of(self, p: Tensor) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=STEP_DTYPE, device=p.device)
            state.update(self.family.init_state(p))
        return state

    def _step_group(self, group: dict[str, Any]) -> bool:
        """The one-tensor-at-a-time step of a group (a family without the multi-tensor form)."""
        stepped = False
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self._state_of(p)
            state["step"] += 1
            cdt = compute_dtype(p.dtype)
            hp = self._hparams(group, cdt, p.device)
            # a state loaded by load_state_dict comes back in the parameter dtype
            inner = {k: state[k].to(cdt) for k in self.family.state_names}
            new_p, new_state = self.family.update(_as_compute(p), _as_compute(p.grad), inner,
                                                  state["step"], hp, group["total_steps"])
            p.copy_(new_p)
            for k, v in new_state.items():
                state[k] = v
            stepped = True
        return stepped

    #: the most parameter elements one multi-tensor call updates (its temporaries are a few
    #: dozen times that: the learned optimizers' features and hidden activations)
    TOGETHER_MAX_ELEMENTS = 1 << 22

    def _step_group_together(self, group: dict[str, Any]) -> bool:
        """A multi-tensor family's step of a group: its tensors with a gradient, by device and
        compute dtype, in :meth:`OptimizerFamily.update_tensors` calls (K = 1) of at most
        :attr:`TOGETHER_MAX_ELEMENTS` elements each (a larger tensor alone)."""
        buckets: dict[tuple, list[list[Tensor]]] = {}
        filled: dict[tuple, int] = {}  # elements in each bucket's last call
        for p in group["params"]:
            if p.grad is not None:  # by device and dtype, in calls of at most TOGETHER_MAX_ELEMENTS
                key = (p.device, compute_dtype(p.dtype))
                calls = buckets.setdefault(key, [[]])
                if calls[-1] and filled[key] + p.numel() > self.TOGETHER_MAX_ELEMENTS:
                    calls.append([])
                    filled[key] = 0
                calls[-1].append(p)
                filled[key] = filled.get(key, 0) + p.numel()
        for (device, cdt), params in ((key, c) for key, calls in buckets.items() for c in calls):
            states = [self._state_of(p) for p in params]
            for state in states:
                state["step"] += 1
            one = lambda x: x.to(cdt).unsqueeze(0)  # noqa: E731
            hp = {k: v.unsqueeze(0) for k, v in self._hparams(group, cdt, device).items()}
            new_ps, new_states = self.family.update_tensors(
                [one(p) for p in params], [one(p.grad) for p in params],
                [{k: one(st[k]) for k in self.family.state_names} for st in states], [st["step"] for st in states], hp)
            for p, state, new_p, new_state in zip(params, states, new_ps, new_states):
                p.copy_(new_p[0])
                state.update({k: v[0] for k, v in new_state.items()})
        return bool(buckets)


class BatchedOptimizer:
    """The population form: K configs of one family stepped together.

    ``hparams`` maps each name to a tensor of K rows: ``[K]`` for scalar hyperparameters (an
    in-place family's only kind), ``[K, ...]`` for others (a weight vector per config, say);
    parameters are dicts of ``[K, *shape]`` tensors. A family with the in-place form is
    stepped through its coefficients (computed once for all tensors); a family with only the
    pure ``update`` through ``torch.func.vmap(update)`` over the K configs, each seeing its
    own hyperparameters as the one-config front end passes them. Everything stays on the device; ``step`` never synchronises with the host.
    The state of each parameter holds a shared 0-dim float32 ``step`` and the family's
    moments (``[K, *shape]``, compute dtype).
    """

    def __init__(self, family: OptimizerFamily, hparams: Mapping[str, Tensor], total_steps: int):
        self.family = family
        self.hparams = {k: hparams[k] for k in family.hparam_names}
        shapes = {k: tuple(v.shape) for k, v in self.hparams.items()}
        sizes = {s[0] if s else None for s in shapes.values()}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(f"batched hparams must all have K rows ([K] or [K, ...]); got {shapes}")
        if family.has_in_place_update and any(len(s) != 1 for s in shapes.values()):
            raise ValueError(f"{family.name}: an in-place family's batched hparams have shape [K]; got {shapes}")
        self.num_configs = next(iter(sizes))
        self.total_steps = int(total_steps)
        #: a multi-tensor family's update to call instead of ``family.update_tensors`` (the same
        #: function compiled, say: :class:`taskset_lab.engine.compiled.CompiledUpdate`)
        self.multi_tensor_update: Callable[..., tuple[list[Tensor], list[dict[str, Tensor]]]] | None = None

    @classmethod
    def from_configs(cls, family: OptimizerFamily, configs: list[Mapping[str, Any]],
                     total_steps: int, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> "BatchedOptimizer":
        """``configs`` stacked; ``dtype`` is the parameters' dtype (hparams keep its compute dtype)."""
        rows = [family.validate(c) for c in configs]
        hp = {k: torch.tensor([r[k] for r in rows], device=device, dtype=compute_dtype(dtype))
              for k in family.hparam_names}
        return cls(family, hp, total_steps)

    def init(self, params: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        # one config's state (its shape is the family's choice), repeated for the K configs
        state = {name: {key: v.unsqueeze(0).repeat((p.shape[0],) + (1,) * v.dim())
                        for key, v in self.family.init_state(p[0]).items()} for name, p in params.items()}
        for name, p in params.items():
            state[name]["step"] = torch.zeros((), dtype=STEP_DTYPE, device=p.device)
        return state

    def _one_update(self, step: Tensor) -> Callable[..., tuple[Tensor, dict[str, Tensor]]]:
        """One config's pure update at update number ``step``, for ``torch.func.vmap``."""
        def one(p: Tensor, g: Tensor, state: dict[str, Tensor], hp: dict[str, Tensor]):
            return self.family.update(p, g, state, step, hp, self.total_steps)
        return one

    def step_flat_(self, flat: "FlatBuffers", grads: Mapping[str, Tensor], alive: Tensor) -> None:
        """One in-place update of a population laid out flat (:class:`FlatBuffers`): the
        gradients are copied into the flat gradient buffer with the diverged configs' rows
        zeroed (the copy is needed anyway, so the freeze costs no extra pass), the family's
        coefficients are computed once for all parameters (frozen where ``alive`` is False),
        and ``update_`` runs once over ``[K, P]``. Needs a family with the in-place form."""
        k = self.num_configs
        keep, zero = alive.view(k, 1), flat.grad.new_zeros(())
        for name, offset, numel, _shape in flat.layout:
            torch.where(keep, grads[name].reshape(k, numel), zero, out=flat.grad[:, offset:offset + numel])
        flat.step.add_(1)
        self.family.update_(flat.params, flat.grad, flat.state, self.coefficients(flat.step, alive=keep))

    def coefficients(self, step: Tensor, alive: Tensor | None = None) -> dict[str, Tensor]:
        """The family's per-config coefficients of update number ``step``, ``[K, 1]`` each
        (in-place families only; ``alive``, ``[K, 1]``, freezes the others)."""
        k = self.num_configs
        return self.family.coefficients(step, {n: v.view(k, 1) for n, v in self.hparams.items()}, self.total_steps,
                                        alive=alive)

    def next_coefficients(self, state: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """The coefficients of the update a per-tensor ``state`` (:meth:`init`'s form) takes next."""
        return self.coefficients(next(iter(state.values()))["step"] + 1)

    def step(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
             state: dict[str, dict[str, Tensor]], coef: Mapping[str, Tensor] | None = None,
             alive: Tensor | None = None) -> tuple[dict[str, Tensor], dict]:
        """The pure per-tensor step: fresh parameters and state. For an in-place family the
        coefficients are computed once for all tensors (or taken from ``coef``, ``[K, 1]``
        each: the compiled step passes them in, so the compiled loops over parameters see
        per-config numbers instead of recomputing powers and schedules per element). A
        multi-tensor family is given ``alive`` (``[K]`` bool) and leaves the other configs'
        parameters and state as they were (the caller's freeze, done inside the update)."""
        new_params: dict[str, Tensor] = {}
        new_state: dict[str, dict[str, Tensor]] = {}
        if self.family.has_in_place_update and coef is None:
            coef = self.next_coefficients(state)
        if self.family.has_multi_tensor_update:  # every tensor in one call
            names = list(params)
            steps = [state[n]["step"] + 1 for n in names]
            hp = {k: v.to(compute_dtype(params[names[0]].dtype)) for k, v in self.hparams.items()}
            new_ps, new_sts = (self.multi_tensor_update or self.family.update_tensors)(
                [_as_compute(params[n]) for n in names], [_as_compute(grads[n]) for n in names],
                [{k: state[n][k] for k in self.family.state_names} for n in names], steps, hp, alive=alive)
            return ({n: new_p.to(params[n].dtype) for n, new_p in zip(names, new_ps)},
                    {n: dict(st, step=step) for n, st, step in zip(names, new_sts, steps)})
        for name, p in params.items():
            st = state[name]
            step = st["step"] + 1
            inner = {k: st[k] for k in self.family.state_names}
            if coef is not None:
                view = (self.num_configs,) + (1,) * (p.dim() - 1)
                new_p, upd = self.family.apply(_as_compute(p), _as_compute(grads[name]), inner,
                                               {k: v.view(view) for k, v in coef.items()})
            else:  # a family with only the pure update: vmapped over the K configs
                hp = {k: v.to(compute_dtype(p.dtype)) for k, v in self.hparams.items()}
                new_p, upd = torch.func.vmap(self._one_update(step))(_as_compute(p), _as_compute(grads[name]),
                                                                    inner, hp)
            new_params[name] = new_p.to(p.dtype)
            new_state[name] = dict(upd, step=step)
        return new_params, new_state


@dataclass
class FlatBuffers:
    """A population's parameters, gradient scratch and optimizer state as ``[K, P]`` buffers
    (``P`` = parameters of one config, in ``layout`` order: name, offset, size, shape); the
    per-name ``[K, *shape]`` tensors the engine hands to the model are views into them, so
    one in-place update over ``[K, P]`` updates them all. ``step`` is the shared counter."""

    params: Tensor
    grad: Tensor
    state: dict[str, Tensor]
    step: Tensor
    layout: list[tuple[str, int, int, torch.Size]]

    @classmethod
    def stack(cls, params: Mapping[str, Tensor], num_configs: int, state_names: Iterable[str]) -> "FlatBuffers":
        """``num_configs`` copies of ``params`` (unstacked tensors), zero state."""
        layout, offset = [], 0
        for name, p in params.items():
            layout.append((name, offset, p.numel(), p.shape))
            offset += p.numel()
        first = next(iter(params.values()))
        flat = torch.empty((num_configs, offset), dtype=first.dtype, device=first.device)
        for name, off, numel, _ in layout:
            flat[:, off:off + numel].copy_(params[name].detach().reshape(1, numel).expand(num_configs, numel))
        return cls(params=flat, grad=torch.empty_like(flat),
                   state={n: torch.zeros_like(flat) for n in state_names},
                   step=torch.zeros((), dtype=STEP_DTYPE, device=flat.device), layout=layout)

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        """``flat`` ([K, P]) as a dict of ``[K, *shape]`` views, one per parameter."""
        k = flat.shape[0]
        return {name: flat[:, off:off + numel].view((k,) + tuple(shape)) for name, off, numel, shape in self.layout}

    def opt_state(self) -> dict[str, dict[str, Tensor]]:
        """The optimizer state in :class:`BatchedOptimizer`'s per-parameter form (views)."""
        per_state = {n: self.views(v) for n, v in self.state.items()}
        return {name: {**{n: per_state[n][name] for n in self.state}, "step": self.step}
                for name, *_ in self.layout}
