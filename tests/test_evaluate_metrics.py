"""The scoring numbers of taskset_lab.evaluate against values computed by hand on small arrays:
the speedup-over-tuned-Adam envelope, time to target, AlgoPerf's performance profiles and
score, and the aggregates with their bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from taskset_lab.evaluate import (AdamEnvelope, ema, interval_estimates, iqm, performance_profiles, profile_score,
                                  steps_to_target)

STEPS = np.array([0.0, 10.0])
#: [learning rates, seeds, evaluations]: lr A goes 4 -> 2, lr B stays at 3, lr C diverged in a seed
CURVES = np.array([[[4.0, 2.0], [4.0, 2.0]],
                   [[3.0, 3.0], [3.0, 3.0]],
                   [[1.0, 0.5], [np.nan, np.nan]]])


def test_ema_is_learned_optimizations_unbiased_recursion():
    np.testing.assert_allclose(ema([1.0, 0.0, 0.0], 0.5), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(ema([[4.0, 2.0]]), [[4.0, 0.95 * 4.0 + 0.05 * 2.0]])


def test_the_envelope_maps_a_loss_to_the_steps_tuned_adam_needs():
    env = AdamEnvelope.from_curves(STEPS, CURVES, alpha=0.0, points=11)
    # lr C's seed mean is NaN (one seed diverged) and left out; the bottom of A and B is 3 at step 0, 2 at 10
    np.testing.assert_allclose(env.steps, np.arange(11.0))
    np.testing.assert_allclose(env.losses, 3.0 - 0.1 * np.arange(11.0))
    np.testing.assert_allclose(env.steps_to_reach([2.5, 2.0, 1.0, 3.0, 9.0]), [5.0, 10.0, 10.0, 0.0, 0.0])
    assert float(env.speedup(2.5, 2.0)) == pytest.approx(2.5)  # tuned Adam needs 5 steps, we took 2
    # smoothed as learned_optimization does (alpha 0.95): B's flat 3 is the bottom at step 0,
    # A's 3.9 at step 10 is above it, so the running minimum keeps 3 everywhere
    smoothed = AdamEnvelope.from_curves(STEPS, CURVES, points=11)
    np.testing.assert_allclose(smoothed.losses, np.full(11, 3.0))


def test_a_known_ranking_an_untrained_optimizer_scores_zero_and_a_diverged_one_is_a_miss():
    env = AdamEnvelope.from_curves(STEPS, CURVES, alpha=0.0, points=11)
    untrained = env.speedup(3.0, 10.0)  # lr 1e-9: the loss never left its start
    good = env.speedup(2.0, 5.0)  # tuned Adam's final loss in half the steps
    diverged = env.speedup(np.nan, 10.0)
    assert float(untrained) == 0.0 and float(good) == pytest.approx(2.0)
    assert math.isnan(float(diverged))
    assert steps_to_target(STEPS, [np.nan, np.nan], 2.0) == math.inf
    assert steps_to_target([0, 5, 10], [3.0, 1.9, 1.0], 2.0) == 5.0


def test_bad_envelope_input_is_refused():
    with pytest.raises(ValueError, match="evaluations"):
        AdamEnvelope.from_curves(STEPS, CURVES[:, :, :1])
    with pytest.raises(ValueError, match="NaN"):
        AdamEnvelope.from_curves(STEPS, np.full((2, 1, 2), np.nan))


def test_a_learning_rate_counts_at_the_evaluations_before_it_diverged():
    """learned_optimization takes the nanmin over learning rates per evaluation: a curve that
    is NaN from some evaluation on still sets the envelope before it."""
    curves = np.array([[[3.0, 2.0, 1.5]], [[2.5, np.nan, np.nan]]])
    env = AdamEnvelope.from_curves(np.array([0.0, 5.0, 10.0]), curves, alpha=0.0, points=3)
    np.testing.assert_allclose(env.losses, [2.5, 2.0, 1.5])


def test_performance_profiles_and_score_by_hand():
    # task 3 is missed by optimizer 0; best times per task 1, 2, 4
    times = np.array([[1.0, 2.0, np.inf], [2.0, 2.0, 4.0]])
    taus, rho = performance_profiles(times)
    # optimizer 0: ratios 1, 1, inf -> 2/3 everywhere; optimizer 1: ratios 2, 1, 1
    np.testing.assert_allclose(rho[0], np.full(taus.shape, 2 / 3))
    np.testing.assert_allclose(rho[1], np.where(taus >= 2.0, 1.0, 2 / 3))
    score = profile_score(taus, rho)
    assert score[0] == pytest.approx(2 / 3)
    assert score[1] == pytest.approx((2 / 3 * 1.0 + 1.0 * 2.0) / 3.0, abs=2e-3)  # the trapezoids' grid error
    _, nobody = performance_profiles(np.array([[np.inf], [np.inf]]))
    assert not nobody.any()
    with pytest.raises(ValueError, match="NaN"):
        performance_profiles(np.array([[np.nan, 1.0]]))


def test_iqm_and_the_stratified_bootstrap_intervals():
    scores = np.arange(8.0).reshape(2, 4)
    assert iqm(scores) == pytest.approx(3.5)  # the middle four of 0..7: 2, 3, 4, 5
    assert iqm(scores) == pytest.approx(stats.trim_mean(scores.ravel(), 0.25))
    # each task constant over seeds: resampling seeds within a task changes nothing
    fixed = interval_estimates(np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]]), reps=200)
    assert fixed["mean"] == (5.0, 5.0, 5.0) and fixed["median"] == (5.0, 5.0, 5.0)
    rng = np.random.default_rng(1)
    noisy = rng.normal(size=(12, 5))
    ci = interval_estimates(noisy, reps=500, seed=3)
    for name, (estimate, low, high) in ci.items():
        assert low < estimate < high, name
        assert high - low < 1.5, name
    assert interval_estimates(noisy, reps=500, seed=3) == ci  # seeded: the same intervals
    with pytest.raises(ValueError, match="finite"):
        interval_estimates(np.array([[np.inf, 1.0]]))
