"""The optimizer contract, one test per property, run over every registered optimizer family
(optax's ``_OPTIMIZERS_UNDER_TEST`` idea): a family added to ``taskset_lab.optim.registry``
is picked up here without a line of its own.

In float64, for each family: the pure per-tensor update leaves its inputs alone; frozen
coefficients leave parameters and moments exactly as they are; the ``torch.optim`` front end
(one config) and the batched form (K configs) agree config by config; the flat in-place update
gives the per-tensor update's curves; the compiled step gives the eager step's curves; a config
trained inside a population equals the same config trained alone."""

from __future__ import annotations

import pytest
import torch

from taskset_lab.engine import Population, train_population, train_single
from taskset_lab.engine.compiled import CompiledStep
from taskset_lab.optim import BatchedOptimizer, FamilyOptimizer, get_optimizer_family
from taskset_lab.optim.base import OptimizerFamily
from taskset_lab.optim.registry import OPTIMIZER_FAMILIES
from taskset_lab.tasks import sample_task

from conftest import random_state, run_population

F64 = torch.float64
MLP = {"hidden": [8], "batch_size": 16}
#: every registered family
OPTIMIZERS_UNDER_TEST = OPTIMIZER_FAMILIES.names()
#: hparams that make a family's configs exercise every branch of its update (data, not tests)
BRANCHES = {
    "nadamw": [dict(nesterov=1.0, warmup_fraction=0.2, decoupled_weight_decay=1e-2),
               dict(nesterov=0.0, min_lr_mult=0.1, constant_fraction=0.3, l2_weight_decay=1e-2)],
    "adam8p": [dict(l1=1e-3, l2=1e-2)],
}


def configs_of(name: str) -> list[dict]:
    """Four configs that train (rates capped) with the family's branches, and one that diverges."""
    fam = get_optimizer_family(name)
    configs = [fam.sample(i) for i in range(1, 5)]
    for c, extra in zip(configs, BRANCHES.get(name, [])):
        c.update(extra)
    for c in configs:
        c["lr"] = min(max(c["lr"], 1e-3), 3e-2)
    return configs + [dict(fam.sample(9), lr=1e4)]


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", OPTIMIZERS_UNDER_TEST)
def test_update_is_pure(name):
    fam = get_optimizer_family(name)
    g = torch.Generator().manual_seed(0)
    p, grad = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    state = random_state(fam, p, g)
    hp = {k: torch.as_tensor(v, dtype=F64) for k, v in fam.validate(configs_of(name)[0]).items()}
    before = (p.clone(), grad.clone(), {k: v.clone() for k, v in state.items()})
    new_p, new_state = fam.update(p, grad, state, torch.tensor(3.0), hp, 20)
    assert torch.equal(p, before[0]) and torch.equal(grad, before[1])
    assert all(torch.equal(state[k], before[2][k]) for k in state)
    assert not torch.equal(new_p, p) and set(new_state) == set(fam.state_names)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS_UNDER_TEST if get_optimizer_family(n).has_in_place_update])
