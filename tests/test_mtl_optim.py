"""AdaTask and the plain MTL optimizers: against formulas written here, and against torch."""

from __future__ import annotations


import pytest
import torch

from taskset_lab.mtl.optim import (AdaTaskAdagrad, AdaTaskAdam, AdaTaskRMSprop, MTLAdagrad, MTLAdam,
                                   MTLRMSprop)

STEPS = 4


def _toy(seed: int = 0):
    """A shared linear layer and two heads; task 2's loss is 50x larger (it dominates)."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.nn.Linear(3, 4)
    heads = torch.nn.ModuleList([torch.nn.Linear(4, 1), torch.nn.Linear(4, 2)])
    with torch.no_grad():
        for p in [*shared.parameters(), *heads.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(8, 3, generator=g)
    y = [torch.randn(8, 1, generator=g), 50 * torch.randn(8, 2, generator=g)]
    return shared, heads, x, y


def _task_grads(shared, heads, x, y):
    """Per task: gradients of the shared parameters, and of the task's own head."""
    z = torch.tanh(shared(x))
    out = []
    for t, head in enumerate(heads):
        loss = ((head(z) - y[t]) ** 2).mean()
        grads = torch.autograd.grad(loss, [*shared.parameters(), *head.parameters()], retain_graph=True)
        out.append((list(grads[:2]), list(grads[2:])))
    return out


def _groups(shared, heads):
    return [{"params": list(shared.parameters()), "mtl_role": "shared"},
            *({"params": list(h.parameters()), "mtl_role": "task", "mtl_task": t} for t, h in enumerate(heads))]


def _run_mtl(cls, steps=STEPS, **hp):
    shared, heads, x, y = _toy()
    opt = cls(_groups(shared, heads), n_tasks=2, **hp)
    for _ in range(steps):
        grads = _task_grads(shared, heads, x, y)
        for t, head in enumerate(heads):
            for p, g in zip(head.parameters(), grads[t][1]):
                p.grad = g
        opt.step(task_grads=[[grads[0][0][i], grads[1][0][i]] for i in range(2)])
    return [p.detach().clone() for p in [*shared.parameters(), *heads.parameters()]]


# -- references written from the formulas -----------------------------------------------
def _adam_dir(state, key, g, step, beta1=0.9, beta2=0.999, eps=1e-8):
    m, v = state.get(("m", key), torch.zeros_like(g)), state.get(("v", key), torch.zeros_like(g))
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    state[("m", key)], state[("v", key)] = m, v
    return (m / (1 - beta1 ** step)) / (torch.sqrt(v / (1 - beta2 ** step)) + eps)


def _rmsprop_dir(state, key, g, step, alpha=0.99, eps=1e-8):
    v = alpha * state.get(key, torch.zeros_like(g)) + (1 - alpha) * g * g
    state[key] = v
    return g / (torch.sqrt(v) + eps)


def _adagrad_dir(state, key, g, step, eps=1e-10):
    s = state.get(key, torch.zeros_like(g)) + g * g
    state[key] = s
    return g / (torch.sqrt(s) + eps)


def _reference_adatask(direction, lr, steps=STEPS):
    """AdaTask from the formulas: shared params move by sum_t lr * direction(own state_t, g_t);
    heads by lr * direction(own state, own task's gradient)."""
    shared, heads, x, y = _toy()
    state: dict = {}
    for step in range(1, steps + 1):
        grads = _task_grads(shared, heads, x, y)
        with torch.no_grad():
            for i, p in enumerate(shared.parameters()):
                p -= sum(lr * direction(state, (i, t), grads[t][0][i], step) for t in range(2))
            for t, head in enumerate(heads):
                for j, p in enumerate(head.parameters()):
                    p -= lr * direction(state, ("head", t, j), grads[t][1][j], step)
    return [p.detach().clone() for p in [*shared.parameters(), *heads.parameters()]]


@pytest.mark.parametrize("cls, direction, lr", [(AdaTaskAdam, _adam_dir, 1e-2), (AdaTaskRMSprop, _rmsprop_dir, 1e-2),
                                                (AdaTaskAdagrad, _adagrad_dir, 1e-1)])
