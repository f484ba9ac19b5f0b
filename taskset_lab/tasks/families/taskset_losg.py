"""TaskSet's ``losg_tasks_family``: the 14 synthetic problem kinds of "Learned Optimizers
that Scale and Generalize" (Wichrowska et al. 2017), with their gradient noise.

**Config**: TaskSet's released config is the list ``[kind, kind_config, problem_seed]``
(:mod:`taskset_lab.tasks.released.losg`, exact per seed). The task registry needs a dict
(it adds ``"family"``), so this family's configs are
``{"kind": kind, "kind_config": kind_config, "problem_seed": problem_seed}``;
:func:`from_released` / :func:`to_released` convert.

**What a task computes** (TaskSet's ``LOSGProblemTask``): the parameters are the problem's
``param_shapes`` (named ``p0, p1, …``); each loss evaluation takes one batch (kinds with
data) from one stream shared by every split (TaskSet ignores the split); the **loss value is
the noise-free objective**, and the **gradient** the optimizer receives is the problem's
``gradients``: ``g + noise_stdev · N(0, 1)`` per element (``noise_stdev`` of the top-level
problem); ``sparse_problems``: per element 0 with probability ``zero_probability``, else
``g + noise_stdev · N(0, 1)``; ``rescale_problems`` and ``log_objective``: no noise. The noise
is drawn through :func:`taskset_lab.tasks.context.draw` (pure in task, replica, config id,
step) in training mode only, and enters through a zero-valued term
(``Σ θ·n − stop_grad(Σ θ·n)``) and a masked copy of θ, so the loss value is untouched.
Objectives (nats where they are cross-entropies, else the raw function value):

* ``quadratic``: ½‖Wθ − y‖²; ``bowl``: ½‖Aθ‖², A = sqrt(diag(cond, 1))·R(angle);
* ``sparse_softmax_regression`` / ``fully_connected``: mean sigmoid cross-entropy on logit 0
  plus ``1e-3 · mean over parameters of Σ p²``; init N(0,1)·1.2/sqrt(shape[0]);
* ``optimization_test_problems``: ackley, beale, branin, logsumexp, matyas, michalewicz,
  rosenbrock, StyblinskiTang with their uniform init boxes;
* ``norm``: (Σ(|Wθ − y| + 1e-6)^p)^{1/p}; ``dependency_chain``: Σ_i (θ₀² + θ_i²/(θ_{i−1}² + 1e-6))
  (TaskSet's broadcast adds θ₀² once per term: d·θ₀²); ``outward_snake``; ``min_max_well``:
  max θ² + 1/min θ² − 2 + 1e-12; ``sum_of_quadratics``: Σ(θ − x)² − Σx² + 1e-12;
  ``projection_quadratic``: Σ(θ ⊙ x)²;
* wrappers: ``rescale_problems`` (init × scale, objective base(θ/scale)), ``log_objective``
  (log(f + 1e-6) − log 1e-6), ``sparse_problems``.

Default init N(0, 1) per parameter, from the init seed (TaskSet: unseeded ``tf.random_normal``).

**Deviation (reproducibility)**: TaskSet seeds numpy's global state with ``problem_seed``
before a plain problem draws its W, y — reproduced exactly here (``RandomState(problem_seed)``,
the same ``randn`` calls in the same order) — but generates the datasets (``random_mlp``,
``random_symmetric``, ``noisy_parity_class``) and a sparse problem's base from unseeded global
state, so those differ per TaskSet run. Here every one of them is derived from
``problem_seed``: the base problem of ``sparse_problems`` is seeded with it too, and the
datasets come from ``RandomState([problem_seed, 1])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.data.taskset_text import config_seed
from taskset_lab.errors import ConfigError
from taskset_lab.tasks.base import SPLITS, Batch, Task, TaskData, block_indices
from taskset_lab.tasks.context import draw, is_training
from taskset_lab.tasks.activations import ACTIVATIONS
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.losg import sample_losg_tasks_family
from taskset_lab.tasks.released.losg import KIND_SAMPLERS, MODIFIABLE_KINDS, OPTIMIZATION_TEST_PROBLEMS

FAMILY = "losg_tasks_family"
KINDS = tuple(sorted(KIND_SAMPLERS))
EPS = 1e-6
L2_REG_SCALE = 1e-3

Objective = Callable[[dict[str, Tensor], list[Tensor], Tensor, Tensor], Tensor]


# ------------------------------------------------------------------ configs


def from_released(released: list | tuple) -> dict[str, Any]:
    """``[kind, kind_config, problem_seed]`` -> this family's config dict."""
    kind, cfg, seed = released
    return {"kind": kind, "kind_config": cfg, "problem_seed": int(seed)}


