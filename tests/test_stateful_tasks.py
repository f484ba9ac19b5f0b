"""Stateful and random tasks (docs/design.md §Stateful and random tasks): BatchNorm statistics
as task state, dropout and sampling noise drawn per (task, replica, config id, step), the
same curve for config k inside a population of 4 and alone; Population's init/step/evaluate;
a plain PyTorch loop on the same task."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import assert_population_equals_alone
from taskset_lab.engine import Population, train_single
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.base import SPLITS, Task, TensorData, state_names
from taskset_lab.tasks.context import draw
from taskset_lab.tasks.nn import BatchNorm, Dropout

F64 = torch.float64


def _splits(seed: int, n: int = 48, d: int = 5):
    gen = torch.Generator().manual_seed(seed)
    return {s: (torch.randn(n, d, generator=gen), torch.randint(0, 3, (n,), generator=gen)) for s in SPLITS}


class BatchNormTask(Task):
    """5 -> 8 -> BN -> relu -> 3 classifier."""

    def make_module(self) -> nn.Module:
        return nn.Sequential(nn.Linear(5, 8), BatchNorm(8, momentum=0.2), nn.ReLU(), nn.Linear(8, 3))

    def loss(self, output, batch):
        return nn.functional.cross_entropy(output, batch[1])


class DropoutTask(BatchNormTask):
    def make_module(self) -> nn.Module:
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), Dropout(0.3), nn.Linear(16, 3))


class NoisyLatentTask(Task):
    """A VAE-like loss: the encoder's mean plus sampled noise goes through the decoder."""

    def make_module(self) -> nn.Module:
        return nn.ModuleDict({"enc": nn.Linear(5, 2), "dec": nn.Linear(2, 5)})

    def forward_loss(self, model, batch):
        x = batch[0]
        # call the (possibly functional) model on the input; reconstruct through noise
        z_mean = model(x)
        eps = draw("latent", tuple(z_mean.shape), "normal", z_mean)
        return ((z_mean + eps - x[:, :2]) ** 2).mean()

    def loss(self, output, batch):  # unused: forward_loss is overridden
        raise NotImplementedError


class LinearEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(5, 2)

    def forward(self, x):
        return self.enc(x)


class NoisyTask(NoisyLatentTask):
    def make_module(self) -> nn.Module:
        return LinearEncoder()


def make(cls, seed=0):
    return cls({"family": cls.__name__, "seed": seed}, TensorData(_splits(seed), 12, seed=seed))


CONFIGS = [get_optimizer_family("adam8p").sample(i) for i in range(4)]


@pytest.mark.parametrize("cls", [BatchNormTask, DropoutTask, NoisyTask])
def test_config_in_population_of_4_equals_config_alone(cls):
    task = make(cls)
    pop = assert_population_equals_alone(task, CONFIGS, steps=12, eval_every=4, eval_batches=4,
                                         config_ids=[10, 11, 12, 13], check=[0, 3])
    # a different config id draws different numbers (dropout and noise tasks only)
    other = train_single(task, ("adam8p", CONFIGS[0]), total_steps=12, eval_every=4, dtype=F64, config_id=99)
    same = torch.allclose(other.losses["train"][0], pop.losses["train"][0])
    assert same == (cls is BatchNormTask)


def test_batchnorm_state_moves_and_eval_uses_running_statistics():
    task = make(BatchNormTask)
    population = Population(task, "adam8p", CONFIGS[:2], total_steps=5, dtype=F64)
    state = population.init()
    assert set(state.task_state) == set(state_names(population.module)) == {"1.running_mean", "1.running_var"}
    before = {n: v.clone() for n, v in state.task_state.items()}
    values0, state = population.evaluate(state)
    for _ in range(3):
        state = population.step(state)
    assert state.step == 3
    assert not torch.allclose(state.task_state["1.running_mean"], before["1.running_mean"])
    # eval mode: changing the running statistics changes the evaluation (train mode would not)
    values, _ = population.evaluate(state)
    shifted = dict(state.task_state, **{"1.running_mean": state.task_state["1.running_mean"] + 1.0})
    values_shifted, _ = population.evaluate(type(state)(**{**state.__dict__, "task_state": shifted}))
    assert not torch.allclose(values, values_shifted)
    assert values0.shape == (2, len(SPLITS))


def test_dropout_is_off_in_evaluation_and_on_in_training():
    task = make(DropoutTask)
    module = task.init_module(0).double()
    batch = tuple(t.double() if t.is_floating_point() else t for t in task.data.batch("train", 0))
    a = task.eval_loss(module, batch, "k")
    b = task.eval_loss(module, batch, "k")
    assert a == b
    t0 = task.train_loss(module, batch, step=0)
    t1 = task.train_loss(module, batch, step=1)
    assert t0 != t1 and task.train_loss(module, batch, step=0) == t0  # pure in the step


def test_plain_pytorch_loop_with_any_optimizer_trains_a_batchnorm_task():
    task = make(BatchNormTask)
    module = task.init_module(0)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    losses = []
    for step in range(30):
        loss = task.train_loss(module, task.data.batch("train", step), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert module[1].running_mean.abs().sum() > 0  # state updated in place in a plain loop
    assert math.isfinite(losses[-1]) and sum(losses[-5:]) < sum(losses[:5])


def test_population_step_freezes_a_diverged_config_including_task_state():
    task = make(BatchNormTask)
    configs = [dict(CONFIGS[0]), dict(CONFIGS[0], lr=1e6)]
    population = Population(task, "adam8p", configs, total_steps=6, dtype=F64, divergence_factor=1.0)
    _, state = population.evaluate(population.init())
    frozen = None
    for _ in range(6):
        state = population.step(state)
        if bool(state.diverged[1]) and frozen is None:
            frozen = {n: v[1].clone() for n, v in state.task_state.items()}
    assert bool(state.diverged[1]) and not bool(state.diverged[0])
    for n, v in state.task_state.items():
        torch.testing.assert_close(v[1], frozen[n])
