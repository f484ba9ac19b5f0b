"""TaskSet's `losg_tasks_family` config sampler: the 14 synthetic problem kinds from
"Learned Optimizers that Scale and Generalize" (Wichrowska et al. 2017).

A config is `[kind, kind_config, problem_seed]`. Three kinds wrap a base problem drawn
from `MODIFIABLE_KINDS`: `sparse_problems` (gradients zeroed with some probability),
`rescale_problems` (parameters rescaled) and `log_objective` (log of the loss).
`problem_seed` (0-99999) seeds the problem's own randomness (init, data, noise).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "losg_tasks_family"
# TaskSet seeds this sampler with the bare seed (no per-family offset).
SEED_OFFSET = 0

KindSampler = Callable[[s.RandomState], dict]


def _noise_coin(rng: s.RandomState) -> bool:
    """Whether the problem gets gradient noise (drawn first, used last)."""
    return s.sample_bool(rng, 0.5)


def _noise_stdev(rng: s.RandomState, is_noise: bool) -> float:
    """Noise stdev 0.01-10 (log) when noisy; no draw at all when not."""
    return s.sample_log_float(rng, 0.01, 10.0) if is_noise else 0.0


def _quadratic(rng: s.RandomState) -> dict:
    is_noise = _noise_coin(rng)
    dim = s.sample_log_int(rng, 10, 1000)
    return {"dim": dim, "noise_stdev": _noise_stdev(rng, is_noise)}


def _bowl(rng: s.RandomState) -> dict:
    is_noise = _noise_coin(rng)
    cond = s.sample_log_float(rng, 0.01, 100)
    # numpy makes the mixed list a float array, so angle 0 comes back as 0.0
    angle = s.choice(rng, [0, 0, np.pi / 4.0, np.pi / 3])
    return {"cond": cond, "angle": angle, "noise_stdev": _noise_stdev(rng, is_noise)}


def _sparse_softmax_regression(rng: s.RandomState) -> dict:
    is_noise = _noise_coin(rng)
    n_features = s.sample_log_int(rng, 2, 100)
    noise = _noise_stdev(rng, is_noise)
    return {
        "n_features": n_features,
        "n_classes": 2,
        "noise_stdev": noise,
        "bs": s.sample_log_int(rng, 1, 50),
        "n_samples": s.sample_log_int(rng, 1, 30),
    }


OPTIMIZATION_TEST_PROBLEMS = [
    "ackley", "beale", "branin", "logsumexp", "matyas", "michalewicz", "rosenbrock",
    "StyblinskiTang",
]


def _optimization_test_problems(rng: s.RandomState) -> dict:
    is_noise = _noise_coin(rng)
    problem = s.choice(rng, sorted(OPTIMIZATION_TEST_PROBLEMS))
    return {"problem": problem, "noise_stdev": _noise_stdev(rng, is_noise)}


def _fully_connected(rng: s.RandomState) -> dict:
    n_layer = s.choice(rng, [2, 3, 4, 5])
    fixed = s.sample_bool(rng, 0.5)
    cfg = {
        "n_features": s.sample_log_int(rng, 1, 16),
        "n_classes": 2,
        "activation": s.sample_activation(rng),
        "bs": s.sample_log_int(rng, 1, 200),
        "n_samples": s.sample_log_int(rng, 1, 30),
    }
    if fixed:  # one width, drawn once, for every layer
        cfg["hidden_sizes"] = [s.sample_log_int(rng, 4, 32)] * n_layer
    else:
        cfg["hidden_sizes"] = [s.sample_log_int(rng, 4, 32) for _ in range(n_layer)]
    return cfg


def _norm(rng: s.RandomState) -> dict:
    dim = s.sample_log_int(rng, 3, 1000)
    return {"dim": dim, "norm_power": float(rng.uniform(0.1, 5.0))}


def _dim_bs_samples(rng: s.RandomState) -> dict:
    """dependency_chain, outward_snake, sum_of_quadratics, projection_quadratic."""
    dim = s.sample_log_int(rng, 3, 100)
    bs = s.sample_log_int(rng, 1, 200)
    return {"dim": dim, "bs": bs, "n_samples": s.sample_log_int(rng, 100, 20000)}


def _min_max_well(rng: s.RandomState) -> dict:
    is_noise = _noise_coin(rng)
    dim = s.sample_log_int(rng, 10, 1000)
    return {"dim": dim, "noise_stdev": _noise_stdev(rng, is_noise)}


# Kinds the three wrappers draw their base problem from, in TaskSet's (unsorted) order.
MODIFIABLE_KINDS = [
    "quadratic", "bowl", "optimization_test_problems", "fully_connected", "norm",
    "dependency_chain", "outward_snake", "min_max_well", "sum_of_quadratics",
    "projection_quadratic",
]


def _base(rng: s.RandomState) -> list:
    kind = s.choice(rng, MODIFIABLE_KINDS)
    return [kind, KIND_SAMPLERS[kind](rng)]


def _sparse_problems(rng: s.RandomState) -> dict:
    is_noise = _noise_coin(rng)
    base = _base(rng)
    zero_probability = float(rng.uniform(0.9, 0.99))
    return {"base": base, "zero_probability": zero_probability,
            "noise_stdev": _noise_stdev(rng, is_noise)}


def _rescale_problems(rng: s.RandomState) -> dict:
    base = _base(rng)
    return {"base": base, "scale": s.sample_log_float(rng, 0.001, 1000.0)}


def _log_objective(rng: s.RandomState) -> dict:
    return {"base": _base(rng)}


KIND_SAMPLERS: dict[str, KindSampler] = {
    "quadratic": _quadratic,
    "bowl": _bowl,
    "sparse_softmax_regression": _sparse_softmax_regression,
    "optimization_test_problems": _optimization_test_problems,
    "fully_connected": _fully_connected,
    "norm": _norm,
    "dependency_chain": _dim_bs_samples,
    "outward_snake": _dim_bs_samples,
    "min_max_well": _min_max_well,
    "sum_of_quadratics": _dim_bs_samples,
    "projection_quadratic": _dim_bs_samples,
    "sparse_problems": _sparse_problems,
    "rescale_problems": _rescale_problems,
    "log_objective": _log_objective,
}


def sample_losg_tasks_family(seed: int) -> list:
    """The released `losg_tasks_family_seed<seed>` config `[kind, config, problem_seed]`.

    Draw order: kind (from the sorted kind names), the kind's config, then the
    problem seed as `int(uniform(0, 100000))`.
    """
    rng = np.random.RandomState(seed + SEED_OFFSET)
    kind = s.choice(rng, sorted(KIND_SAMPLERS))
    cfg = KIND_SAMPLERS[kind](rng)
    return [kind, cfg, int(rng.uniform(0, 100000))]
