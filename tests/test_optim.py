"""Optimizer families: search spaces, schedules, the two front ends, torch references, lists."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from taskset_lab.errors import DataError
from taskset_lab.optim import (
    ADAM1P, ADAM4P, ADAM8P, NADAMW, Adam1p, Adam4p, Adam8p, BatchedOptimizer, FamilyOptimizer,
    NAdamW, family_names, get_family, hparam_list_optimizer, linear_exponential_decay,
    load_hparam_list, sampled_optimizer, warmup_constant_cosine,
)

D = torch.float64


def make_problem(seed: int = 0):
    """A small least-squares problem with a matrix and a bias parameter."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=g, dtype=D)
    y = torch.randn(16, 3, generator=g, dtype=D)
    w0 = torch.randn(5, 3, generator=g, dtype=D)
    b0 = torch.randn(3, generator=g, dtype=D)

    def loss(w, b):
        return ((x @ w + b - y) ** 2).mean()

    return loss, w0, b0


def run_torch(opt_factory, steps: int = 50, seed: int = 0, penalty=None):
    """Parameters after ``steps`` steps of an optimizer on the problem (optional extra loss)."""
    loss, w0, b0 = make_problem(seed)
    w = torch.nn.Parameter(w0.clone())
    b = torch.nn.Parameter(b0.clone())
    opt = opt_factory([w, b])
    for _ in range(steps):
        opt.zero_grad()
        total = loss(w, b) + (penalty([w, b]) if penalty else 0.0)
        total.backward()
        opt.step()
    return w.detach(), b.detach()


def assert_same(a, b, tol):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


# --- against torch.optim ---------------------------------------------------------------


def test_adam4p_and_adam1p_equal_torch_adam():
    kw = dict(lr=3e-2, beta1=0.8, beta2=0.99, eps=1e-6)
    ref = run_torch(lambda ps: torch.optim.Adam(ps, lr=3e-2, betas=(0.8, 0.99), eps=1e-6))
    ours = run_torch(lambda ps: Adam4p(ps, **kw, total_steps=50))
    assert_same(ours, ref, 1e-10)
    start = make_problem()[1]
    assert (ours[0] - start).abs().max() > 0.1  # it really moved
    ref1 = run_torch(lambda ps: torch.optim.Adam(ps, lr=1e-2))
    assert_same(run_torch(lambda ps: Adam1p(ps, lr=1e-2, total_steps=50)), ref1, 1e-10)


def test_adam8p_penalties_are_loss_terms():
    """adam8p with l1/l2 (no decay) == Adam on loss + l1·Σ|θ| + l2·Σθ²."""
    l1, l2 = 3e-3, 2e-2

    def penalty(ps):
        return sum(l1 * p.abs().sum() + l2 * (p ** 2).sum() for p in ps)

    ref = run_torch(lambda ps: torch.optim.Adam(ps, lr=1e-2), penalty=penalty)
    ours = run_torch(lambda ps: Adam8p(ps, lr=1e-2, l1=l1, l2=l2, total_steps=50))
    assert_same(ours, ref, 1e-10)
    unpenalized = run_torch(lambda ps: Adam8p(ps, lr=1e-2, total_steps=50))
    assert (ours[0] - unpenalized[0]).abs().max() > 1e-4


def test_nadamw_plain_decoupled_equals_adamw_and_l2_equals_adam_weight_decay():
    ref = run_torch(lambda ps: torch.optim.AdamW(ps, lr=2e-2, betas=(0.85, 0.995), eps=1e-7,
                                                 weight_decay=0.05))
    ours = run_torch(lambda ps: NAdamW(ps, lr=2e-2, beta1=0.85, beta2=0.995, eps=1e-7,
                                       decoupled_weight_decay=0.05, total_steps=50))
    assert_same(ours, ref, 1e-10)
    ref_l2 = run_torch(lambda ps: torch.optim.Adam(ps, lr=2e-2, weight_decay=0.03))
    ours_l2 = run_torch(lambda ps: NAdamW(ps, lr=2e-2, l2_weight_decay=0.03, total_steps=50))
    assert_same(ours_l2, ref_l2, 1e-10)
    assert (ours[0] - ours_l2[0]).abs().max() > 1e-4


