"""Each MTL algorithm takes a step on a toy model; weights and projections against formulas."""

from __future__ import annotations

import math

import pytest
import torch

from taskset_lab.mtl.algorithms import DWA, EW, STL, UW, GradNorm, PCGrad, project_conflicts
from taskset_lab.mtl.datasets import GradNormSynthetic
from taskset_lab.mtl.models import MLPBackbone, MTLModel
from taskset_lab.mtl.module import MTLModule
from taskset_lab.mtl.optim import AdaTaskAdam, MTLAdam

ALGORITHMS = [EW, UW, DWA, GradNorm, PCGrad]


def _module(algorithm, optimizer=AdaTaskAdam, steps=0):
    dm = GradNormSynthetic(sigmas=[1.0, 30.0], in_dim=6, out_dim=3, n_train=48, n_val=8, n_test=8, batch_size=16)
    torch.manual_seed(0)
    model = MTLModel(MLPBackbone(dm.input_shape, hidden=[8]), dm.tasks)
    from functools import partial

    return MTLModule(model, dm, algorithm, partial(optimizer, lr=1e-2), eval_every=1000), dm


def _manual_steps(module, dm, n=3):
    """Drive training_step without a Trainer: the optimizers() hook returns our optimizer."""
    opt = module.configure_optimizers()
    module.optimizers = lambda: opt
    module.lr_schedulers = lambda: None
    module._last_eval_step = 10 ** 9  # no evaluation in this test
    module.log_dict = lambda *a, **k: None
    before = [p.detach().clone() for p in module.model.parameters()]
    batches = iter(dm.train_dataloader())
    for _ in range(n):
        module.training_step(next(batches), 0)
    return before, opt


@pytest.mark.parametrize("cls", ALGORITHMS)
@pytest.mark.parametrize("optimizer", [MTLAdam, AdaTaskAdam])
def test_every_algorithm_takes_a_step(cls, optimizer):
    module, dm = _module(cls(), optimizer)
    before, opt = _manual_steps(module, dm)
    after = list(module.model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # shared and head parameters moved
    assert all(torch.isfinite(p).all() for p in after)
    assert module.au is not None and module.au.steps == 3
    rau = module.au.rau_per_layer()
    assert set(rau) == {"backbone.layers.0"}
    assert math.isclose(sum(rau["backbone.layers.0"]), 1.0, rel_tol=1e-6)


def test_pcgrad_projection_known_answer():
    g1 = [torch.tensor([1.0, 0.0])]
    g2 = [torch.tensor([-1.0, 1.0])]
    out = project_conflicts([g1, g2])
    # g1.g2 = -1 < 0: g1 - (-1/2) g2 = [0.5, 0.5]; g2 - (-1/1) g1 = [0, 1]
    torch.testing.assert_close(out[0][0], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out[1][0], torch.tensor([0.0, 1.0]))
    # no conflict: unchanged
    same = project_conflicts([[torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])]])
    torch.testing.assert_close(same[1][0], torch.tensor([1.0, 1.0]))


def test_dwa_weights_from_the_last_two_epochs():
    dwa = DWA(temperature=2.0)
    dwa.setup(2)
    losses = torch.tensor([1.0, 1.0])
    assert torch.equal(dwa.weights(losses, [], 0), torch.ones(2))
    dwa.on_epoch_end(torch.tensor([4.0, 2.0]))
    assert torch.equal(dwa.weights(losses, [], 0), torch.ones(2))  # still < 2 epochs
    dwa.on_epoch_end(torch.tensor([2.0, 2.0]))  # ratios 0.5 and 1.0
    w = dwa.weights(losses, [], 0)
    e1, e2 = math.exp(0.5 / 2), math.exp(1.0 / 2)
    torch.testing.assert_close(w, torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]))


def test_uncertainty_weighting_learns_smaller_weight_for_the_larger_loss():
    uw = UW(weight_lr=0.1)
    uw.setup(2)
    for _ in range(50):
        w = uw.weights(torch.tensor([0.1, 100.0]), [], 0)
    assert w[1] < w[0]
    # the optimum of L e^-s / 2 + s / 2 is s = log L: the log-variances move toward it
    assert uw.log_vars[1] > uw.log_vars[0]


def test_gradnorm_raises_the_weight_of_the_task_with_small_gradients():
    gn = GradNorm(alpha=1.5, weight_lr=0.05)
    gn.setup(2)
    grads = [[torch.full((4,), 0.01)], [torch.full((4,), 10.0)]]
    for _ in range(20):
        w = gn.weights(torch.tensor([1.0, 1.0]), grads, 0)
    assert w[0] > 1.0 > w[1] and math.isclose(float(w.sum()), 2.0, rel_tol=1e-5)


def test_stl_is_equal_weighting_trained_per_task():
    assert STL.single_task and not EW.single_task
    stl = STL()
    stl.setup(1)
    assert torch.equal(stl.weights(torch.tensor([3.0]), [], 0), torch.ones(1))
