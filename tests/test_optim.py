"""Optimizer families: search spaces, schedules, the two front ends, torch references, lists."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from taskset_lab.errors import DataError
from taskset_lab.optim import (
    ADAM1P, ADAM4P, ADAM6P, ADAM8P, NADAMW, Adam1p, Adam4p, Adam6p, Adam8p, BatchedOptimizer,
    FamilyOptimizer, NAdamW, optimizer_family_names, get_optimizer_family, hparam_list_entry, hparam_list_optimizer,
    load_hparam_list, opt_list_cosine_lr, resolve_search_space, sampled_optimizer, taskset_decay_lr,
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


# --- against torch.optim (where the published updates coincide with torch's) ------------


def test_adam4p_is_torch_adam_with_eps_before_bias_correction():
    """TF's Adam: with a negligible ε it is torch.optim.Adam; a large ε acts like ε·sqrt(1-β2ᵗ)."""
    ref = run_torch(lambda ps: torch.optim.Adam(ps, lr=3e-2, betas=(0.8, 0.99), eps=0.0))
    ours = run_torch(lambda ps: Adam4p(ps, lr=3e-2, beta1=0.8, beta2=0.99, eps=1e-300, total_steps=50))
    assert_same(ours, ref, 1e-10)
    start = make_problem()[1]
    assert (ours[0] - start).abs().max() > 0.1  # it really moved
    big = run_torch(lambda ps: Adam4p(ps, lr=3e-2, beta1=0.8, beta2=0.99, eps=1.0, total_steps=50))
    torch_big = run_torch(lambda ps: torch.optim.Adam(ps, lr=3e-2, betas=(0.8, 0.99), eps=1.0))
    assert (big[0] - torch_big[0]).abs().max() > 1e-3  # where ε sits matters
    ref1 = run_torch(lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=0.0))
    tiny = run_torch(lambda ps: Adam1p(ps, lr=1e-2, total_steps=50))  # ε = 1e-8 fixed
    assert_same(tiny, ref1, 1e-6)


def test_adam8p_penalties_are_loss_terms():
    """adam8p with l1/l2 (no decay) == adam8p on loss + l1·Σ|θ| + l2·Σθ²."""
    l1, l2 = 3e-3, 2e-2

    def penalty(ps):
        return sum(l1 * p.abs().sum() + l2 * (p ** 2).sum() for p in ps)

    ref = run_torch(lambda ps: Adam8p(ps, lr=1e-2, total_steps=50), penalty=penalty)
    ours = run_torch(lambda ps: Adam8p(ps, lr=1e-2, l1=l1, l2=l2, total_steps=50))
    assert_same(ours, ref, 1e-10)
    unpenalized = run_torch(lambda ps: Adam8p(ps, lr=1e-2, total_steps=50))
    assert (ours[0] - unpenalized[0]).abs().max() > 1e-4


def test_plain_nadamw_with_tiny_eps_is_torch_adam():
    """No Nesterov, no decay terms, flat schedule, ε → 0: every Adam form agrees."""
    ref = run_torch(lambda ps: torch.optim.Adam(ps, lr=2e-2, betas=(0.85, 0.995), eps=0.0))
    ours = run_torch(lambda ps: NAdamW(ps, lr=2e-2, beta1=0.85, beta2=0.995, eps=1e-300, total_steps=50))
    assert_same(ours, ref, 1e-10)
    nesterov = run_torch(lambda ps: NAdamW(ps, lr=2e-2, beta1=0.85, beta2=0.995, eps=1e-300, nesterov=True,
                                           total_steps=50))
    assert (ours[0] - nesterov[0]).abs().max() > 1e-4


def test_nadamw_defaults_have_a_flat_finite_schedule():
    """constant_fraction = 1 is 0/0 in the published schedule; here it is a constant rate."""
    one = torch.tensor(1.0, dtype=D)
    zero = torch.tensor(0.0, dtype=D)
    lrs = [float(opt_list_cosine_lr(torch.tensor(float(s), dtype=D), 50, one, zero, one, zero))
           for s in (0, 10, 49, 60)]
    assert lrs == [1.0, 1.0, 1.0, 1.0]
    w, _ = run_torch(lambda ps: NAdamW(ps, total_steps=50))
    assert torch.isfinite(w).all()