class ReferenceNAdamW(torch.optim.Optimizer):
    """Nesterov Adam written out plainly, one scalar formula at a time (independent check)."""

    def __init__(self, params, lr, b1, b2, eps, wd, l2, warmup, const, min_mult, total):
        super().__init__(params, dict(lr=lr))
        self.c = dict(b1=b1, b2=b2, eps=eps, wd=wd, l2=l2, warmup=warmup, const=const,
                      min_mult=min_mult, total=total)
        self.t = 0

    def lr_at(self, t: int) -> float:
        c, total = self.c, self.c["total"]
        warm = c["warmup"] * total
        mult = min(t / warm, 1.0) if warm > 0 else 1.0
        start = max(c["const"], c["warmup"]) * total
        if t > start:
            frac = min((t - start) / (total - start), 1.0)
            mult *= c["min_mult"] + (1 - c["min_mult"]) * (1 + math.cos(math.pi * frac)) / 2
        return self.param_groups[0]["lr"] * mult

    @torch.no_grad()
    def step(self):
        self.t += 1
        t, c = self.t, self.c
        lr = self.lr_at(t)
        for p in self.param_groups[0]["params"]:
            st = self.state[p]
            if not st:
                st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
            g = p.grad + c["l2"] * p
            st["m"] = c["b1"] * st["m"] + (1 - c["b1"]) * g
            st["v"] = c["b2"] * st["v"] + (1 - c["b2"]) * g * g
            m_hat = (c["b1"] * st["m"] / (1 - c["b1"] ** (t + 1))
                     + (1 - c["b1"]) * g / (1 - c["b1"] ** t))
            v_hat = st["v"] / (1 - c["b2"] ** t)
            p -= lr * (m_hat / (v_hat.sqrt() + c["eps"]) + c["wd"] * p)


def test_nesterov_nadamw_matches_plain_reference():
    c = dict(lr=5e-2, b1=0.9, b2=0.98, eps=1e-8, wd=0.01, l2=0.02, warmup=0.1, const=0.3,
             min_mult=0.05, total=60)
    ref = run_torch(lambda ps: ReferenceNAdamW(ps, **c), steps=60)
    ours = run_torch(lambda ps: NAdamW(
        ps, lr=5e-2, beta1=0.9, beta2=0.98, eps=1e-8, nesterov=True, decoupled_weight_decay=0.01,
        l2_weight_decay=0.02, warmup_fraction=0.1, constant_fraction=0.3, min_lr_mult=0.05,
        total_steps=60), steps=60)
    assert_same(ours, ref, 1e-10)
    no_nesterov = run_torch(lambda ps: NAdamW(
        ps, lr=5e-2, beta1=0.9, beta2=0.98, eps=1e-8, nesterov=False, decoupled_weight_decay=0.01,
        l2_weight_decay=0.02, warmup_fraction=0.1, constant_fraction=0.3, min_lr_mult=0.05,
        total_steps=60), steps=60)
    assert (ours[0] - no_nesterov[0]).abs().max() > 1e-5


# --- schedules ---------------------------------------------------------------------------


def test_adam8p_schedule_formula():
    lin, exp_, total = 2e-5, 3e-4, 4000
    steps = torch.tensor([1.0, 10.0, 1000.0, 3000.0, 4000.0], dtype=D)
    got = linear_exponential_decay(steps, total, torch.tensor(lin, dtype=D), torch.tensor(exp_, dtype=D))
    for s, v in zip(steps.tolist(), got.tolist()):
        tv = 10000.0 / total * s
        assert v == pytest.approx(math.exp(-exp_ * tv) * max(1 - lin * tv, 0.0), rel=1e-12)
    # the linear part hits zero and stays there
    big = linear_exponential_decay(torch.tensor([50.0, 100.0], dtype=D), 100,
                                   torch.tensor(1e-4, dtype=D), torch.tensor(0.0, dtype=D))
    assert big.tolist() == [0.5, 0.0]