def test_frozen_coefficients_leave_parameters_and_moments_as_they_are(name):
    fam = get_optimizer_family(name)
    opt = BatchedOptimizer.from_configs(fam, configs_of(name), 20, dtype=F64)
    k = opt.num_configs
    g = torch.Generator().manual_seed(1)
    p = torch.randn(k, 6, generator=g, dtype=F64)
    state = {n: torch.rand(k, 6, generator=g, dtype=F64) for n in fam.state_names}
    alive = torch.tensor([True, False] * (k // 2) + [True] * (k % 2)).view(k, 1)
    grad = torch.randn(k, 6, generator=g, dtype=F64) * alive  # the engine zeroes a frozen row's gradient
    p0, s0 = p.clone(), {n: v.clone() for n, v in state.items()}
    fam.update_(p, grad, state, opt.coefficients(torch.tensor(4.0), alive=alive))
    frozen = ~alive.view(-1)
    assert torch.equal(p[frozen], p0[frozen]) and not torch.equal(p[~frozen], p0[~frozen])
    assert all(torch.equal(state[n][frozen], s0[n][frozen]) for n in state)


@pytest.mark.parametrize("name", OPTIMIZERS_UNDER_TEST)
def test_torch_optim_front_end_equals_the_batched_form(name):
    """One config as a ``torch.optim.Optimizer`` follows config k of the batched optimizer."""
    fam = get_optimizer_family(name)
    configs = configs_of(name)[:4]
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 5, generator=g, dtype=F64), torch.randn(16, 3, generator=g, dtype=F64)
    w0, b0 = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    k, total = len(configs), 30
    stacked = {"w": w0.expand(k, -1, -1) + 0.1 * torch.arange(k, dtype=F64).view(k, 1, 1),
               "b": b0.expand(k, -1).clone()}
    batched = BatchedOptimizer.from_configs(fam, configs, total_steps=total, dtype=F64)
    state = batched.init(stacked)
    singles = []
    for i, c in enumerate(configs):
        ps = [torch.nn.Parameter(stacked["w"][i].clone()), torch.nn.Parameter(stacked["b"][i].clone())]
        singles.append((ps, FamilyOptimizer(ps, fam, c, total_steps=total)))
    for _ in range(25):
        for (w, b), opt in singles:
            opt.zero_grad()
            ((x @ w + b - y) ** 2).mean().backward()
        grads = {"w": torch.stack([ps[0].grad for ps, _ in singles]),
                 "b": torch.stack([ps[1].grad for ps, _ in singles])}
        stacked, state = batched.step(stacked, grads, state)
        for _, opt in singles:
            opt.step()
    for i, ((w, b), _) in enumerate(singles):
        torch.testing.assert_close(stacked["w"][i], w.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stacked["b"][i], b.detach(), rtol=1e-12, atol=1e-12)
    assert (stacked["w"] - w0).abs().max() > 1e-3  # the configs really moved
    assert int(state["w"]["step"]) == 25


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS_UNDER_TEST if get_optimizer_family(n).has_in_place_update])
def test_flat_in_place_update_equals_the_per_tensor_update(name, one_torch_thread):
    pop = Population(sample_task("lab_mlp", 0, MLP), name, configs_of(name), 12, dtype=F64, eval_batches=1)
    assert pop.flat_update
    flat_snaps: list = []
    flat_losses, flat_state = run_population(pop, pop.step, pop.init(), 12, flat_snaps)
    ref_losses, ref_state = run_population(pop, pop.step, pop.init(flat=False), 12)
    assert flat_state.flat is not None and ref_state.flat is None
    _close(flat_losses, ref_losses)
    assert torch.equal(flat_state.diverged_step, ref_state.diverged_step)
    alive = ~ref_state.diverged
    assert alive[:4].all() and not alive[4], "configs 0-3 train, config 4 diverges"
    for n, p in ref_state.params.items():
        _close(flat_state.params[n][alive], p[alive])
        for key in get_optimizer_family(name).state_names:
            _close(flat_state.opt_state[n][key][alive], ref_state.opt_state[n][key][alive])
    # frozen through its coefficients: from its divergence on, config 4 does not move at all
    d = int(flat_state.diverged_step[4])
    for snap in flat_snaps[d:]:
        for n in snap:
            assert torch.equal(snap[n][4], flat_snaps[d][n][4])


@pytest.mark.parametrize("name", OPTIMIZERS_UNDER_TEST)
def test_compiled_step_equals_the_eager_step(name, one_torch_thread):
    pop = Population(sample_task("lab_mlp", 0, MLP), name, configs_of(name), 6, dtype=F64, eval_batches=1)
    compiled = CompiledStep(pop, backend="aot_eager")
    eager_losses, eager_state = run_population(pop, pop.step, pop.init(), 6)
    comp_losses, comp_state = run_population(pop, compiled.step, pop.init(), 6)
    assert compiled.compiled, "the compiled path fell back to eager"
    _close(comp_losses, eager_losses)
    for n in eager_state.params:
        _close(comp_state.params[n], eager_state.params[n])
    assert torch.equal(comp_state.diverged_step, eager_state.diverged_step)
    assert bool(eager_state.diverged[4])


@pytest.mark.parametrize("name", OPTIMIZERS_UNDER_TEST)
def test_config_in_a_population_equals_the_config_alone(name, one_torch_thread):
    """Population (vmap, batched update) against ``train_single`` (nn.Module, the torch.optim
    front end, ``loss.backward()``), config by config, the diverging one included."""
    task = sample_task("lab_mlp", 0, MLP)
    fam = get_optimizer_family(name)
    configs = configs_of(name)
    pop = train_population(task, fam, configs, 10, 5, eval_batches=2, dtype=F64, compile=False)
    for k, hp in enumerate(configs):
        alone = train_single(task, (fam, hp), 10, 5, eval_batches=2, dtype=F64)
        for split, values in pop.losses.items():
            torch.testing.assert_close(values[k], alone.losses[split].reshape(-1), rtol=1e-9, atol=1e-12,
                                       equal_nan=True)
    assert pop.diverged.tolist() == [False] * 4 + [True]


