"""Our optimizer families against TaskSet's and opt_list's published updates and configs.

The references below are written out in float64 NumPy, one published formula per line
(opt_list's ``NadamWCosineDecay``, TaskSet's ``Adam8POptimizer`` and TF's
``AdamOptimizer``), independently of the tensor code under test. The released configs come
from ``tests/data/taskset_reference/optimizers`` (excerpts of google-research's files,
Apache 2.0; see the README there).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from taskset_lab.optim import (
    ADAM1P, ADAM4P, ADAM6P, ADAM8P, NADAMW, BatchedOptimizer, FamilyOptimizer, hparam_list_entry,
    load_hparam_list, released_optimizer_config,
)

REF = Path(__file__).parent / "data" / "taskset_reference" / "optimizers"
D = torch.float64
TOL = 1e-12


# ----------------------------------------------------------------- published updates, in NumPy


def ref_opt_list_lr(s: int, total: int, lr: float, warmup: float, const: float, min_mult: float) -> float:
    """opt_list's cosine schedule at the 0-based step ``s`` (as published, float64)."""
    gs = min(float(s), float(total))
    constant_steps = total * const
    x = max(gs, constant_steps)
    min_lr = min_mult * lr
    if warmup:
        warmup_steps = total * max(warmup, const)
        is_warmup = 1.0 if warmup_steps > gs else 0.0
        warmup_lr = gs / warmup_steps * lr
    else:
        warmup_lr, is_warmup = lr, 0.0
    decay = (lr - min_lr) * (math.cos((x - constant_steps) * math.pi / (total - constant_steps)) / 2.0 + 0.5) + min_lr
    return decay * (1.0 - is_warmup) + is_warmup * warmup_lr


class RefNAdamW:
    """opt_list's NadamWCosineDecay for one numpy parameter."""

    def __init__(self, hp: dict, total: int, p: np.ndarray):
        self.hp, self.total, self.p = hp, total, p.copy()
        self.m, self.v, self.s = np.zeros_like(p), np.zeros_like(p), 0

    def step(self, grad: np.ndarray) -> np.ndarray:
        h = self.hp
        lr = ref_opt_list_lr(self.s, self.total, h["lr"], h["warmup_fraction"], h["constant_fraction"],
                             h["min_lr_mult"])
        grad = grad - self.p * h["l2_weight_decay"]
        b1, b2 = h["beta1"], h["beta2"]
        self.m = self.m * b1 + (1 - b1) * grad
        self.v = self.v * b2 + (1 - b2) * grad * grad
        self.s += 1
        t = self.s
        lr_t = lr * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        numerator = b1 * self.m + (1.0 - b1) * grad if h["nesterov"] else self.m
        step = lr_t * numerator / (np.sqrt(self.v) + h["eps"])
        step = step + lr_t * h["decoupled_weight_decay"] * self.p
        self.p = self.p - step
        return self.p


class RefAdam8p:
    """TaskSet's Adam8POptimizer (adam8p: training_steps left at 10000; adam6p: passed)."""

    def __init__(self, hp: dict, training_steps: int, p: np.ndarray):
        self.hp, self.training_steps, self.p = hp, training_steps, p.copy()
        self.m, self.v, self.global_step = np.zeros_like(p), np.zeros_like(p), 0

    def step(self, grad: np.ndarray) -> np.ndarray:
        h = self.hp
        grad = grad + h.get("l1", 0.0) * np.sign(self.p) + h.get("l2", 0.0) * 2.0 * self.p
        r = float(10000) / self.training_steps * float(self.global_step)
        lr = math.exp(-h["exponential_decay"] * r) * max(1 - h["linear_decay"] * r, 0.0) * h["lr"]
        self.m = h["beta1"] * self.m + (1.0 - h["beta1"]) * grad
        self.v = h["beta2"] * self.v + (1.0 - h["beta2"]) * np.square(grad)
        # TaskSet keeps β^t as a running product; in float64 that differs from β**t by
        # rounding only (up to ~1e-12 relative for β within 1e-4 of 1), so the power is taken
        t = self.global_step + 1
        m_hat, v_hat = self.m / (1 - h["beta1"] ** t), self.v / (1 - h["beta2"] ** t)
        self.p = self.p - lr * (m_hat / (np.sqrt(v_hat + 1e-10) + h["eps"]))
        self.global_step += 1
        return self.p