def test_adam8p_applies_its_schedule():
    """One step from zero moments moves every weight by exactly lr(1)·sign-ish direction."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=D))
    opt = Adam8p([p], lr=0.1, beta1=0.5, beta2=0.5, eps=1e-300, linear_decay=1e-4,
                 exponential_decay=1e-3, total_steps=200)
    p.grad = torch.tensor([4.0, -8.0], dtype=D)
    opt.step()
    tv = 10000.0 / 200 * 1
    lr1 = 0.1 * math.exp(-1e-3 * tv) * (1 - 1e-4 * tv)
    torch.testing.assert_close(p.detach(), torch.tensor([1.0 - lr1, -2.0 + lr1], dtype=D),
                               rtol=1e-12, atol=1e-12)


def _wcc(step, total, warmup, const, min_mult):
    t = lambda v: torch.tensor(v, dtype=D)  # noqa: E731
    return warmup_constant_cosine(t(step), total, t(warmup), t(const), t(min_mult)).item()


def test_nadamw_schedule_shape():
    T = 100
    # warmup over 10 steps, constant until 40, cosine to 0.1 at 100
    assert _wcc(1, T, 0.1, 0.4, 0.1) == pytest.approx(0.1)
    assert _wcc(5, T, 0.1, 0.4, 0.1) == pytest.approx(0.5)
    assert _wcc(10, T, 0.1, 0.4, 0.1) == pytest.approx(1.0)
    assert _wcc(40, T, 0.1, 0.4, 0.1) == pytest.approx(1.0)
    assert _wcc(70, T, 0.1, 0.4, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert _wcc(100, T, 0.1, 0.4, 0.1) == pytest.approx(0.1)
    # constant before warmup ends: decay starts right after warmup
    assert _wcc(20, T, 0.2, 0.05, 0.0) == pytest.approx(1.0)
    assert _wcc(60, T, 0.2, 0.05, 0.0) == pytest.approx(0.5)
    assert _wcc(100, T, 0.2, 0.05, 0.0) == pytest.approx(0.0, abs=1e-15)
    # no warmup, constant_fraction 1: flat
    assert [_wcc(s, T, 0.0, 1.0, 0.0) for s in (1, 50, 100)] == [1.0, 1.0, 1.0]
    # batched hparams give per-config multipliers
    hp = lambda *v: torch.tensor(v, dtype=D).view(3, 1)  # noqa: E731
    got = warmup_constant_cosine(torch.tensor(5.0, dtype=D), T, hp(0.1, 0.0, 0.0),
                                 hp(1.0, 1.0, 0.0), hp(0.0, 0.0, 0.0))
    torch.testing.assert_close(got.flatten(), torch.tensor([0.5, 1.0, 0.5 * (1 + math.cos(math.pi * 0.05))],
                                                           dtype=D))


# --- batched == single -------------------------------------------------------------------


SEEDS = {"adam8p": [0, 1, 2, 3, 4], "adam4p": [5, 6, 7, 8, 9], "adam1p": [10, 11, 12, 13, 14],
         "nadamw": [20, 21, 22, 23, 24]}


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_batched_matches_single_configs(name):
    fam = get_family(name)
    configs = [fam.sample(s) for s in SEEDS[name]]
    if name == "nadamw":
        assert {c["nesterov"] for c in configs} == {True, False}
        assert any(c["warmup_fraction"] > 0 for c in configs)
    for c in configs:  # keep 30 steps informative (visible moves, finite); the rest as drawn
        c["lr"] = min(max(c["lr"], 1e-3), 0.05)
    K, T, steps = len(configs), 40, 30
    loss, w0, b0 = make_problem(1)
    stacked = {"w": w0.expand(K, -1, -1).clone() + 0.1 * torch.arange(K, dtype=D).view(K, 1, 1),
               "b": b0.expand(K, -1).clone()}
    batched = BatchedOptimizer.from_configs(fam, configs, total_steps=T, dtype=D)
    state = batched.init(stacked)
    singles = []
    for k, c in enumerate(configs):
        w = torch.nn.Parameter(stacked["w"][k].clone())
        b = torch.nn.Parameter(stacked["b"][k].clone())
        singles.append(([w, b], FamilyOptimizer([w, b], fam, c, total_steps=T)))
    for _ in range(steps):
        for (w, b), opt in singles:  # the same gradients reach both front ends
            opt.zero_grad()
            loss(w, b).backward()
        grads = {"w": torch.stack([ps[0].grad for ps, _ in singles]),
                 "b": torch.stack([ps[1].grad for ps, _ in singles])}
        stacked, state = batched.step(stacked, grads, state)
        for _, opt in singles:
            opt.step()
    for k, ((w, b), _) in enumerate(singles):
        assert torch.isfinite(w).all()
        torch.testing.assert_close(stacked["w"][k], w.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stacked["b"][k], b.detach(), rtol=1e-12, atol=1e-12)
    assert (stacked["w"][0] - w0).abs().max() > 1e-3
    assert int(state["w"]["step"]) == steps


# --- search spaces -----------------------------------------------------------------------


def _in(v, lo, hi):
    return lo <= v <= hi


def test_samplers_in_range_and_deterministic():
    n = 5000
    draws = {name: [get_family(name).sample(s) for s in range(n)] for name in family_names()}
    assert set(draws) == {"adam8p", "adam4p", "adam1p", "nadamw"}
    for name, ds in draws.items():
        assert get_family(name).sample(123) == ds[123]
        assert ds[0] != ds[1]
        for d in ds[:200]:
            get_family(name).validate(d)
    for d in draws["adam8p"]:
        assert _in(d["lr"], 1e-8, 10) and _in(1 - d["beta1"], 1e-4 * (1 - 1e-9), 1)
        assert _in(1 - d["beta2"], 1e-6 * (1 - 1e-9), 1) and _in(d["eps"], 1e-10, 1e3)
        assert _in(d["l1"], 1e-8, 10) and _in(d["l2"], 1e-8, 10)
        assert _in(d["linear_decay"], 1e-7, 1e-4) and _in(d["exponential_decay"], 1e-6, 1e-3)
    lrs = np.log10([d["lr"] for d in draws["adam8p"]])
    assert lrs.min() < -7.5 and lrs.max() > 0.5 and abs(lrs.mean() - (-3.5)) < 0.2  # log-uniform
    nd = draws["nadamw"]
    for d in nd:
        assert _in(d["lr"], 1e-5, 1) and _in(1 - d["beta1"], 1e-3 * (1 - 1e-9), 1)
        assert _in(1 - d["beta2"], 1e-5 * (1 - 1e-9), 1) and _in(d["eps"], 1e-8, 1e4)
        assert isinstance(d["nesterov"], bool)
        for k in ("decoupled_weight_decay", "l2_weight_decay"):
            assert d[k] == 0.0 or _in(d[k], 1e-5, 0.1)
        assert d["decoupled_weight_decay"] > 0 or d["l2_weight_decay"] > 0
        assert d["warmup_fraction"] == 0.0 or _in(d["warmup_fraction"], 1e-5, 0.1)
        assert d["min_lr_mult"] == 0.0 or _in(d["min_lr_mult"], 1e-5, 1)
        assert _in(d["constant_fraction"], 0, 1)
    frac = lambda pred: sum(map(pred, nd)) / n  # noqa: E731
    assert abs(frac(lambda d: d["nesterov"]) - 0.5) < 0.03
    assert abs(frac(lambda d: d["warmup_fraction"] == 0) - 0.5) < 0.03
    assert abs(frac(lambda d: d["min_lr_mult"] == 0) - 0.5) < 0.03
    for mode in [(True, False), (False, True), (True, True)]:
        got = frac(lambda d: (d["decoupled_weight_decay"] > 0, d["l2_weight_decay"] > 0) == mode)
        assert abs(got - 1 / 3) < 0.03
    assert abs(np.mean([d["constant_fraction"] for d in nd]) - 0.5) < 0.02


def test_adam4p_and_adam1p_share_adam8p_draws():
    assert ADAM4P.hparam_names == ("lr", "beta1", "beta2", "eps")
    assert ADAM1P.hparam_names == ("lr",)
    for s in (0, 7, 99, 12345):
        full = ADAM8P.sample(s)
        assert ADAM4P.sample(s) == {k: full[k] for k in ("lr", "beta1", "beta2", "eps")}
        assert ADAM1P.sample(s) == {"lr": full["lr"]}


def test_sampled_optimizer_is_the_draw():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = sampled_optimizer([p], "nadamw", seed=4, total_steps=10)
    assert isinstance(opt, torch.optim.Optimizer)
    draw = NADAMW.sample(4)
    for k, v in draw.items():
        assert opt.param_groups[0][k] == float(v)
    assert opt.param_groups[0]["total_steps"] == 10


# --- validation and registry -------------------------------------------------------------


@pytest.mark.parametrize("name,bad,match", [
    ("adam8p", {"lr": 0.0}, r"'lr' = 0.0 is outside \(0.0, inf\)"),
    ("adam8p", {"beta1": 1.0}, r"'beta1'.*\[0.0, 1.0\)"),
    ("adam8p", {"beta2": -0.1}, r"'beta2'.*\[0.0, 1.0\)"),
    ("adam8p", {"eps": 0.0}, r"'eps'"),
    ("adam8p", {"l1": -1.0}, r"'l1'"),
    ("adam8p", {"lr": float("nan")}, r"'lr'"),
    ("nadamw", {"warmup_fraction": 1.5}, r"'warmup_fraction'.*\[0.0, 1.0\]"),
    ("nadamw", {"constant_fraction": -0.1}, r"'constant_fraction'"),
    ("nadamw", {"min_lr_mult": 2.0}, r"'min_lr_mult'"),
    ("nadamw", {"l2_weight_decay": -1e-3}, r"'l2_weight_decay'"),
    ("nadamw", {"nesterov": 0.5}, r"'nesterov'"),
    ("adam4p", {"l1": 0.1}, r"unknown hparams \['l1'\]"),
    ("adam1p", {"beta1": 0.9}, r"unknown hparams \['beta1'\]"),
])
def test_validate_rejects(name, bad, match):
    fam = get_family(name)
    good = fam.defaults()
    assert fam.validate(good) == {k: float(v) for k, v in good.items()}
    with pytest.raises(ValueError, match=match):
        fam.validate({**good, **bad})


def test_validate_missing_and_classes_reject():
    with pytest.raises(ValueError, match=r"missing hparams \['eps'\]"):
        ADAM4P.validate({"lr": 1.0, "beta1": 0.9, "beta2": 0.9})
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="'lr'"):
        NAdamW([p], lr=-1.0, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        Adam1p([p], total_steps=0)


def test_get_family_unknown_lists_names():
    assert get_family("adam8p") is ADAM8P
    with pytest.raises(KeyError, match="adam1p, adam4p, adam8p, nadamw"):
        get_family("sgd")


# --- hparam lists ------------------------------------------------------------------------


def _write_list(tmp_path, data) -> str:
    path = tmp_path / "hparam_list.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_hparam_list_optimizer_uses_entry_k(tmp_path):
    entries = [{"rank": i, "config_id": 10 + i, "hparams": NADAMW.sample(10 + i)} for i in range(3)]
    path = _write_list(tmp_path, {"optimizer": "nadamw", "entries": entries, "num_tasks": 5})
    assert load_hparam_list(path)["num_tasks"] == 5
    p = torch.nn.Parameter(torch.ones(4))
    opt = hparam_list_optimizer([p], path, index=2, total_steps=30)
    for k, v in entries[2]["hparams"].items():
        assert opt.param_groups[0][k] == float(v)
    assert opt.param_groups[0]["total_steps"] == 30
    before = p.detach().clone()
    (p ** 2).sum().backward()
    opt.step()
    assert not torch.equal(p.detach(), before)
    path8 = _write_list(tmp_path, {"optimizer": "adam1p", "entries": [{"hparams": {"lr": 0.1}}]})
    q = torch.nn.Parameter(torch.ones(2))
    opt = hparam_list_optimizer([q], path8, 0, total_steps=5)
    q.grad = torch.ones(2)
    opt.step()
    torch.testing.assert_close(q.detach(), torch.full((2,), 0.9), rtol=1e-6, atol=1e-6)


def test_hparam_list_errors(tmp_path):
    p = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(DataError, match="does not exist"):
        hparam_list_optimizer(p, tmp_path / "nope.json", 0, 10)
    with pytest.raises(DataError, match="not readable JSON"):
        load_hparam_list(_write_list(tmp_path, "{not json"))
    with pytest.raises(DataError, match="'entries'"):
        load_hparam_list(_write_list(tmp_path, {"optimizer": "nadamw"}))
    with pytest.raises(DataError, match="entry 1 has no 'hparams'"):
        load_hparam_list(_write_list(tmp_path, {"optimizer": "adam1p",
                                                "entries": [{"hparams": {"lr": 1.0}}, {"rank": 1}]}))
    with pytest.raises(DataError, match="unknown optimizer family 'sgd'"):
        load_hparam_list(_write_list(tmp_path, {"optimizer": "sgd", "entries": []}))
    path = _write_list(tmp_path, {"optimizer": "adam1p", "entries": [{"hparams": {"lr": 1.0}}] * 2})
    with pytest.raises(DataError, match=r"has 2 entries; index 2 is out of range"):
        hparam_list_optimizer(p, path, 2, 10)
    with pytest.raises(DataError, match="out of range"):
        hparam_list_optimizer(p, path, -1, 10)
    bad = _write_list(tmp_path, {"optimizer": "adam1p", "entries": [{"hparams": {"lr": -1.0}}]})
    with pytest.raises(ValueError, match="'lr'"):
        hparam_list_optimizer(p, bad, 0, 10)