def test_schedules_broadcast_over_configs():
    hp = lambda *v: torch.tensor(v, dtype=D).view(3, 1)  # noqa: E731
    step = torch.tensor(5.0)  # a float32 counter against float64 hparams
    got = opt_list_cosine_lr(step, 100, hp(1.0, 2.0, 1.0), hp(0.1, 0.0, 0.0), hp(0.0, 1.0, 0.0),
                             hp(0.0, 0.0, 0.5))
    assert got.dtype == D
    want = [5.0 / 10.0, 2.0, 0.5 + 0.5 * (math.cos(math.pi * 5 / 100) / 2 + 0.5)]
    torch.testing.assert_close(got.flatten(), torch.tensor(want, dtype=D), rtol=1e-14, atol=0)
    decay = taskset_decay_lr(step, 2.0, hp(1.0, 1.0, 1.0), hp(0.0, 0.05, 0.2), hp(0.1, 0.0, 0.0))
    torch.testing.assert_close(decay.flatten(), torch.tensor([math.exp(-1.0), 0.5, 0.0], dtype=D))


# --- batched == single -------------------------------------------------------------------


# config k of the batched form follows the one-config front end: tests/test_optimizer_contract.py


# --- search spaces -----------------------------------------------------------------------


def _in(v, lo, hi):
    return lo <= v <= hi


def test_samplers_in_range_and_deterministic():
    n = 1000
    taskset = {"adam8p", "adam6p", "adam4p", "adam1p", "nadamw"}  # TaskSet's and opt_list's samplers
    assert taskset <= set(optimizer_family_names())  # (the learned optimizers' are in the contract test)
    draws = {name: [get_optimizer_family(name).sample(s) for s in range(n)] for name in sorted(taskset)}
    for name, ds in draws.items():
        assert get_optimizer_family(name).sample(123) == ds[123]
        assert ds[0] != ds[1]
        for d in ds[:200]:
            get_optimizer_family(name).validate(d)
    for d in draws["adam8p"]:
        assert _in(d["lr"], 1e-8, 10) and _in(1 - d["beta1"], 1e-4 * (1 - 1e-9), 1)
        assert _in(1 - d["beta2"], 1e-6 * (1 - 1e-9), 1) and _in(d["eps"], 1e-10, 1e3)
        assert _in(d["l1"], 1e-8, 10) and _in(d["l2"], 1e-8, 10)
        assert _in(d["linear_decay"], 1e-7, 1e-4) and _in(d["exponential_decay"], 1e-6, 1e-3)
    for d in draws["adam6p"]:
        assert set(d) == set(ADAM6P.hparam_names)
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
    assert abs(frac(lambda d: d["nesterov"]) - 0.5) < 0.05
    assert abs(frac(lambda d: d["warmup_fraction"] == 0) - 0.5) < 0.05
    assert abs(frac(lambda d: d["min_lr_mult"] == 0) - 0.5) < 0.05
    for mode in [(True, False), (False, True), (True, True)]:
        got = frac(lambda d: (d["decoupled_weight_decay"] > 0, d["l2_weight_decay"] > 0) == mode)
        assert abs(got - 1 / 3) < 0.05
    assert abs(np.mean([d["constant_fraction"] for d in nd]) - 0.5) < 0.02


def test_adam4p_shares_adam8p_draws_and_adam1p_has_its_own_generator():
    assert ADAM4P.hparam_names == ("lr", "beta1", "beta2", "eps")
    assert ADAM1P.hparam_names == ("lr",)
    for s in (0, 7, 99, 12345):
        full = ADAM8P.sample(s)
        assert ADAM4P.sample(s) == {k: full[k] for k in ("lr", "beta1", "beta2", "eps")}
        assert ADAM1P.sample(s) == {"lr": ADAM8P.sample(s + 4123)["lr"]}
        assert ADAM6P.sample(s)["lr"] == ADAM8P.sample(s + 123455)["lr"]


