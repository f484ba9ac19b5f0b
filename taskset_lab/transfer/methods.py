"""The methods TRANSFER compares, as trials: ``<method>:<k>`` is trial k (0-based) of a method.

* ``list``: entry k of the hparam list (``list=`` a ``hparam_list.json`` path or a built-in
  list name), as its family's optimizer with its schedule over ``total_steps``.
* ``adam_default``: Adam, lr 1e-3, constant (one trial).
* ``adam_lr_grid``: Adam (constant) with learning rate ``lrs[k]``; the shipped grid is
  ordered outwards from 1e-3, so the first k trials are the k rates nearest Adam's default.
* ``random``: a draw of the list's search space, seed ``seed + 1000·r + k``; ``random@<r>:<k>``
  is repetition r (``repeats`` of them give the mean and spread of random search).
* ``reference``: the model's standard recipe from the pair config (one trial), e.g. SGD with
  momentum, lr scaled by batch/256 and cosine decay with warmup for ResNets; Adam with
  warmup and inverse-sqrt decay for Transformers.

An optimizer is first described as a JSON-able *spec* (what is recorded with the trial and
compared on restart), then built from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from taskset_lab.errors import ConfigError

METHODS = ("list", "adam_default", "adam_lr_grid", "random", "reference")
SINGLE_TRIAL = ("adam_default", "reference")
_TRIAL = re.compile(r"^(?P<method>[a-z_]+)(?:@(?P<repeat>\d+))?:(?P<k>\d+)$")


@dataclass(frozen=True, order=True)
class TrialSpec:
    """Trial ``k`` (0-based) of ``method``; ``repeat`` numbers the random-search repetitions."""

    method: str
    k: int
    repeat: int = 0

    @property
    def name(self) -> str:
        """File-safe name, e.g. ``list-k003`` or ``random-r1-k003``."""
        rep = f"-r{self.repeat}" if self.method == "random" else ""
        return f"{self.method}{rep}-k{self.k:03d}"

    def __str__(self) -> str:
        rep = f"@{self.repeat}" if self.method == "random" and self.repeat else ""
        return f"{self.method}{rep}:{self.k}"


def parse_trial(text: str) -> TrialSpec:
    """``"list:3"`` / ``"random@2:0"`` -> TrialSpec (ConfigError on ``trial`` otherwise)."""
    match = _TRIAL.match(str(text).strip())
    if not match or match["method"] not in METHODS:
        raise ConfigError("trial", f"expected all, aggregate or <method>[@<repeat>]:<k> with method one of "
                                   f"{', '.join(METHODS)}; got {text!r}")
    repeat = int(match["repeat"] or 0)
    if repeat and match["method"] != "random":
        raise ConfigError("trial", f"only random takes @<repeat>; got {text!r}")
    return TrialSpec(match["method"], int(match["k"]), repeat)


def method_trials(methods: Mapping[str, Any], method: str) -> int:
    """Trials of ``method`` in the budget (0 when the method is not configured)."""
    node = methods.get(method)
    if node is None:
        return 0
    n = int(node.get("trials", 1))
    return min(n, 1) if method in SINGLE_TRIAL else n


def plan_trials(methods: Mapping[str, Any]) -> list[TrialSpec]:
    """Every trial of the budget, ordered by k first, so a partial run has every method's first
    trials before anyone's later ones."""
    specs = []
    for method in METHODS:
        n = method_trials(methods, method)
        repeats = int(methods[method].get("repeats", 1)) if method == "random" and n else 1
        specs += [TrialSpec(method, k, r) for k in range(n) for r in range(repeats)]
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(specs, key=lambda s: (s.k, order[s.method], s.repeat))


def check_trial(spec: TrialSpec, methods: Mapping[str, Any]) -> None:
    n = method_trials(methods, spec.method)
    if spec.k >= n:
        raise ConfigError("trial", f"{spec} is outside the budget: methods.{spec.method} has {n} trial(s)")
    if spec.method == "random" and spec.repeat >= int(methods["random"].get("repeats", 1)):
        raise ConfigError("trial", f"{spec}: methods.random.repeats is {methods['random'].get('repeats', 1)}")


def list_family(list_name: str | None) -> str:
    from taskset_lab.optim import hparam_list_entry

    if not list_name:
        raise ConfigError("list", "the list and random methods need list=<hparam_list.json or built-in name>")
    return hparam_list_entry(str(list_name), 0)[0]