class RefTFAdam:
    """tf.train.AdamOptimizer (ε-hat: added before the bias correction is folded into lr)."""

    def __init__(self, hp: dict, total: int, p: np.ndarray):
        self.lr, self.b1, self.b2, self.eps = hp["lr"], hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-8)
        self.p, self.m, self.v, self.t = p.copy(), np.zeros_like(p), np.zeros_like(p), 0

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        lr_t = self.lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        self.p = self.p - lr_t * self.m / (np.sqrt(self.v) + self.eps)
        return self.p


REFERENCES = {"nadamw": RefNAdamW, "adam8p": lambda hp, total, p: RefAdam8p(hp, 10000, p),
              "adam6p": RefAdam8p, "adam4p": RefTFAdam, "adam1p": RefTFAdam}
FAMILIES = {"nadamw": NADAMW, "adam8p": ADAM8P, "adam6p": ADAM6P, "adam4p": ADAM4P, "adam1p": ADAM1P}


def random_walk(k: int, shape: tuple[int, ...], steps: int, seed: int):
    """Start parameters [k, *shape] and per-step gradients at scales from 1e-3 to 10."""
    gen = np.random.default_rng(seed)
    p0 = gen.normal(size=(k,) + shape)
    grads = gen.normal(size=(steps, k) + shape) * 10.0 ** gen.uniform(-3, 1, size=(steps, k) + (1,) * len(shape))
    return p0, grads


def max_rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest |ours - ref| over each config's largest |ref| (per config row)."""
    axes = tuple(range(1, ref.ndim))
    scale = np.maximum(np.abs(ref).max(axis=axes, keepdims=True), 1e-300)
    return float((np.abs(ours - ref) / scale).max())


def check_batched_against_reference(family_name: str, configs: list[dict], total: int, steps: int,
                                    seed: int = 0) -> None:
    """Every step of the batched form equals the published update, for every config."""
    fam = FAMILIES[family_name]
    k = len(configs)
    p0, grads = random_walk(k, (3, 4), steps, seed)
    refs = [REFERENCES[family_name](hp, total, p0[i]) for i, hp in enumerate(configs)]
    opt = BatchedOptimizer.from_configs(fam, configs, total, dtype=D)
    params = {"w": torch.tensor(p0)}
    state = opt.init(params)
    worst = 0.0
    for s in range(steps):
        params, state = opt.step(params, {"w": torch.tensor(grads[s])}, state)
        ref = np.stack([r.step(grads[s, i]) for i, r in enumerate(refs)])
        worst = max(worst, max_rel_err(params["w"].numpy(), ref))
        assert worst <= TOL, f"{family_name}: step {s + 1} differs by {worst:.3g} (relative)"
    assert np.abs(params["w"].numpy() - p0).max() > 1e-6  # the configs really moved


# ----------------------------------------------------------------- nadamw = opt_list


def test_opt_list_first_20_entries_match_reference_update_for_1000_steps():
    configs = [e["hparams"] for e in load_hparam_list("opt_list")["entries"][:20]]
    # the 20 entries cover both kinds of momentum, warmups and partial decays
    assert {c["nesterov"] for c in configs} == {True, False}
    assert any(c["warmup_fraction"] > 0 for c in configs)
    assert any(0 < c["min_lr_mult"] < 1 for c in configs)
    assert any(c["l2_weight_decay"] > 0 for c in configs)
    # total < steps: the schedule also holds its final value past T
    check_batched_against_reference("nadamw", configs, total=900, steps=1000)


def test_nadamw_family_optimizer_matches_reference_with_warmup_and_min_lr():
    """The torch.optim front end, one config at a time: nesterov + warmup, plain + min_lr_mult."""
    cfgs = [dict(NADAMW.defaults(), lr=3e-2, beta1=0.8, beta2=0.99, eps=1e-3, nesterov=True,
                 decoupled_weight_decay=1e-2, l2_weight_decay=3e-2, warmup_fraction=0.05,
                 min_lr_mult=0.1, constant_fraction=0.3),
            dict(NADAMW.defaults(), lr=1e-2, eps=4.2, beta2=0.99998, warmup_fraction=0.0,
                 min_lr_mult=0.25, constant_fraction=0.5)]
    steps, total = 300, 250
    p0, grads = random_walk(len(cfgs), (5,), steps, seed=3)
    for i, hp in enumerate(cfgs):
        ref = RefNAdamW(hp, total, p0[i])
        p = torch.nn.Parameter(torch.tensor(p0[i]))
        opt = FamilyOptimizer([p], NADAMW, hp, total)
        for s in range(steps):
            p.grad = torch.tensor(grads[s, i])
            opt.step()
            want = ref.step(grads[s, i])
            assert max_rel_err(p.detach().numpy()[None], want[None]) <= TOL, (i, s)


