"""TaskSet's toy problems at their extremes (moved here from the retired ``lab_two_d`` and
``lab_quadratic`` families' tests): each 2-D function is stationary, with a finite gradient,
at its known minimum; the log-output quadratic is finite, with a finite gradient, at x = 0."""

from __future__ import annotations

import math

import pytest
import torch

from taskset_lab.tasks import get_task
from taskset_lab.tasks.fixed.two_d import SPECS


@pytest.mark.parametrize("name,point,value", [
    ("TwoD_Rosenbrock", (1.0, 1.0), 0.0), ("TwoD_Beale", (3.0, 0.5), 0.0), ("TwoD_Ackley", (0.0, 0.0), 0.0),
    ("TwoD_Bowl1000", (0.0, 0.0), 0.0),
    # TaskSet's Styblinski-Tang: 0.5 * sum(x^4 - 16x^2 + 5x) + 80
    ("TwoD_StyblinskiTang", (-2.903534, -2.903534), -78.33233 + 80.0),
])
def test_two_d_known_minima_are_stationary(name, point, value):
    x = torch.tensor(point, dtype=torch.float64, requires_grad=True)
    f = SPECS[name].fn(x)
    f.backward()
    assert math.isclose(f.item(), value, abs_tol=1e-4)
    assert x.grad.abs().max() < 1e-3  # a stationary point, with a finite gradient


def test_log_output_quadratic_is_finite_at_zero():
    task = get_task("quadratic_family_seed2")  # log output, no noise
    assert task.config["output_fn"] == "log" and task.config["noise"] is None
    module = task.init_module(0).double()
    with torch.no_grad():
        module.weight.zero_()
    loss = task.forward_loss(module, task.data.batch("train", 0))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(module.weight.grad).all()
    assert loss.item() == pytest.approx(task.config["loss_scale"] * math.log(1e-8))
