"""The conv forms timed by benchmarks/bench_conv_forms.py compute the same gradients as
``F.conv2d`` under ``vmap(grad)`` (float64, K = 3), so its timings compare like with like; one
quick run of the script reports every form it times, each against the direct conv."""

from __future__ import annotations

from types import ModuleType

import math

import pytest
import torch
from benchmark_module import load_benchmark

pytestmark = pytest.mark.benchmark


def _bench() -> ModuleType:
    return load_benchmark("bench_conv_forms")


@pytest.mark.parametrize("form", ["im2col", "im2col_first", "space_to_depth"])
def test_conv_forms_give_the_direct_gradients(form):
    bench = _bench()
    x, w1, w2 = bench.inputs(3, dtype=torch.float64)
    direct = bench.stacked_grads("conv2d", x, w1, w2)
    other = bench.stacked_grads(form, x, w1, w2)
    for a, b in zip(direct, other):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert float(direct[1].abs().sum()) > 0  # a real gradient, not zeros on both sides


def test_space_to_depth_stride2_conv_equals_the_strided_conv():
    bench = _bench()
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(2, 5, 8, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(bench.conv_space_to_depth(h, w, 2), bench.conv_direct(h, w, 2), rtol=1e-12, atol=1e-12)


def test_one_quick_run_reports_every_form_against_the_direct_conv():
    bench = _bench()
    report = bench.main(["--k", "2", "--reps", "1"])
    assert report["k"] == 2 and report["threads"] >= 1
    vmap_grad, layer = report["vmap_grad"], report["stride2_layer"]
    # every form the script defines is timed, and so is the baseline each is compared with
    assert set(vmap_grad) == {f"vmap_grad_{form}_ms" for form in bench.FORMS} | {"one_config_grads_x_k_ms"}
    assert {f"{kind}_{layout}_ms" for kind in ("forward", "input_grad", "weight_grad")
            for layout in ("contiguous", "channels_last")} | {"input_grad_space_to_depth_ms"} == set(layer)
    base = vmap_grad["vmap_grad_conv2d_ms"]
    for timings, baseline in ((vmap_grad, base), (layer, layer["input_grad_contiguous_ms"])):
        for key, ms in timings.items():
            ratio = ms / baseline  # what the README reports: finite, so both sides really ran
            assert math.isfinite(ms) and ms > 0 and math.isfinite(ratio) and ratio > 0, (key, ms, baseline)
