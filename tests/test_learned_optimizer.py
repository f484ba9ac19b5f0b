"""LearnedOptimizer (torch.optim front end) and the learned-optimizer families in the population
engine: same curves, state_dict round trip, param groups, checkpoints and their errors."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import random_state

from taskset_lab.engine import train_population, train_single
from taskset_lab.errors import ConfigError, DataError
from taskset_lab.optim import LearnedOptimizer, get_optimizer_family, learned_optimizer_names
from taskset_lab.optim.learned import ARCHITECTURES, LearnedCheckpoint, load_checkpoint, save_checkpoint
from taskset_lab.registry import UnknownNameError
from taskset_lab.tasks import sample_task

F64 = torch.float64
MLP = {"hidden": [8, 8], "batch_size": 16}


def _ckpt(arch: str, seed: int = 0, lr: float = 3e-3) -> LearnedCheckpoint:
    fam = ARCHITECTURES[arch]
    return LearnedCheckpoint(arch, fam.init_theta(seed).float(), lr, {})


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_plain_loop_equals_the_population_curve_for_the_same_weights(arch, one_torch_thread):
    """LearnedOptimizer on an nn.Module (loss.backward()) against member k of a population whose
    members carry different weights, float64, 12 steps with evaluations every 4."""
    task = sample_task("lab_mlp", 0, MLP)
    fam = get_optimizer_family(arch)
    ckpts = [_ckpt(arch, s) for s in range(3)]
    configs = [c.hparams() for c in ckpts]
    pop = train_population(task, fam, configs, 12, 4, eval_batches=1, dtype=F64, compile=False)
    for k, ck in enumerate(ckpts):
        alone = train_single(task, lambda ps, ck=ck: LearnedOptimizer(ps, checkpoint=ck), 12, 4, eval_batches=1,
                             dtype=F64)
        for split, values in pop.losses.items():
            torch.testing.assert_close(values[k], alone.losses[split].reshape(-1), rtol=1e-10, atol=1e-12)
    train = pop.losses["train"]
    assert not torch.equal(train[0], train[1]), "members with other weights follow other curves"
    assert (train[:, -1] != train[:, 0]).all(), "every member trained"


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_update_is_pure_with_vector_weights(arch):
    fam = ARCHITECTURES[arch]
    g = torch.Generator().manual_seed(0)
    p, grad = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    state = random_state(fam, p, g)
    hp = {"lr": torch.tensor(1e-3, dtype=F64), "theta": fam.init_theta(1)}
    before = (p.clone(), grad.clone(), {k: v.clone() for k, v in state.items()})
    new_p, new_state = fam.update(p, grad, state, torch.tensor(3.0), hp, 20)
    assert torch.equal(p, before[0]) and torch.equal(grad, before[1])
    assert all(torch.equal(state[k], before[2][k]) for k in state)
    assert not torch.equal(new_p, p) and set(new_state) == set(fam.state_names)
    # scalar and vector parameters take the same path
    new_b, _ = fam.update(p[0], grad[0], random_state(fam, p[0], g), torch.tensor(3.0), hp, 20)
    new_s, _ = fam.update(p[0, 0], grad[0, 0], random_state(fam, p[0, 0], g), torch.tensor(3.0), hp, 20)
    assert new_b.shape == (3,) and new_s.shape == () and torch.isfinite(new_s)


def test_mlp_lopt_step_is_the_documented_formula():
    """One MLP LOpt step by hand: momenta, normalized features, step embedding, d·exp(1e-3 s)·lr."""
    fam = ARCHITECTURES["mlp_lopt"]
    theta = fam.init_theta(3)
    g = torch.Generator().manual_seed(4)
    p, grad = torch.randn(5, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    decays = torch.tensor([0.1, 0.5, 0.9, 0.99, 0.999, 0.9999], dtype=F64)
    m = (1 - decays) * grad[:, None]  # from zero state
    x = torch.cat([grad[:, None], p[:, None], m], 1)
    x = x / torch.sqrt(1e-5 + (x ** 2).mean(0, keepdim=True))
    tau = torch.tensor([1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000], dtype=F64)
    x = torch.cat([x, torch.tanh(0 / tau - 1).expand(5, 11)], 1)
    sizes = [(19, 32), (32, 32), (32, 2)]
    off = 0
    for i, (a, b) in enumerate(sizes):
        w = theta[off:off + a * b].view(a, b)
        bias = theta[off + a * b: off + a * b + b]
        off += a * b + b
        x = x @ w + bias
        x = torch.relu(x) if i < 2 else x
    want = p - x[:, 0] * torch.exp(1e-3 * x[:, 1]) * 0.01
    got, _ = fam.update(p, grad, fam.init_state(p), torch.tensor(1.0), {"lr": torch.tensor(0.01, dtype=F64),
                                                                       "theta": theta}, 1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert off == fam.num_weights == 1762


def _train(model, opt, steps, x, y):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def test_state_dict_round_trip_and_param_groups(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(32, 6, dtype=F64), torch.randn(32, 2, dtype=F64)
    make = lambda: torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()  # noqa: E731
    torch.manual_seed(1)
    a = make()
    b = make()
    b.load_state_dict(a.state_dict())
    ck = _ckpt("small_fc_lopt", 2)
    path = save_checkpoint(ck, tmp_path / "opt.pt")
    opt_a = LearnedOptimizer(a.parameters(), checkpoint=path)
    _train(a, opt_a, 4, x, y)
    saved = copy.deepcopy(opt_a.state_dict())  # the step counters are updated in place
    _train(a, opt_a, 4, x, y)
    opt_b = LearnedOptimizer(b.parameters(), checkpoint=ck)
    _train(b, opt_b, 4, x, y)  # same first 4 steps, then a fresh optimizer loaded from the saved state
    opt_c = LearnedOptimizer(b.parameters(), checkpoint=_ckpt("small_fc_lopt", 5))  # other weights, replaced
    opt_c.load_state_dict(saved)
    _train(b, opt_c, 4, x, y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert int(opt_c.state[next(iter(b.parameters()))]["step"]) == 8
    # param groups: a group at lr 0 stays put, the other moves
    c = make()
    first = [p.detach().clone() for p in c[0].parameters()]
    last = [p.detach().clone() for p in c[2].parameters()]
    opt = LearnedOptimizer([{"params": c[0].parameters(), "lr": 0.0}, {"params": c[2].parameters()}], checkpoint=ck)
    _train(c, opt, 3, x, y)
    assert all(torch.equal(p, q) for p, q in zip(c[0].parameters(), first))
    assert not any(torch.equal(p, q) for p, q in zip(c[2].parameters(), last))
    assert opt.param_groups[1]["lr"] == pytest.approx(3e-3)


def test_bad_checkpoints_give_one_line(tmp_path):
    path = save_checkpoint(_ckpt("mlp_lopt"), tmp_path / "mlp.pt")
    with pytest.raises(ConfigError, match="holds a mlp_lopt optimizer, not small_fc_lopt"):
        LearnedOptimizer([torch.nn.Parameter(torch.zeros(3))], checkpoint=path, architecture="small_fc_lopt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="unreadable") as err:
        load_checkpoint(corrupt)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(DataError, match="not a taskset_lab learned-optimizer checkpoint"):
        load_checkpoint(other)
    wrong = _ckpt("mlp_lopt").to_dict()
    wrong["architecture"] = "small_fc_lopt"  # weights of one architecture labelled as the other
    with pytest.raises(DataError, match="do not fit architecture small_fc_lopt"):
        load_checkpoint(wrong)
    with pytest.raises(UnknownNameError, match="unknown learned optimizer 'no_such_opt'"):
        load_checkpoint("no_such_opt")
    with pytest.raises(DataError, match="no such file"):
        load_checkpoint(str(tmp_path / "missing.pt"))


def test_shipped_optimizers_load_offline_and_train():
    names = learned_optimizer_names()
    assert "small_fc_lopt_digits_pes" in names, names
    meta = load_checkpoint("small_fc_lopt_digits_pes").meta
    assert meta["command"].startswith("tasklab pipeline=META_TRAIN") and meta["spec"]["estimator"] == "pes"
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, :1] > 0).float()
    for name in names:
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        opt = LearnedOptimizer(model.parameters(), checkpoint=name)
        with torch.no_grad():
            before = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        for _ in range(100):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            after = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        assert after < 0.8 * before, name


def test_a_group_updated_in_several_calls_equals_one_call(monkeypatch):
    """The torch.optim front end updates a param group's tensors in calls of at most
    TOGETHER_MAX_ELEMENTS elements (bounding the update's temporaries on large models); each
    tensor's update is its own, so the split changes nothing (float64)."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 6, dtype=F64), torch.randn(32, 2, dtype=F64)
    make = lambda: torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()  # noqa: E731
    a = make()
    b = copy.deepcopy(a)
    ck = _ckpt("small_fc_lopt", 4)
    calls = []
    fam = ARCHITECTURES["small_fc_lopt"]
    original = type(fam).update_tensors

    def counting(self, ps, *args, **kwargs):
        calls.append(len(ps))
        return original(self, ps, *args, **kwargs)

    monkeypatch.setattr(type(fam), "update_tensors", counting)
    _train(a, LearnedOptimizer(a.parameters(), checkpoint=ck), 3, x, y)
    assert calls == [4, 4, 4]
    calls.clear()
    monkeypatch.setattr(LearnedOptimizer, "TOGETHER_MAX_ELEMENTS", 30)  # 6x5 weight alone, the rest together
    _train(b, LearnedOptimizer(b.parameters(), checkpoint=ck), 3, x, y)
    assert calls == [1, 3] * 3
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-14)
