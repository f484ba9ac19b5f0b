"""TaskSet's `quadratic_family` config sampler (noisy quadratics ||Ax||^2)."""

from __future__ import annotations

import numpy as np

from taskset_lab.tasks.released import sampling as s

FAMILY = "quadratic_family"
SEED_OFFSET = 0  # TaskSet seeds this family's RandomState with the bare seed

MATRIX_KINDS = ["normal", "linspace_eigen", "uniform", "logspace_eigen"]


def _matrix_dist(rng: np.random.RandomState, scale: dict) -> list:
    """`[kind, params]` for A (or its per-step noise, with the smaller ranges)."""
    kind = s.choice(rng, MATRIX_KINDS)
    if kind == "normal":
        mean = float(rng.normal(0, scale["normal_mean"]))
        return [kind, {"mean": mean, "std": float(rng.uniform(0, scale["normal_std"]))}]
    if kind == "uniform":
        low = float(rng.uniform(*scale["uniform_min"]))
        return [kind, {"min": low, "max": low + float(rng.uniform(0, scale["uniform_width"]))}]
    if kind == "linspace_eigen":
        low = float(rng.uniform(*scale["linspace_min"]))
        return [kind, {"min": low, "max": low + float(rng.uniform(0, scale["linspace_width"]))}]
    return [kind, {"min": 1e-5, "max": float(rng.uniform(1, scale["logspace_max"]))}]


_A_RANGES = {"normal_mean": 1, "normal_std": 2, "uniform_min": (-3, 1), "uniform_width": 5,
             "linspace_min": (0.01, 50), "linspace_width": 100, "logspace_max": 1000}
_A_NOISE_RANGES = {"normal_mean": 0.05, "normal_std": 0.05, "uniform_min": (-0.15, 0.05),
                   "uniform_width": 0.25, "linspace_min": (0.01, 2), "linspace_width": 10,
                   "logspace_max": 10}


def _vector_dist(rng: np.random.RandomState) -> list:
    """`[kind, params]` for the initial point."""
    kind = s.choice(rng, ["normal", "uniform"])
    if kind == "normal":
        mean = float(rng.normal(0, 1))
        return [kind, {"mean": mean, "std": float(rng.uniform(0, 2))}]
    low = float(rng.uniform(-5, 2.5))
    return [kind, {"min": low, "max": low + float(rng.uniform(0, 5))}]


def sample_quadratic_family(seed: int) -> dict:
    """The released `quadratic_family_seed<seed>` config."""
    rng = np.random.RandomState(seed + SEED_OFFSET)
    cfg = {"A_dist": _matrix_dist(rng, _A_RANGES), "initial_dist": _vector_dist(rng)}
    cfg["output_fn"] = s.choice(rng, ["identity", "log"])
    cfg["dims"] = s.sample_log_int(rng, 2, 3000)
    cfg["seed"] = int(rng.randint(0, 100000))
    cfg["loss_scale"] = s.sample_log_float(rng, 1e-5, 1e3)
    if s.choice(rng, [True, False]):
        cfg["noise"] = {"A_noise": _matrix_dist(rng, _A_NOISE_RANGES)}
    else:
        cfg["noise"] = None
    return cfg
