"""Δm on hand-computed numbers, AU/rAU on a case with a known answer, task metrics, heatmap."""

from __future__ import annotations


import pytest
import torch

from taskset_lab.mtl.kinds import MetricAccumulator, MTLTaskSpec, segmentation_scores
from taskset_lab.mtl.metrics import AUTracker, delta_m, layer_name


def test_delta_m_hand_computed():
    baseline = {1: {"accuracy": 0.80, "loss": 0.5}, 2: {"miou": 0.50, "pix_acc": 0.80},
                3: {"abs_err": 0.020, "rel_err": 0.40}}
    method = {1: {"accuracy": 0.84, "loss": 9.9}, 2: {"miou": 0.45, "pix_acc": 0.80},
              3: {"abs_err": 0.018, "rel_err": 0.44}}
    # task 1: +0.04/0.80 = +5%; task 2: (-10% + 0%)/2 = -5%; task 3: (+10% - 10%)/2 = 0% (lower is better)
    assert delta_m(method, baseline) == pytest.approx((5.0 - 5.0 + 0.0) / 3, abs=1e-9)
    better = {1: {"accuracy": 0.88}, 2: {"miou": 0.55, "pix_acc": 0.88}, 3: {"abs_err": 0.010, "rel_err": 0.20}}
    # +10%, +10%, +50%: positive means better than the single-task baselines
    assert delta_m(better, baseline) == pytest.approx((10 + 10 + 50) / 3)
    with pytest.raises(ValueError, match="same tasks"):
        delta_m({1: {"accuracy": 1.0}}, baseline)


def test_au_with_one_task_silent_on_a_layer():
    """Task 2's update on layer b is zero: rAU there is (1, 0); on layer a both tasks move it
    with updates 3 and 1, so rAU is (9/10, 1/10) at every element."""
    a, b = torch.zeros(2, 2), torch.zeros(3)
    tracker = AUTracker([("backbone.a.weight", a), ("backbone.b.weight", b)], n_tasks=2, beta=0.9)
    for _ in range(5):
        tracker.update([[torch.full((2, 2), 3.0), torch.full((2, 2), -1.0)], [torch.ones(3), None]])
    rau = tracker.rau_per_layer()
    assert rau["backbone.b"] == pytest.approx([1.0, 0.0])
    assert rau["backbone.a"] == pytest.approx([0.9, 0.1])
    au = tracker.au_per_layer()
    assert au["backbone.a"][0] == pytest.approx(9.0 * (1 - 0.9 ** 5))  # EMA of 3^2 from zero
    assert au["backbone.b"][1] == 0.0


def test_au_ignores_elements_no_task_moved_and_groups_bias_with_weight():
    w, bias = torch.zeros(2), torch.zeros(2)
    tracker = AUTracker([("backbone.l.weight", w), ("backbone.l.bias", bias)], n_tasks=2)
    tracker.update([[torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])], [None, torch.tensor([2.0, 0.0])]])
    # moved elements: w[0] (0.5, 0.5) and bias[0] (0, 1); w[1], bias[1] never moved
    assert tracker.rau_per_layer()["backbone.l"] == pytest.approx([0.25, 0.75])
    assert layer_name("backbone.layers.0.weight") == "backbone.layers.0"


def test_segmentation_and_depth_metrics():
    confusion = torch.tensor([[3, 1], [0, 4]])
    scores = segmentation_scores(confusion)
    assert scores["pix_acc"] == pytest.approx(7 / 8)
    assert scores["miou"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    acc = MetricAccumulator(MTLTaskSpec("d", "depth", 1))
    target = torch.tensor([[[[1.0, 2.0], [0.0, 4.0]]]])
    pred = torch.tensor([[[[1.5, 2.0], [9.0, 3.0]]]])
    acc.update(pred, target)
    out = acc.result()
    assert out["abs_err"] == pytest.approx((0.5 + 0 + 1.0) / 3)  # the 0-depth pixel is left out
    assert out["rel_err"] == pytest.approx((0.5 / 1 + 0 + 1.0 / 4) / 3)
    seg = MetricAccumulator(MTLTaskSpec("s", "segmentation", 2))
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]])  # predicts class 0 then 1
    seg.update(logits, torch.tensor([[[0, -1]]]))  # the second pixel has no label
    assert seg.result()["pix_acc"] == 1.0 and seg.result()["miou"] == 1.0


def test_rau_heatmap_draws_a_png(tmp_path):
    from taskset_lab.mtl.plots import rau_heatmap

    path = rau_heatmap({"backbone.a": [0.9, 0.1], "backbone.b": [0.5, 0.5]}, ["t1", "t2"], tmp_path / "h.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