def test_opt_list_schedule_warmup_starts_at_zero_and_lasts_the_larger_fraction():
    hp = {"lr": 1.0, "warmup_fraction": 0.1, "constant_fraction": 0.4, "min_lr_mult": 0.2}
    from taskset_lab.optim import opt_list_cosine_lr

    total = 100
    got = [float(opt_list_cosine_lr(torch.tensor(float(s), dtype=D), total,
                                    *(torch.tensor(hp[k], dtype=D) for k in
                                      ("lr", "warmup_fraction", "constant_fraction", "min_lr_mult"))))
           for s in range(130)]
    want = [ref_opt_list_lr(s, total, hp["lr"], hp["warmup_fraction"], hp["constant_fraction"], hp["min_lr_mult"])
            for s in range(130)]
    np.testing.assert_allclose(got, want, rtol=TOL, atol=0)
    assert got[0] == 0.0 and got[20] == pytest.approx(0.5)  # warmup over max(0.1, 0.4)·T = 40 steps
    assert got[40] == 1.0 and got[100] == pytest.approx(0.2) and got[129] == got[100]


def test_nadamw_l2_sign_is_the_published_one():
    """One step from zero moments: the L2 term enters as g - l2·θ (it pushes θ away from 0)."""
    hp = dict(NADAMW.defaults(), lr=0.1, eps=1.0, l2_weight_decay=0.5, constant_fraction=0.0)
    p = torch.nn.Parameter(torch.tensor([2.0], dtype=D))
    p.grad = torch.zeros(1, dtype=D)  # no loss gradient: only the L2 term acts
    FamilyOptimizer([p], NADAMW, hp, total_steps=10).step()
    g = -0.5 * 2.0  # g - l2·θ
    m, v = 0.1 * g, 0.001 * g * g
    lr_t = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
    new = float(p.detach())
    assert new == pytest.approx(2.0 - lr_t * m / (math.sqrt(v) + 1.0), rel=1e-14)
    assert new > 2.0


def test_quadratic_trajectory_matches_reference_and_differs_from_torch_style_eps():
    """Gradients that depend on the parameters: entry 4 (ε = 4.2, β2 = 0.99998) on a quadratic."""
    _, hp = hparam_list_entry("opt_list", 4)
    gen = np.random.default_rng(1)
    q = gen.normal(size=(20, 20))
    a = q @ q.T / 20 + 0.1 * np.eye(20)
    p0 = gen.normal(size=20)
    total = 300
    ref = RefNAdamW(hp, total, p0)
    p = torch.nn.Parameter(torch.tensor(p0))
    opt = FamilyOptimizer([p], NADAMW, hp, total)
    for _ in range(total):
        g = a @ ref.p
        p.grad = torch.tensor(a @ p.detach().numpy())
        opt.step()
        ref.step(g)
    np.testing.assert_allclose(p.detach().numpy(), ref.p, rtol=1e-10, atol=1e-12)
    loss = 0.5 * ref.p @ a @ ref.p
    assert loss < 0.5 * p0 @ a @ p0  # it trains


# ----------------------------------------------------------------- TaskSet's Adam families


def _released_hparams(family) -> list[dict]:
    data = json.loads((REF / f"{family.released_name}.json").read_text())
    return [family.from_released(v[0]) for v in list(data.values())[:12]]


@pytest.mark.parametrize("name", ["adam8p", "adam6p", "adam4p", "adam1p"])
def test_adam_families_match_taskset_update_for_600_steps(name):
    configs = _released_hparams(FAMILIES[name])
    if name in ("adam8p", "adam6p"):
        # a decay that reaches its linear floor inside the run (adam6p: r = 10000/150·s)
        configs.append(dict(configs[0], linear_decay=1e-4, exponential_decay=1e-3))
    check_batched_against_reference(name, configs, total=150, steps=600, seed=7)


