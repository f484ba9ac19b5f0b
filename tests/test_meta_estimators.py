"""PES and antithetic ES on the population engine against the exact meta-gradient (autograd
through the same unroll), the zeroth-order cancellation, and diverged pairs left out."""

from __future__ import annotations

import torch

from taskset_lab.meta.estimators import antithetic_estimate, perturbations
from taskset_lab.meta.unroll import InnerRun
from taskset_lab.optim.learned import ARCHITECTURES
from taskset_lab.tasks import sample_task

F64 = torch.float64
# TaskSet's quadratic_family in 8 dimensions; no A noise: exact_meta_gradient replays the
# unroll outside the engine, where no step noise is drawn
QUAD = {"dims": 8, "noise": None}


def exact_meta_gradient(run: InnerRun, theta: Tensor, start: int, stop: int) -> Tensor:  # noqa: F821
    """d/dθ of the mean training loss over steps [start, stop) / L0, by autograd through the
    unroll from step 0 with the same task, module, batches and update as the population."""
    fam, pop = run.family, run.pop
    theta = theta.clone().requires_grad_(True)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in pop.module.named_parameters()}
    constants = dict(pop.module.named_buffers())
    opt_state = {n: fam.init_state(p) for n, p in params.items()}
    hp = {"lr": torch.tensor(run.lr, dtype=F64), "theta": theta}
    total = 0.0
    for s in range(stop):
        loss, _ = pop.task.functional_loss(pop.module, params, {}, constants, pop.task.data.batch("train", s), {}, True)
        if s >= start:
            total = total + loss
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        for (n, p), g in zip(list(params.items()), grads):
            params[n], opt_state[n] = fam.update(p, g, opt_state[n], torch.tensor(float(s + 1)), hp, stop)
    meta = total / (stop - start) / run.l0[0]
    return torch.autograd.grad(meta, theta)[0]


def _agree(estimate, exact: Tensor) -> None:
    z = (estimate.grad - exact) / estimate.stderr
    # in expectation: the squared z-scores average about 1 (not 3), and the estimate points the
    # exact gradient's way
    assert float((z ** 2).mean()) < 2.0, float((z ** 2).mean())
    cos = float(torch.nn.functional.cosine_similarity(estimate.grad, exact, dim=0))
    assert cos > 0.8, cos
    assert float(exact.norm()) > 10 * float(estimate.stderr.norm()) / estimate.grad.numel() ** 0.5


def test_pes_and_es_agree_with_the_exact_meta_gradient(one_torch_thread):
    """Quadratic inner problem, small_fc_lopt (190 weights), 1500 antithetic pairs per estimate.
    First truncation (steps 0-4): antithetic ES and PES are the same estimator; second
    truncation (steps 5-9): PES, whose ξ accumulates both truncations' ε, estimates the
    gradient through the whole unroll."""
    fam = ARCHITECTURES["small_fc_lopt"]
    task = sample_task("quadratic_family", 1, QUAD)
    theta = fam.init_theta(7)
    sigma, pairs = 1e-3, 1500
    gen = torch.Generator().manual_seed(0)
    run = InnerRun(fam, task, unroll_length=10, num_pairs=pairs, estimator="pes", lr=0.05, dtype=F64)
    first = run.truncation(theta, perturbations(pairs, fam.num_weights, sigma, gen, F64), 5)
    est1 = antithetic_estimate(first.xi, first.loss_pos, first.loss_neg, sigma, first.valid)
    second = run.truncation(theta, perturbations(pairs, fam.num_weights, sigma, gen, F64), 5)
    est2 = antithetic_estimate(second.xi, second.loss_pos, second.loss_neg, sigma, second.valid)
    assert est1.pairs == est2.pairs == pairs and second.ended and not first.ended
    _agree(est1, exact_meta_gradient(run, theta, 0, 5))
    _agree(est2, exact_meta_gradient(run, theta, 5, 10))
    # truncated ES (ξ = this truncation's ε only) is biased here: it misses θ's effect on the
    # state the truncation starts from
    eps2 = second.xi - first.xi
    biased = antithetic_estimate(eps2, second.loss_pos, second.loss_neg, sigma, second.valid)
    z = (biased.grad - exact_meta_gradient(run, theta, 5, 10)) / biased.stderr
    assert float((z ** 2).mean()) > 2.0


def test_antithetic_pairs_cancel_the_zeroth_order_term():
    """Shifting every loss by a constant leaves the estimate unchanged; and when θ has no effect
    (lr 0, every member on the same trajectory) ES and PES through the engine give exactly 0,
    where a one-sided estimate ε·L/σ² would not."""
    g = torch.Generator().manual_seed(1)
    xi = torch.randn(64, 10, generator=g, dtype=F64)
    lp, ln = torch.rand(64, generator=g, dtype=F64), torch.rand(64, generator=g, dtype=F64)
    a = antithetic_estimate(xi, lp, ln, 0.1)
    b = antithetic_estimate(xi, lp + 1024.0, ln + 1024.0, 0.1)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-9)
    fam = ARCHITECTURES["small_fc_lopt"]
    task = sample_task("quadratic_family", 1, QUAD)
    for estimator in ("pes", "es"):
        run = InnerRun(fam, task, unroll_length=6, num_pairs=8, estimator=estimator, lr=0.0, dtype=F64)
        for _ in range(2):
            tr = run.truncation(fam.init_theta(0), perturbations(8, fam.num_weights, 0.1, g, F64), 3)
            est = antithetic_estimate(tr.xi, tr.loss_pos, tr.loss_neg, 0.1, tr.valid)
            assert torch.equal(est.grad, torch.zeros_like(est.grad)) and est.pairs == 8
            assert float(tr.loss_pos.abs().min()) > 0.1  # the losses themselves are not zero


def test_diverged_pairs_are_left_out_and_end_the_run():
    """Pairs whose perturbation makes a member diverge are counted and left out; the run ends."""
    fam = ARCHITECTURES["small_fc_lopt"]
    task = sample_task("quadratic_family", 1, QUAD)
    run = InnerRun(fam, task, unroll_length=20, num_pairs=4, estimator="pes", lr=0.05, dtype=F64)
    theta = fam.init_theta(0)
    eps = torch.zeros(4, fam.num_weights, dtype=F64)
    eps[0] = 1e3 * torch.ones(fam.num_weights, dtype=F64)  # pair 0: huge steps, one member diverges
    tr = run.truncation(theta, eps, 5)
    assert tr.valid.tolist() == [False, True, True, True] and tr.diverged_pairs == 1 and tr.ended
    est = antithetic_estimate(tr.xi, tr.loss_pos, tr.loss_neg, 0.1, tr.valid)
    assert est.pairs == 3 and est.left_out == 1 and torch.isfinite(est.grad).all()
