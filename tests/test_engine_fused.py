"""The in-place population update (``OptimizerFamily.update_`` over flat ``[K, P]`` buffers,
``BatchedOptimizer.step_flat_``): the same curves as the per-tensor update, diverged configs
frozen through their coefficients, the flat state updated in place."""

from __future__ import annotations

import pytest
import torch

from taskset_lab.engine import train_population
from taskset_lab.engine.population import Population
from taskset_lab.engine.single import train_single
from taskset_lab.optim import get_family
from taskset_lab.tasks import sample_task

F64 = torch.float64
MLP = {"hidden": [8], "batch_size": 16}


def _configs(fam_name: str) -> list[dict]:
    fam = get_family(fam_name)
    configs = [fam.sample(i) for i in range(1, 5)]
    for c in configs:  # rates that train rather than diverge at once
        c["lr"] = min(c["lr"], 3e-2)
    if fam_name == "nadamw":  # both numerators, a warmup, a floor, both decays
        configs[0].update(nesterov=1.0, warmup_fraction=0.2, decoupled_weight_decay=1e-2)
        configs[1].update(nesterov=0.0, min_lr_mult=0.1, constant_fraction=0.3, l2_weight_decay=1e-2)
    if fam_name == "adam8p":
        configs[0].update(l1=1e-3, l2=1e-2)
    return configs + [dict(fam.sample(9), lr=1e4)]  # diverges


def _run(pop: Population, state, n: int):
    state = pop.evaluate(state)[1]
    losses, snapshots = [], []
    for _ in range(n):
        state = pop.step(state)
        values, state = pop.evaluate(state)
        losses.append(values)
        snapshots.append({k: v.clone() for k, v in state.params.items()})
    return torch.stack(losses, 1), state, snapshots


@pytest.mark.parametrize("fam_name", ["adam1p", "adam4p", "adam6p", "adam8p", "nadamw"])
def test_flat_update_equals_per_tensor_update(fam_name, one_torch_thread):
    task = sample_task("lab_mlp", 0, MLP)
    pop = Population(task, fam_name, _configs(fam_name), 12, dtype=F64, eval_batches=1)
    assert pop.fused
    flat_losses, flat_state, flat_snaps = _run(pop, pop.init(), 12)
    ref_losses, ref_state, _ = _run(pop, pop.init(flat=False), 12)
    assert flat_state.flat is not None and ref_state.flat is None
    torch.testing.assert_close(flat_losses, ref_losses, rtol=1e-10, atol=1e-12, equal_nan=True)
    assert torch.equal(flat_state.diverged_step, ref_state.diverged_step)
    alive = ~ref_state.diverged
    assert alive[:4].all() and not alive[4], "configs 0-3 train, config 4 diverges"
    for name, p in ref_state.params.items():
        torch.testing.assert_close(flat_state.params[name][alive], p[alive], rtol=1e-10, atol=1e-12)
        for key in get_family(fam_name).state_names:
            torch.testing.assert_close(flat_state.opt_state[name][key][alive], ref_state.opt_state[name][key][alive],
                                       rtol=1e-10, atol=1e-12)
    # frozen through its coefficients: from its divergence on, config 4 does not move at all
    d = int(flat_state.diverged_step[4])
    for snap in flat_snaps[d:]:
        for name in snap:
            assert torch.equal(snap[name][4], flat_snaps[d][name][4])


def test_flat_population_matches_config_alone(one_torch_thread):
    task = sample_task("lab_mlp", 0, MLP)
    fam = get_family("nadamw")
    configs = _configs("nadamw")
    pop = train_population(task, fam, configs, 10, 5, eval_batches=2, dtype=F64, compile=False)
    for k, hp in enumerate(configs):
        alone = train_single(task, (fam, hp), 10, 5, eval_batches=2, dtype=F64)
        for split, values in pop.losses.items():
            torch.testing.assert_close(values[k], alone.losses[split].reshape(-1), rtol=1e-9, atol=1e-12,
                                       equal_nan=True)
    assert pop.diverged.tolist() == [False] * 4 + [True]


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
    assert not pop.fused and pop.init().flat is None
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
    assert not fam.fused
    task = sample_task("lab_mlp", 0, MLP)
    pop = Population(task, fam, [{"lr": 0.1}, {"lr": 0.01}], 4, eval_batches=1)
    assert pop.init().flat is None
    losses, _, _ = _run(pop, pop.init(), 4)
    assert torch.isfinite(losses).all() and losses[0, -1, 0] < losses[0, 0, 0]