def test_adam8p_decay_ignores_the_run_length_and_adam6p_rescales_it():
    hp8 = dict(ADAM8P.defaults(), lr=1.0, linear_decay=1e-4, exponential_decay=0.0)
    hp6 = {k: hp8[k] for k in ADAM6P.hparam_names}

    def lr_after(fam, hp, total, steps):
        """The rate of update number ``steps`` seen through a unit gradient from zero moments."""
        opt = BatchedOptimizer.from_configs(fam, [hp], total, dtype=D)
        state = opt.init({"w": torch.zeros(1, 1, dtype=D)})
        state["w"]["step"] = torch.tensor(float(steps - 1))
        new, _ = opt.step({"w": torch.zeros(1, 1, dtype=D)}, {"w": torch.ones(1, 1, dtype=D)}, state)
        # m̂ = g·(1-β1)/(1-β1ᵗ), v̂ likewise: recover lr from the step
        t = steps
        m_hat = (1 - 0.9) / (1 - 0.9 ** t)
        v_hat = (1 - 0.999) / (1 - 0.999 ** t)
        return -float(new["w"]) / (m_hat / (math.sqrt(v_hat + 1e-10) + 1e-8))

    # adam8p: step 5001 (s = 5000) has rate 1 - 1e-4·5000 = 0.5 whatever total_steps is
    assert lr_after(ADAM8P, hp8, 100, 5001) == pytest.approx(0.5, rel=1e-12)
    assert lr_after(ADAM8P, hp8, 10000, 5001) == pytest.approx(0.5, rel=1e-12)
    # adam6p over 100 steps: s = 50 is r = 5000
    assert lr_after(ADAM6P, hp6, 100, 51) == pytest.approx(0.5, rel=1e-12)
    assert lr_after(ADAM6P, hp6, 100, 1) == pytest.approx(1.0, rel=1e-12)  # 0-based: no decay yet


# ----------------------------------------------------------------- released configs


@pytest.mark.parametrize("file", ["adam8p_wide_grid", "adam6p_wide_grid", "adam4p_wide_grid",
                                  "adam1p_wide_grid", "nadamw_configs"])
def test_released_configs_are_our_samplers(file):
    data = json.loads((REF / f"{file}.json").read_text())
    assert len(data) >= 40
    for name, (hparams, family) in data.items():
        ours = released_optimizer_config(name)
        assert ours[1] == family, name
        assert list(ours[0]) == list(hparams), name  # same keys, same order
        for key, value in hparams.items():
            assert type(ours[0][key]) is type(value), (name, key)
            if isinstance(value, float):
                assert ours[0][key] == pytest.approx(value, rel=TOL, abs=0), (name, key)
            else:
                assert ours[0][key] == value, (name, key)


def test_released_names_the_issue_mentions():
    for name in ("adam8p_wide_grid_seed12", "adam6p_wide_grid_seed3", "adam4p_wide_grid_seed7",
                 "adam1p_wide_grid_seed0", "nadamw_grid_seed251"):
        hparams, family = released_optimizer_config(name)
        assert name.startswith(family)
    # adam1p draws from its own generator, adam4p shares adam8p's first four draws
    assert released_optimizer_config("adam1p_wide_grid_seed0")[0]["learning_rate"] != \
        released_optimizer_config("adam8p_wide_grid_seed0")[0]["learning_rate"]
    assert released_optimizer_config("adam4p_wide_grid_seed7")[0] == {
        k: v for k, v in released_optimizer_config("adam8p_wide_grid_seed7")[0].items()
        if k in ("learning_rate", "beta1", "beta2", "epsilon")}
    with pytest.raises(KeyError, match="released config name"):
        released_optimizer_config("adagrad_wide_grid_seed0")
    with pytest.raises(KeyError):
        released_optimizer_config("nadamw_grid_seedX")


def test_opt_list_ships_the_published_order_with_sampler_hparams():
    names = [n.strip() for n in (REF / "nadamw_opt_list.txt").read_text().splitlines() if n.strip()]
    lst = load_hparam_list("opt_list")
    assert lst["optimizer"] == "nadamw" and len(lst["entries"]) == len(names) == 1000
    assert [e["name"] for e in lst["entries"]] == names
    configs = json.loads((REF / "nadamw_configs.json").read_text())
    seen = 0
    for entry in lst["entries"]:
        assert entry["config_id"] == int(entry["name"].rsplit("seed", 1)[1])
        if entry["name"] in configs:  # the excerpt holds some of the list's names
            seen += 1
            want = NADAMW.from_released(configs[entry["name"]][0])
            assert entry["hparams"] == pytest.approx(want, rel=TOL)
    assert seen >= 5