def to_released(config: dict[str, Any]) -> list:
    return [config["kind"], config["kind_config"], int(config["problem_seed"])]


def sample(seed: int) -> dict[str, Any]:
    """TaskSet's released ``losg_tasks_family_seed<seed>`` as a config dict."""
    return from_released(sample_losg_tasks_family(seed))


# ------------------------------------------------------------------ problems


@dataclass
class Problem:
    """One problem: parameter shapes and init, objective, fixed tensors (buffers), optional
    dataset ``(x float [n, f], y int [n])`` with batch size, and the gradient modification."""

    shapes: list[tuple[int, ...]]
    objective: Objective
    init: Callable[[tuple[int, ...]], Tensor] = lambda shape: torch.randn(shape)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    dataset: tuple[np.ndarray, np.ndarray] | None = None
    batch_size: int | None = None
    noise_stdev: float = 0.0
    zero_probability: float = 0.0  # > 0: sparse_problems


def _classifier_init(shape: tuple[int, ...]) -> Tensor:
    return torch.randn(shape) * 1.2 / math.sqrt(shape[0])


def _uniform(low: float, high: float) -> Callable[[tuple[int, ...]], Tensor]:
    return lambda shape: torch.empty(shape).uniform_(low, high)


def random_mlp(rng: np.random.RandomState, n_features: int, n_samples: int, n_layers: int = 6,
               width: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """losg's ``random_mlp``: x ~ N(0, 1); label 1 where the first output of a random ReLU
    net (weights N(0, 1)·sqrt(2/n_features)) is > 0."""
    x = rng.normal(size=(n_samples, n_features))
    y, n_in, scale = x, n_features, np.sqrt(2.0) / np.sqrt(n_features)
    for _ in range(n_layers):
        y = np.dot(y, rng.normal(size=(n_in, width)) * scale).clip(min=0)
        n_in = width
    y = y[:, 0]
    y[y > 0] = 1
    return x.astype("float32"), y.astype("int64")


def random_symmetric(rng: np.random.RandomState, n_features: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    x1 = rng.normal(size=(int(n_samples / 2), n_features))
    x = np.concatenate((x1, -x1), axis=0)
    return x.astype("float32"), np.zeros(len(x), dtype="int64")


def noisy_parity_class(rng: np.random.RandomState, n_samples: int, n_classes: int = 2, n_context_ids: int = 5,
                       noise_prob: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    x = rng.randint(0, n_classes, [n_samples, n_context_ids])
    noise = rng.binomial(1, noise_prob, [n_samples])
    y = (np.sum(x, 1) + noise) % n_classes
    return x.astype("float32"), y.astype("int64")


def _sigmoid_ce_with_l2(logits: Tensor, labels: Tensor, params: list[Tensor]) -> Tensor:
    ce = F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype))
    l2 = torch.stack([(p ** 2).sum() for p in params]).mean()
    return ce + l2 * L2_REG_SCALE


def _test_function(name: str) -> tuple[Objective, Callable[[tuple[int, ...]], Tensor]]:
    pi = math.pi

    def split(params: list[Tensor]) -> tuple[Tensor, Tensor]:
        return params[0][0], params[0][1]

    if name == "ackley":
        def f(b, p, x, y):
            a, c = split(p)
            return (-20 * torch.exp(-0.2 * torch.sqrt(0.5 * (a ** 2 + c ** 2)))
                    - torch.exp(0.5 * (torch.cos(2 * pi * a) + torch.cos(2 * pi * c))) + math.e + 20.0)
        return f, _uniform(-32.768, 32.768)
    if name == "beale":
        def f(b, p, x, y):
            a, c = split(p)
            return (1.5 - a + a * c) ** 2 + (2.25 - a + a * c ** 2) ** 2 + (2.625 - a + a * c ** 3) ** 2
        return f, _uniform(-4.5, 4.5)
    if name == "branin":
        def f(b, p, x, y):
            a, c = split(p)
            return ((c - 5.1 / (4 * pi ** 2) * a ** 2 + 5 / pi * a - 6.0) ** 2
                    + 10.0 * (1 - 1 / (8 * pi)) * torch.cos(a) + 10.0)

        def init(shape: tuple[int, ...]) -> Tensor:
            return torch.cat([torch.empty(1).uniform_(-5.0, 10.0), torch.empty(1).uniform_(0.0, 15.0)])
        return f, init
    if name == "logsumexp":
        def f(b, p, x, y):
            a, c = split(p)
            return torch.log(torch.exp(a + 3 * c - 0.1) + torch.exp(a - 3 * c - 0.1) + torch.exp(-a - 0.1) + 1.0)
        return f, lambda shape: torch.randn(shape)
    if name == "matyas":
        def f(b, p, x, y):
            a, c = split(p)
            return 0.26 * (a ** 2 + c ** 2) - 0.48 * a * c
        return f, _uniform(-10.0, 10.0)
    if name == "michalewicz":
        def f(b, p, x, y):
            a, c = split(p)
            return 2.0 - (torch.sin(a) * torch.sin(a ** 2 / pi) ** 10 + torch.sin(c) * torch.sin(2 * c ** 2 / pi) ** 10)
        return f, _uniform(0.0, pi)
    if name == "rosenbrock":
        def f(b, p, x, y):
            a, c = split(p)
            return (1 - a) ** 2 + 100 * (c - a ** 2) ** 2
        return f, _uniform(-5.0, 10.0)
    if name == "StyblinskiTang":
        def f(b, p, x, y):
            t = p[0]
            return 0.5 * (t ** 4 - 16 * t ** 2 + 5 * t).sum() + 80.0
        return f, _uniform(-5.0, 5.0)
    raise ConfigError("task.kind_config.problem", f"unknown optimization test problem {name!r}")


def _fixed_w_y(seed: int, dim: int) -> dict[str, np.ndarray]:
    """W ``[d, d]``, y ``[d, 1]`` as TaskSet draws them after ``np.random.seed(problem_seed)``."""
    rng = np.random.RandomState(seed)
    w = rng.randn(dim, dim).astype("float32")
    y = rng.randn(dim, 1).astype("float32")
    return {"w": w, "y": y}


def make_problem(kind: str, cfg: dict[str, Any], seed: int) -> Problem:
    """The problem of ``kind`` with ``cfg``; fixed data from ``seed`` (see module docstring)."""
    data_rng = np.random.RandomState([seed, 1])
    noise = float(cfg.get("noise_stdev", 0.0) or 0.0)
    if kind == "quadratic":
        d = int(cfg["dim"])
        return Problem([(d, 1)], lambda b, p, x, y: 0.5 * ((b["w"] @ p[0] - b["y"]) ** 2).sum(),
                       buffers=_fixed_w_y(seed, d), noise_stdev=noise)
    if kind == "bowl":
        hessian = np.array([[cfg["cond"], 0.0], [0.0, 1.0]], dtype="float32")
        angle = float(cfg["angle"])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return Problem([(2, 1)], lambda b, p, x, y: 0.5 * ((b["a"] @ p[0]) ** 2).sum(),
                       buffers={"a": np.sqrt(hessian).dot(rot)}, noise_stdev=noise)
    if kind == "sparse_softmax_regression":
        nf, nc = int(cfg["n_features"]), int(cfg["n_classes"])
        n_ctx = 5

        def f(b, p, x, y):
            emb, w, bias = p
            ones = x.sum(1, keepdim=True)  # x holds 0/1 ids: Σ_k E[x_k] = (5 − c)·E₀ + c·E₁
            summed = (n_ctx - ones) * emb[0] + ones * emb[1]
            return _sigmoid_ce_with_l2(summed @ w + bias, y, p)
        return Problem([(nc, nf), (nf, nc), (nc,)], f, init=_classifier_init,
                       dataset=noisy_parity_class(data_rng, int(cfg["n_samples"]), nc, n_ctx),
                       batch_size=int(cfg["bs"]), noise_stdev=noise)
    if kind == "optimization_test_problems":
        f, init = _test_function(str(cfg["problem"]))
        return Problem([(2,)], f, init=init, noise_stdev=noise)
    if kind == "fully_connected":
        nf, nc = int(cfg["n_features"]), int(cfg["n_classes"])
        sizes = [int(s) for s in cfg["hidden_sizes"]] + [nc]
        shapes: list[tuple[int, ...]] = []
        for i, sz in enumerate(sizes):
            shapes += [((nf if i == 0 else sizes[i - 1]), sz), (sz,)]
        act = ACTIVATIONS[str(cfg["activation"])]

        def f(b, p, x, y):
            h = x.reshape(-1, nf) @ p[0] + p[1]
            for layer in range(2, len(p), 2):
                h = act(h) @ p[layer] + p[layer + 1]
            return _sigmoid_ce_with_l2(h, y, p)
        return Problem(shapes, f, init=_classifier_init, dataset=random_mlp(data_rng, nf, int(cfg["n_samples"])),
                       batch_size=int(cfg["bs"]))
    if kind == "norm":
        d, power = int(cfg["dim"]), float(cfg["norm_power"])

        def f(b, p, x, y):
            diff = b["w"] @ p[0] - b["y"]
            return ((diff.abs() + EPS) ** power).sum() ** (1.0 / power)
        return Problem([(d, 1)], f, buffers=_fixed_w_y(seed, d))
    if kind == "dependency_chain":
        d = int(cfg["dim"])

        def f(b, p, x, y):
            t = p[0]
            return (t[0] ** 2 + t[1:] ** 2 / (t[:-1] ** 2 + EPS)).sum()
        return Problem([(d + 1,)], f, dataset=random_mlp(data_rng, d, int(cfg["n_samples"])),
                       batch_size=int(cfg["bs"]))
    if kind == "outward_snake":
        d = int(cfg["dim"])

        def f(b, p, x, y):
            t = p[0]
            radius = torch.sqrt((t ** 2).sum())
            rad_loss = (1.0 / (radius + EPS) * x[:, 0]).sum()
            sin_dist = t[1:] - torch.cos(t[:-1]) * math.pi
            return rad_loss + ((sin_dist * x[:, 1:]) ** 2).sum()
        return Problem([(d,)], f, dataset=random_mlp(data_rng, d, int(cfg["n_samples"])), batch_size=int(cfg["bs"]))
    if kind == "min_max_well":
        d = int(cfg["dim"])

        def f(b, p, x, y):
            sq = p[0] ** 2
            return sq.amax() + 1.0 / sq.amin() - 2.0 + 1e-12
        return Problem([(d,)], f, noise_stdev=noise)
    if kind in ("sum_of_quadratics", "projection_quadratic"):
        d = int(cfg["dim"])
        data = random_symmetric(data_rng, d, int(cfg["n_samples"] // 2) * 2)
        if kind == "sum_of_quadratics":
            def f(b, p, x, y):
                return ((p[0] - x) ** 2).sum() - (x ** 2).sum() + 1e-12
        else:
            def f(b, p, x, y):
                return ((p[0] * x) ** 2).sum()
        return Problem([(1, d)], f, dataset=data, batch_size=int(cfg["bs"]))
    if kind in ("sparse_problems", "rescale_problems", "log_objective"):
        base_kind, base_cfg = cfg["base"]
        base = make_problem(str(base_kind), dict(base_cfg), seed)
        if kind == "sparse_problems":
            base.noise_stdev = float(cfg.get("noise_stdev", 0.0) or 0.0)
            base.zero_probability = float(cfg["zero_probability"])
            return base
        base.noise_stdev = 0.0
        inner, inner_init = base.objective, base.init
        if kind == "rescale_problems":
            scale = float(cfg["scale"])
            base.init = lambda shape: inner_init(shape) * scale
            base.objective = lambda b, p, x, y: inner(b, [t / scale for t in p], x, y)
        else:
            base.objective = lambda b, p, x, y: torch.log(inner(b, p, x, y) + EPS) - math.log(EPS)
        return base
    raise ConfigError("task.kind", f"unknown losg problem kind {kind!r}; known: {', '.join(KINDS)}")


# ------------------------------------------------------------------ module, data, task


class LosgModule(nn.Module):
    """The problem's parameters ``p0, p1, …`` and its fixed tensors (buffers); ``forward(x, y)``
    returns the objective with the gradient modification applied in training mode."""

    def __init__(self, problem: Problem):
        super().__init__()
        self.problem = problem
        self.n = len(problem.shapes)
        for i, shape in enumerate(problem.shapes):
            self.register_parameter(f"p{i}", nn.Parameter(problem.init(tuple(shape)).to(torch.float32)))
        for name, value in problem.buffers.items():
            self.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float32)))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        prob = self.problem
        params = [getattr(self, f"p{i}") for i in range(self.n)]
        bufs = {name: getattr(self, name) for name in prob.buffers}
        noisy = prob.noise_stdev > 0.0
        sparse = prob.zero_probability > 0.0
        if not is_training(self) or not (noisy or sparse):
            return prob.objective(bufs, params, x, y)
        used, extra = [], None
        for i, p in enumerate(params):
            keep = None
            if sparse:  # TaskSet: gradient zeroed where zero_probability > U(0, 1)
                u = draw(f"losg.zero.p{i}", tuple(p.shape), "uniform", p)
                keep = (u >= prob.zero_probability).to(p.dtype)
                p = keep * p + (1.0 - keep) * p.detach()
            used.append(p)
            if noisy:
                n = draw(f"losg.noise.p{i}", tuple(p.shape), "normal", p) * prob.noise_stdev
                if keep is not None:
                    n = n * keep
                term = (params[i] * n).sum()
                term = term - term.detach()  # exactly 0 in value, gradient n
                extra = term if extra is None else extra + term
        loss = prob.objective(bufs, used, x, y)
        return loss if extra is None else loss + extra