def optimizer_spec(spec: TrialSpec, methods: Mapping[str, Any], list_name: str | None,
                   reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """What trial ``spec`` trains with, as plain JSON-able data."""
    from taskset_lab.optim import get_optimizer_family, hparam_list_entry

    node = methods[spec.method]
    if spec.method == "list":
        if not list_name:
            raise ConfigError("list", "the list method needs list=<hparam_list.json or built-in name>")
        family, hparams = hparam_list_entry(str(list_name), spec.k)
        return {"kind": "list", "list": str(list_name), "index": spec.k, "family": family, "hparams": hparams}
    if spec.method == "adam_default":
        return {"kind": "adam", "lr": float(node.get("lr", 1e-3))}
    if spec.method == "adam_lr_grid":
        lrs = list(node["lrs"])
        if spec.k >= len(lrs):
            raise ConfigError("methods.adam_lr_grid.lrs", f"has {len(lrs)} rates; trial {spec.k} needs more")
        return {"kind": "adam", "lr": float(lrs[spec.k])}
    if spec.method == "random":
        family = node.get("family") or list_family(list_name)
        seed = int(node.get("seed", 0)) + 1000 * spec.repeat + spec.k
        hparams = {k: (float(v) if isinstance(v, (bool, int, float)) else v)
                   for k, v in get_optimizer_family(str(family)).sample(seed).items()}
        return {"kind": "family", "family": str(family), "seed": seed, "hparams": hparams}
    if not reference:
        raise ConfigError("pairs.reference", "the reference method needs the pair's reference recipe")
    return {"kind": "reference", **{k: v for k, v in dict(reference).items()}}


def _warmup_then(decay: str, warmup: int, total: int):
    """LR multiplier of step t: linear warmup over ``warmup`` steps, then ``decay``."""
    def factor(t: int) -> float:
        if warmup and t < warmup:
            return (t + 1) / warmup
        if decay == "cosine":
            progress = (t - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if decay == "inverse_sqrt":
            return math.sqrt(max(warmup, 1) / (t + 1))
        if decay == "constant":
            return 1.0
        raise ConfigError("reference.decay", f"must be cosine, inverse_sqrt or constant, got {decay!r}")
    return factor


def build_optimizer(opt: Mapping[str, Any], params: Iterable[torch.nn.Parameter], total_steps: int,
                    global_batch: int) -> tuple[torch.optim.Optimizer, Any]:
    """(optimizer, per-step LR scheduler or None) from an :func:`optimizer_spec`."""
    from taskset_lab.optim import FamilyOptimizer, get_optimizer_family, hparam_list_optimizer

    kind = opt["kind"]
    if kind == "list":  # the list's own entry, through the public entry point
        return hparam_list_optimizer(params, opt["list"], int(opt["index"]), total_steps), None
    if kind == "family":
        return FamilyOptimizer(params, get_optimizer_family(opt["family"]), opt["hparams"], total_steps), None
    if kind == "adam":
        return torch.optim.Adam(params, lr=float(opt["lr"])), None
    if kind != "reference":
        raise ValueError(f"unknown optimizer kind {kind!r}")
    lr = float(opt["lr"])
    if opt.get("lr_batch"):  # linear scaling rule: lr is given for a global batch of lr_batch
        lr *= global_batch / float(opt["lr_batch"])
    wd = float(opt.get("weight_decay", 0.0))
    name = opt.get("optimizer", "sgd")
    if name == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=float(opt.get("momentum", 0.9)), weight_decay=wd,
                                    nesterov=bool(opt.get("nesterov", False)))
    elif name in ("adam", "adamw"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        optimizer = cls(params, lr=lr, betas=tuple(opt.get("betas", (0.9, 0.999))),
                        eps=float(opt.get("eps", 1e-8)), weight_decay=wd)
    else:
        raise ConfigError("reference.optimizer", f"must be sgd, adam or adamw, got {name!r}")
    warmup = int(round(float(opt.get("warmup_fraction", 0.0)) * total_steps))
    factor = _warmup_then(str(opt.get("decay", "cosine")), warmup, total_steps)
    factor(warmup)  # an unknown decay fails here, before training
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