def test_adatask_matches_the_formulas_on_two_tasks(cls, direction, lr):
    got = _run_mtl(cls, lr=lr)
    want = _reference_adatask(direction, lr)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and it is not the plain optimizer on the summed gradient (the tasks' scales differ 50x)
    plain = _run_mtl({AdaTaskAdam: MTLAdam, AdaTaskRMSprop: MTLRMSprop, AdaTaskAdagrad: MTLAdagrad}[cls], lr=lr)
    assert not torch.allclose(got[0], plain[0], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("cls, torch_cls, hp", [
    (AdaTaskAdam, torch.optim.Adam, dict(lr=1e-2, weight_decay=0.1)),
    (MTLAdam, torch.optim.Adam, dict(lr=1e-2)),
    (AdaTaskRMSprop, torch.optim.RMSprop, dict(lr=1e-2, momentum=0.5, centered=True, weight_decay=0.01)),
    (AdaTaskRMSprop, torch.optim.RMSprop, dict(lr=1e-2)),
    (MTLRMSprop, torch.optim.RMSprop, dict(lr=1e-2, momentum=0.9)),
    (AdaTaskAdagrad, torch.optim.Adagrad, dict(lr=1e-1, lr_decay=0.01, initial_accumulator_value=0.1)),
    (MTLAdagrad, torch.optim.Adagrad, dict(lr=1e-1)),
])
@pytest.mark.parametrize("via_task_grads", [False, True])
def test_one_task_equals_the_base_optimizer_exactly(cls, torch_cls, hp, via_task_grads):
    runs = []
    for make in (lambda ps: torch_cls(ps, foreach=False, **hp), lambda ps: cls(ps, n_tasks=1, **hp)):
        shared, heads, x, y = _toy()
        params = [*shared.parameters(), *heads[0].parameters()]
        opt = make(params)
        for _ in range(STEPS):
            grads = _task_grads(shared, heads[:1], x, y)[0]
            for p, g in zip(params, grads[0] + grads[1]):
                p.grad = g
            if via_task_grads and isinstance(opt, (MTLAdam, MTLRMSprop, MTLAdagrad)):
                opt.step(task_grads=[[g] for g in grads[0] + grads[1]])
            else:
                opt.step()
        runs.append([p.detach().clone() for p in params])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cls, torch_cls", [(MTLAdam, torch.optim.Adam), (MTLRMSprop, torch.optim.RMSprop),
                                            (MTLAdagrad, torch.optim.Adagrad)])
def test_plain_mode_is_the_base_optimizer_on_the_summed_gradient(cls, torch_cls):
    got = _run_mtl(cls, lr=1e-2)
    shared, heads, x, y = _toy()
    opt = torch_cls([*shared.parameters(), *heads.parameters()], lr=1e-2)
    for _ in range(STEPS):
        grads = _task_grads(shared, heads, x, y)
        for i, p in enumerate(shared.parameters()):
            p.grad = grads[0][0][i] + grads[1][0][i]
        for t, head in enumerate(heads):
            for p, g in zip(head.parameters(), grads[t][1]):
                p.grad = g
        opt.step()
    for a, b in zip(got, [p.detach() for p in [*shared.parameters(), *heads.parameters()]]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [MTLAdam, AdaTaskAdam, AdaTaskRMSprop, MTLAdagrad])
def test_recorded_task_shares_sum_to_the_update(cls):
    shared, heads, x, y = _toy()
    opt = cls(_groups(shared, heads), n_tasks=2, lr=1e-2, record_task_updates=True)
    for _ in range(2):
        before = [p.detach().clone() for p in shared.parameters()]
        grads = _task_grads(shared, heads, x, y)
        opt.step(task_grads=[[grads[0][0][i], grads[1][0][i]] for i in range(2)])
        for p, old in zip(shared.parameters(), before):
            shares = opt.task_updates[p]
            assert len(shares) == 2
            torch.testing.assert_close(shares[0] + shares[1], p.detach() - old, rtol=1e-4, atol=1e-6)


def test_adatask_balances_the_per_task_step_sizes():
    """With a shared denominator the small task's share of Adam's step is tiny; AdaTask gives
    both tasks steps of the same order (each normalized by its own second moment)."""
    ratios = {}
    for cls in (MTLAdam, AdaTaskAdam):
        shared, heads, x, y = _toy()
        opt = cls(_groups(shared, heads), n_tasks=2, lr=1e-3, record_task_updates=True)
        grads = _task_grads(shared, heads, x, y)
        opt.step(task_grads=[[grads[0][0][i], grads[1][0][i]] for i in range(2)])
        w = next(shared.parameters())
        small, large = (opt.task_updates[w][t].abs().mean().item() for t in range(2))
        ratios[cls] = small / large
    assert ratios[MTLAdam] < 0.3 and 0.8 < ratios[AdaTaskAdam] < 1.2  # first step: AdaTask steps are ±lr


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="Adam"):
        AdaTaskAdam([torch.nn.Parameter(torch.zeros(1))], lr=-1.0)
    with pytest.raises(ValueError, match="n_tasks"):
        AdaTaskAdam([torch.nn.Parameter(torch.zeros(1))], n_tasks=0)
