"""``lab_two_d`` (this project's family; TaskSet's 2-D tasks are the fixed ``TwoD_*``): classic 2-D test functions; the parameter is one point ``x`` of shape [2].

The initial point is drawn uniformly in a box of half-width ``init_radius`` around
``init_center`` (sampled inside the function's usual domain). Optional noise: the loss
gets ``noise . x`` with ``noise`` from NoiseData, i.e. additive Gaussian gradient noise.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from taskset_lab.tasks.base import Batch, NoiseData, Task
from taskset_lab.tasks.nn import check_choice, derived_seed, family_rng, log_uniform
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.fields import Field

FAMILY = "lab_two_d"


def _rosenbrock(a: Tensor, b: Tensor) -> Tensor:
    return (1 - a) ** 2 + 100 * (b - a**2) ** 2


def _beale(a: Tensor, b: Tensor) -> Tensor:
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def _booth(a: Tensor, b: Tensor) -> Tensor:
    return (a + 2 * b - 7) ** 2 + (2 * a + b - 5) ** 2


def _styblinski_tang(a: Tensor, b: Tensor) -> Tensor:
    return 0.5 * (a**4 - 16 * a**2 + 5 * a + b**4 - 16 * b**2 + 5 * b)


def _himmelblau(a: Tensor, b: Tensor) -> Tensor:
    return (a**2 + b - 11) ** 2 + (a + b**2 - 7) ** 2


def _rastrigin(a: Tensor, b: Tensor) -> Tensor:
    return 20 + a**2 - 10 * torch.cos(2 * math.pi * a) + b**2 - 10 * torch.cos(2 * math.pi * b)


def _ackley(a: Tensor, b: Tensor) -> Tensor:
    # The small constant keeps the gradient of the square root finite at the optimum.
    r = torch.sqrt(0.5 * (a**2 + b**2) + 1e-12)
    c = 0.5 * (torch.cos(2 * math.pi * a) + torch.cos(2 * math.pi * b))
    return -20 * torch.exp(-0.2 * r) - torch.exp(c) + math.e + 20


def _matyas(a: Tensor, b: Tensor) -> Tensor:
    return 0.26 * (a**2 + b**2) - 0.48 * a * b


def _three_hump_camel(a: Tensor, b: Tensor) -> Tensor:
    return 2 * a**2 - 1.05 * a**4 + a**6 / 6 + a * b + b**2


Box = tuple[tuple[float, float], tuple[float, float]]

# name -> (function of the two coordinates, usual search domain per coordinate)
FUNCTIONS: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Box]] = {
    "rosenbrock": (_rosenbrock, ((-2.0, 2.0), (-1.0, 3.0))),
    "beale": (_beale, ((-4.5, 4.5), (-4.5, 4.5))),
    "booth": (_booth, ((-10.0, 10.0), (-10.0, 10.0))),
    "styblinski_tang": (_styblinski_tang, ((-5.0, 5.0), (-5.0, 5.0))),
    "himmelblau": (_himmelblau, ((-5.0, 5.0), (-5.0, 5.0))),
    "rastrigin": (_rastrigin, ((-5.12, 5.12), (-5.12, 5.12))),
    "ackley": (_ackley, ((-5.0, 5.0), (-5.0, 5.0))),
    "matyas": (_matyas, ((-10.0, 10.0), (-10.0, 10.0))),
    "three_hump_camel": (_three_hump_camel, ((-5.0, 5.0), (-5.0, 5.0))),
}
NAMES = tuple(sorted(FUNCTIONS))


def sample(seed: int) -> dict[str, Any]:
    rng = family_rng(FAMILY.removeprefix("lab_"), seed)  # the stream of its 0.1 name: same configs
    name = NAMES[rng.integers(len(NAMES))]
    box = FUNCTIONS[name][1]
    width = min(hi - lo for lo, hi in box)
    return {
        "family": FAMILY,
        "function": name,
        "init_center": [float(rng.uniform(lo, hi)) for lo, hi in box],
        "init_radius": width * log_uniform(rng, 0.005, 0.1),
        "noise_scale": log_uniform(rng, 0.01, 1.0) if rng.random() < 0.5 else 0.0,
        "data_seed": derived_seed(rng),
    }


class Point2D(nn.Module):
    def __init__(self, center: list[float], radius: float):
        super().__init__()
        offset = (torch.rand(2) * 2 - 1) * radius
        self.x = nn.Parameter(torch.tensor(center, dtype=torch.float32) + offset)

    def forward(self) -> Tensor:
        return self.x


class TwoDTask(Task):
    def make_module(self) -> nn.Module:
        return Point2D(self.config["init_center"], float(self.config["init_radius"]))

    def model_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return ()

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        fn = FUNCTIONS[self.config["function"]][0]
        return fn(output[0], output[1]) + (batch[0] * output).sum()


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> TwoDTask:
    check_choice(config, "function", NAMES)
    data = NoiseData((2,), float(config.get("noise_scale", 0.0)), int(config["data_seed"]))
    return TwoDTask(config, data)


FIELDS = {
    "function": Field("str", choices=NAMES),
    "init_center": Field("list", items="float", allowed="[x, y]", check=lambda v: len(v) == 2),
    "init_radius": Field("float", low=0.0),
    "noise_scale": Field("float", low=0.0, optional=True),
    "data_seed": Field("int", low=0),
}

register_task_family(FAMILY, sample, build, fields=FIELDS)