class LosgData(TaskData):
    """One shared stream for every split (TaskSet ignores the split): batch ``step`` is
    ``batch_size`` examples drawn by :func:`block_indices` (with replacement). Problems
    without data give a dummy ``(zeros [1, 1], zeros [1])``."""

    def __init__(self, x: Tensor | None, y: Tensor | None, batch_size: int | None, seed: int):
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, int(seed)
        self._blocks: dict[int, Tensor] = {}

    def batch(self, split: str, step: int) -> Batch:
        if self.x is None:
            return torch.zeros(1, 1), torch.zeros(1, dtype=torch.int64)
        block, row = divmod(int(step), 256)
        idx = self._blocks.get(block)
        if idx is None:
            if len(self._blocks) > 64:
                self._blocks.clear()
            idx = self._blocks[block] = block_indices(self.seed, SPLITS[0], block, self.x.shape[0],
                                                      int(self.batch_size), self.x.device)
        return self.x[idx[row]], self.y[idx[row]]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "LosgData":
        if self.x is None:
            return LosgData(None, None, None, self.seed)
        x = self.x.to(device=device, dtype=dtype or self.x.dtype)
        return LosgData(x, self.y.to(device), self.batch_size, self.seed)


class LosgTask(Task):
    def __init__(self, config: dict[str, Any], data: TaskData, problem: Problem):
        super().__init__(config, data)
        self.problem = problem

    def make_module(self) -> nn.Module:
        return LosgModule(self.problem)

    def model_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return tuple(batch)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return output