def test_sampled_optimizer_is_the_draw():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = sampled_optimizer([p], "nadamw", seed=4, total_steps=10)
    assert isinstance(opt, torch.optim.Optimizer)
    draw = NADAMW.sample(4)
    for k, v in draw.items():
        assert opt.defaults[k] == float(v)
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
    fam = get_optimizer_family(name)
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
    import re

    from taskset_lab.optim import optimizer_family_names

    assert get_optimizer_family("adam8p") is ADAM8P
    names = optimizer_family_names()
    assert {"adam1p", "adam4p", "adam6p", "adam8p", "nadamw"} <= set(names)
    with pytest.raises(KeyError, match=re.escape(", ".join(names))):  # every registered family, in order
        get_optimizer_family("sgd")


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
        assert opt.defaults[k] == float(v)
    assert opt.param_groups[0]["total_steps"] == 30
    before = p.detach().clone()
    for _ in range(2):  # a warmup's first update has rate 0
        opt.zero_grad()
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
    with pytest.raises(DataError, match="neither a built-in list"):
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


# --- built-in lists and list search spaces -----------------------------------------------


def test_opt_list_entry_k_is_a_ready_optimizer():
    family, hp = hparam_list_entry("opt_list", 4)
    assert family == "nadamw" and hp == NADAMW.sample(739)  # opt_list's 5th name: nadamw_grid_seed739
    p = torch.nn.Parameter(torch.ones(3, dtype=D))
    opt = hparam_list_optimizer([p], "opt_list", 4, total_steps=20)
    assert isinstance(opt, FamilyOptimizer) and opt.family is NADAMW
    assert opt.param_groups[0]["eps"] == hp["eps"] and opt.param_groups[0]["total_steps"] == 20
    old = hparam_list_optimizer([p], list_path="opt_list", index=4, total_steps=20)  # the older keyword
    assert old.param_groups[0]["base_lr"] == hp["lr"]
    with pytest.raises(DataError, match="1000 entries; index 1000"):
        hparam_list_optimizer([p], "opt_list", 1000, total_steps=20)
    lst = load_hparam_list("opt_list")
    lst["entries"].clear()  # callers get a copy
    assert len(load_hparam_list("opt_list")["entries"]) == 1000


def test_hparam_list_optimizer_config_composes(tmp_path):
    from hydra.utils import instantiate

    from conftest import compose

    cfg = compose("train_mlp_digits", ["optimizer=hparam_list", "optimizer.list=opt_list", "optimizer.index=2",
                                       "total_steps=30"])
    p = torch.nn.Parameter(torch.ones(2))
    opt = instantiate(cfg.optimizer)([p])
    assert opt.param_groups[0]["base_lr"] == NADAMW.sample(799)["lr"]  # entry 2: nadamw_grid_seed799
    assert opt.param_groups[0]["total_steps"] == 30
    space = compose("curves_quickstart", ["search_space=list", "search_space.list=opt_list",
                                          "search_space.size=7"]).search_space
    assert (space.family, space.num_configs) == ("opt_list", 7)


def test_search_spaces_by_name(tmp_path):
    fam = resolve_search_space("adam8p", seed_offset=3)
    assert fam.name == "adam8p" and fam.family is ADAM8P and not fam.is_list
    assert fam.hparams(2) == ADAM8P.sample(5) and fam.config_seed(2) == 5
    opt_list = resolve_search_space("opt_list")
    assert opt_list.name == "opt_list" and opt_list.family is NADAMW and opt_list.size == 1000
    entries = load_hparam_list("opt_list")["entries"]
    assert [opt_list.hparams(k) for k in range(5)] == [e["hparams"] for e in entries[:5]]
    assert opt_list.config_seed(0) == 251
    with pytest.raises(IndexError):
        opt_list.hparams(1000)
    path = tmp_path / "my__list.json"
    path.write_text(json.dumps({"optimizer": "adam1p", "entries": [{"hparams": {"lr": 0.1}},
                                                                     {"config_id": 9, "hparams": {"lr": 0.2}}]}))
    space = resolve_search_space(str(path))
    assert space.name.startswith("list-my_list-") and "__" not in space.name and "/" not in space.name
    assert space.hparams(1) == {"lr": 0.2} and space.config_seed(1) == 9 and space.config_seed(0) == -1
    with pytest.raises(KeyError, match="unknown search space 'sgd'"):
        resolve_search_space("sgd")


