"""The flat layout of the in-place population update (``BatchedOptimizer.step_flat_``): the
state updated in place, its copy stepping on the per-tensor path, which also serves low
precision and families without the in-place form. That the flat update gives the per-tensor
update's curves for every family is in tests/test_optimizer_contract.py."""

from __future__ import annotations

import torch

from taskset_lab.engine.population import Population
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks import sample_task

from conftest import run_population

F64 = torch.float64
MLP = {"hidden": [8], "batch_size": 16}


def _configs(fam_name: str) -> list[dict]:
    fam = get_optimizer_family(fam_name)
    configs = [fam.sample(i) for i in range(1, 5)]
    for c in configs:  # rates that train rather than diverge at once
        c["lr"] = min(c["lr"], 3e-2)
    if fam_name == "nadamw":  # both numerators, a warmup, a floor, both decays
        configs[0].update(nesterov=1.0, warmup_fraction=0.2, decoupled_weight_decay=1e-2)
        configs[1].update(nesterov=0.0, min_lr_mult=0.1, constant_fraction=0.3, l2_weight_decay=1e-2)
    if fam_name == "adam8p":
        configs[0].update(l1=1e-3, l2=1e-2)
    return configs + [dict(fam.sample(9), lr=1e4)]  # diverges


def test_flat_state_is_updated_in_place_and_unflattened_is_a_copy(one_torch_thread):
    task = sample_task("lab_mlp", 0, MLP)
    pop = Population(task, "adam4p", _configs("adam4p")[:2], 5, eval_batches=1)
    state = pop.evaluate(pop.init())[1]
    buffer = state.flat.params
    name = next(iter(state.params))
    assert state.params[name].data_ptr() == buffer.data_ptr()  # the first parameter starts the row
    kept = state.unflattened()
    assert kept.flat is None and kept.params[name].is_contiguous()
    after = pop.step(state)
    assert after.step == 1 and after.flat is state.flat and after.params[name] is state.params[name]
    assert not torch.equal(after.params[name], kept.params[name])  # moved, in place
    assert kept.opt_state[name]["m"].abs().sum() == 0  # the copy kept the old state
    # the copy steps on the per-tensor path to the same place
    again = pop.step(kept)
    assert again.flat is None
    torch.testing.assert_close(again.params[name], after.params[name], rtol=1e-6, atol=1e-7)


def test_low_precision_parameters_take_the_per_tensor_path(one_torch_thread):
    task = sample_task("lab_mlp", 0, MLP)
    pop = Population(task, "adam4p", _configs("adam4p")[:2], 3, eval_batches=1, dtype=torch.bfloat16)
    assert not pop.flat_update and pop.init().flat is None
    state = pop.step(pop.evaluate(pop.init())[1])
    assert all(p.dtype == torch.bfloat16 for p in state.params.values())


def test_family_without_in_place_form_still_trains(one_torch_thread):
    from taskset_lab.optim.base import OptimizerFamily

    class PlainSGD(OptimizerFamily):
        name = "plain_sgd_test"
        hparam_names = ("lr",)

        def sample(self, seed):
            return {"lr": 0.1}

        def update(self, p, g, state, step, hp, total_steps):
            return p - hp["lr"] * g, {}

    fam = PlainSGD()
    assert not fam.has_in_place_update
    task = sample_task("lab_mlp", 0, MLP)
    pop = Population(task, fam, [{"lr": 0.1}, {"lr": 0.01}], 4, eval_batches=1)
    assert pop.init().flat is None
    losses, _ = run_population(pop, pop.step, pop.init(), 4)
    assert torch.isfinite(losses).all() and losses[0, -1, 0] < losses[0, 0, 0]