def _check_kind_config(value: Any) -> bool:
    return isinstance(value, dict)


FIELDS = {
    "kind": Field("str", choices=KINDS),
    "kind_config": Field("dict", check=_check_kind_config, allowed="the kind's config dict (see losg sampler)"),
    "problem_seed": Field("int", low=0, high=2**32 - 1),
}


def _check_config(kind: str, cfg: dict[str, Any]) -> None:
    """Refuse a kind config that lacks a key its problem needs (one-line ConfigError)."""
    needs = {
        "quadratic": ("dim",), "bowl": ("cond", "angle"),
        "sparse_softmax_regression": ("n_features", "n_classes", "bs", "n_samples"),
        "optimization_test_problems": ("problem",),
        "fully_connected": ("n_features", "n_classes", "activation", "bs", "n_samples", "hidden_sizes"),
        "norm": ("dim", "norm_power"), "dependency_chain": ("dim", "bs", "n_samples"),
        "outward_snake": ("dim", "bs", "n_samples"), "min_max_well": ("dim",),
        "sum_of_quadratics": ("dim", "bs", "n_samples"), "projection_quadratic": ("dim", "bs", "n_samples"),
        "sparse_problems": ("base", "zero_probability"), "rescale_problems": ("base", "scale"),
        "log_objective": ("base",),
    }[kind]
    missing = [k for k in needs if k not in cfg]
    if missing:
        raise ConfigError("task.kind_config", f"losg kind {kind!r} needs keys {missing}")
    if kind == "optimization_test_problems" and cfg["problem"] not in OPTIMIZATION_TEST_PROBLEMS:
        raise ConfigError("task.kind_config.problem", f"{cfg['problem']!r} is not one of "
                                                      f"{', '.join(OPTIMIZATION_TEST_PROBLEMS)}")
    if kind == "fully_connected" and cfg["activation"] not in ACTIVATIONS:
        raise ConfigError("task.kind_config.activation", f"{cfg['activation']!r} is not one of {', '.join(ACTIVATIONS)}")
    if "base" in needs:
        base = cfg["base"]
        if not (isinstance(base, (list, tuple)) and len(base) == 2 and base[0] in MODIFIABLE_KINDS
                and isinstance(base[1], dict)):
            raise ConfigError("task.kind_config.base", f"must be [kind, config] with kind one of "
                                                       f"{', '.join(MODIFIABLE_KINDS)}")
        _check_config(str(base[0]), dict(base[1]))


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> LosgTask:
    """Builds the task; the data is generated (no files), so ``data_dir``/``offline_data``
    are ignored."""
    kind, cfg = str(config["kind"]), dict(config["kind_config"])
    _check_config(kind, cfg)
    problem = make_problem(kind, cfg, int(config["problem_seed"]))
    if problem.dataset is not None:
        x, y = (torch.from_numpy(a) for a in problem.dataset)
        data = LosgData(x, y, problem.batch_size, config_seed(config))
    else:
        data = LosgData(None, None, None, config_seed(config))
    return LosgTask(config, data, problem)


register_task_family(FAMILY, sample, build, fields=FIELDS, released=sample_losg_tasks_family)