# --- step counters and low-precision parameters ------------------------------------------


def _linear_to_zero(total: int, zero_at: int) -> dict:
    """adam6p whose rate falls linearly to exactly 0 at step ``zero_at`` of a ``total``-step run."""
    return dict(ADAM6P.defaults(), lr=0.05, linear_decay=total / 10000.0 / zero_at)


def test_bf16_parameters_follow_the_schedule_past_256_steps():
    """A bf16 step counter would stop at 256 and the rate would never reach 0."""
    total, zero_at = 300, 280
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(total, 2, 8, generator=gen)
    # the one-config torch.optim front end
    p = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    opt = Adam6p([p], **_linear_to_zero(total, zero_at), total_steps=total)
    snaps = {}
    for s in range(total):
        p.grad = grads[s, 0].to(torch.bfloat16)
        opt.step()
        snaps[s + 1] = p.detach().clone()
    st = opt.state[p]
    assert st["step"].dtype == torch.float32 and float(st["step"]) == total
    assert st["m"].dtype == torch.float32 and p.dtype == torch.bfloat16
    assert not torch.equal(snaps[200], snaps[270])  # still moving before the rate hits 0
    assert torch.equal(snaps[zero_at + 1], snaps[total])  # rate 0 from update 281 on: frozen
    # the batched form, two configs, one of them decaying twice as slowly
    configs = [_linear_to_zero(total, zero_at), _linear_to_zero(total, 2 * zero_at)]
    bopt = BatchedOptimizer.from_configs(ADAM6P, configs, total, dtype=torch.bfloat16)
    params = {"w": torch.ones(2, 8, dtype=torch.bfloat16)}
    state = bopt.init(params)
    history = {}
    for s in range(total):
        params, state = bopt.step(params, {"w": grads[s].to(torch.bfloat16)}, state)
        history[s + 1] = params["w"].clone()
    assert state["w"]["step"].dtype == torch.float32 and float(state["w"]["step"]) == total
    assert params["w"].dtype == torch.bfloat16
    assert torch.equal(history[zero_at + 1][0], history[total][0])
    assert not torch.equal(history[zero_at + 1][1], history[total][1])
    torch.testing.assert_close(history[total][0], snaps[total])  # config 0 == the one-config run


@pytest.mark.parametrize("cls", [NAdamW, Adam8p, Adam6p, Adam4p, Adam1p,
                                 type(NADAMW), type(ADAM8P), type(ADAM6P), type(ADAM4P), type(ADAM1P)])
def test_docstrings_state_the_update(cls):
    doc = cls.__doc__
    assert "Update (" in doc and "θ ←" in doc and "torch.optim" in doc


def test_param_groups_lr_reports_the_scheduled_rate():
    """``param_groups[0]["lr"]`` is the rate the next update applies (what Lightning's
    LearningRateMonitor logs); the sampled rate stays in ``base_lr`` and the updates are
    unchanged by the reporting."""
    from taskset_lab.optim import NADAMW
    from taskset_lab.optim.base import FamilyOptimizer

    hp = dict(NADAMW.defaults(), lr=0.1, warmup_fraction=0.2, constant_fraction=0.2, min_lr_mult=0.0)
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = FamilyOptimizer([p], NADAMW, hp, total_steps=10)
    seen = []
    for step in range(1, 11):
        seen.append(opt.param_groups[0]["lr"])
        expected = float(NADAMW.scheduled_lr(torch.tensor(float(step), dtype=torch.float64),
                                             {k: torch.tensor(float(v), dtype=torch.float64)
                                              for k, v in NADAMW.validate(hp).items()}, 10))
        assert seen[-1] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        opt.zero_grad()
        p.sum().backward()
        opt.step()
    assert seen[0] == 0.0 and max(seen) == pytest.approx(0.1) and seen[-1] < 0.1 * 0.2  # warmup, cosine
    assert opt.param_groups[0]["base_lr"] == 0.1
    again = FamilyOptimizer([torch.nn.Parameter(torch.ones(3, dtype=torch.float64))], NADAMW, hp, total_steps=10)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["lr"] == opt.param_groups[0]["lr"] and again.param_groups[0]["base_lr"] == 0.1