@pytest.mark.parametrize("name", OPTIMIZERS_UNDER_TEST)
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # addcmul_ has no batching rule
def test_pure_update_vmaps_to_the_batched_step(name):
    """``torch.func.vmap`` of the one-config pure update over K configs (parameters, gradients,
    state and hyperparameters all batched) equals the batched optimizer's step."""
    fam = get_optimizer_family(name)
    configs = configs_of(name)
    k, total = len(configs), 20
    g = torch.Generator().manual_seed(3)
    params = {"w": torch.randn(k, 4, 3, generator=g, dtype=F64), "b": torch.randn(k, 3, generator=g, dtype=F64)}
    grads = {n: torch.randn(p.shape, generator=g, dtype=F64) for n, p in params.items()}
    batched = BatchedOptimizer.from_configs(fam, configs, total_steps=total, dtype=F64)
    state = batched.init(params)
    for n, p in params.items():  # a state that is not all zeros, at update number 3
        state[n].update({key: torch.rand(v.shape, generator=g, dtype=F64) for key, v in state[n].items()
                         if key != "step"})
        state[n]["step"] = torch.tensor(2.0)
    want_params, want_state = batched.step(params, grads, state)
    step = torch.tensor(3.0)

    def one(p, grad, st, hp):
        return fam.update(p, grad, st, step, hp, total)

    for n, p in params.items():
        inner = {key: state[n][key] for key in fam.state_names}
        new_p, new_state = torch.func.vmap(one)(p, grads[n], inner, batched.hparams)
        _close(new_p, want_params[n])
        for key in fam.state_names:
            _close(new_state[key], want_state[n][key])
    assert not torch.equal(want_params["w"], params["w"])


class VectorHparamFamily(OptimizerFamily):
    """A family with only the pure update and a vector hyperparameter per config, the shape a
    learned optimizer's weights take: ``m = β·m + g``, ``θ ← θ - w₀·m - w₁·sign(g)``."""

    name = "test_vector_hparam"
    hparam_names = ("beta", "w")
    state_names = ("m",)

    def sample(self, seed: int) -> dict:
        rng = torch.Generator().manual_seed(seed)
        return {"beta": 0.9, "w": (torch.rand(2, generator=rng, dtype=F64) * 1e-2).tolist()}

    def validate(self, hparams):
        return {"beta": float(hparams["beta"]), "w": [float(x) for x in hparams["w"]]}

    def update(self, p, g, state, step, hp, total_steps):
        m = hp["beta"] * state["m"] + g
        return p - hp["w"][0] * m - hp["w"][1] * torch.sign(g), {"m": m}


def test_a_family_with_only_a_pure_update_and_vector_hparams_runs_in_every_front_end(one_torch_thread):
    """No in-place form, a [2]-vector hyperparameter per config: the batched optimizer vmaps the
    pure update (hparams [K, 2]), and a config in a population equals the same config alone
    through the ``torch.optim`` front end; the compiled step equals the eager one."""
    fam = VectorHparamFamily()
    assert not fam.has_in_place_update
    configs = [fam.sample(i) for i in range(3)]
    task = sample_task("lab_mlp", 0, MLP)
    opt = BatchedOptimizer.from_configs(fam, configs, 8, dtype=F64)
    assert opt.hparams["w"].shape == (3, 2)
    pop = train_population(task, fam, configs, 8, 4, eval_batches=1, dtype=F64, compile=False)
    for k, hp in enumerate(configs):
        alone = train_single(task, (fam, hp), 8, 4, eval_batches=1, dtype=F64)
        torch.testing.assert_close(pop.losses["train"][k], alone.losses["train"].reshape(-1), rtol=1e-10, atol=1e-12)
    assert not torch.equal(pop.losses["train"][:, 0], pop.losses["train"][:, -1])  # it trained
    population = Population(task, fam, configs, 4, dtype=F64, eval_batches=1)
    compiled = CompiledStep(population, backend="aot_eager")
    eager_losses, _ = run_population(population, population.step, population.init(), 4)
    comp_losses, _ = run_population(population, compiled.step, population.init(), 4)
    assert compiled.compiled
    _close(comp_losses, eager_losses)
    with pytest.raises(ValueError, match="K rows"):
        BatchedOptimizer(fam, {"beta": torch.tensor(0.9), "w": torch.zeros(3, 2)}, 8)
