"""Why the conv case of ``bench_population.py`` stacks poorly on CPU (issue 14).

Under ``vmap`` a convolution whose weights differ per config becomes one grouped
convolution (``groups = K``). This times the bench's two convolutions (3x3, 1 -> 16 stride 1,
16 -> 32 stride 2, on 8x8 inputs, batch 64) in the forms tried:

* ``vmap_grad``: ``vmap(grad)`` over the K configs with ``F.conv2d`` (what the engine does),
  with an im2col form (``unfold`` + matmul) of both layers or of the first only, with a
  space-to-depth form of the stride-2 layer (a stride-1 2x2 convolution over the 2x2-blocked
  input), and K one-config gradients; ``--compiled`` adds each form under ``torch.compile``;
* ``layer``: the stride-2 layer's ``convolution_backward`` alone, grouped, split into input
  and weight gradient, contiguous and channels-last (Inductor's layout), and its input
  gradient in the space-to-depth form.

Run: ``python benchmarks/bench_conv_forms.py --threads 1 [--k 16] [--compiled] [--json]``. Numbers and
what they mean are in benchmarks/README.md (issue-14 section, conv).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vmap

BATCH, SIZE = 64, 8
C1, C2 = 16, 32


def conv_direct(h: Tensor, w: Tensor, stride: int) -> Tensor:
    return F.conv2d(h, w, stride=stride, padding=1)


def conv_im2col(h: Tensor, w: Tensor, stride: int) -> Tensor:
    """3x3 conv, padding 1, as ``unfold`` + matmul."""
    b, _, hh, _ = h.shape
    cols = F.unfold(h, 3, padding=1, stride=stride)  # [B, C*9, L]
    out = w.reshape(w.shape[0], -1) @ cols  # [B, O, L]
    side = (hh + 2 - 3) // stride + 1
    return out.reshape(b, w.shape[0], side, -1)


def space_to_depth_weight(w: Tensor) -> Tensor:
    """[O, I, 3, 3] -> [O, 4I, 2, 2]: the 3x3 kernel, zero-padded to 4x4, in 2x2 blocks."""
    o, i = w.shape[:2]
    return F.pad(w, (0, 1, 0, 1)).reshape(o, i, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(o, i * 4, 2, 2)


def space_to_depth_input(h: Tensor) -> Tensor:
    """[B, C, H, W] padded by 1 -> [B, 4C, (H+2)/2, (W+2)/2] in 2x2 blocks (H, W even)."""
    b, c, hh, ww = h.shape
    hp = F.pad(h, (1, 1, 1, 1))
    return hp.reshape(b, c, (hh + 2) // 2, 2, (ww + 2) // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(
        b, c * 4, (hh + 2) // 2, (ww + 2) // 2)


def conv_space_to_depth(h: Tensor, w: Tensor, stride: int) -> Tensor:
    """The stride-2 3x3 conv (padding 1) as a stride-1 2x2 conv over 2x2 blocks."""
    if stride == 1:
        return conv_direct(h, w, 1)
    return F.conv2d(space_to_depth_input(h), space_to_depth_weight(w))


def conv_im2col_first(h: Tensor, w: Tensor, stride: int) -> Tensor:
    """im2col for the stride-1 layer (1 input channel, the input all configs share), the
    direct conv for the stride-2 one."""
    return conv_im2col(h, w, stride) if stride == 1 else conv_direct(h, w, stride)


FORMS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "conv2d": conv_direct, "im2col": conv_im2col, "im2col_first": conv_im2col_first,
    "space_to_depth": conv_space_to_depth}


def _loss(conv: Callable, x: Tensor) -> Callable:
    def f(w1: Tensor, w2: Tensor) -> Tensor:
        h = torch.relu(conv(x, w1, 1))
        h = torch.relu(conv(h, w2, 2))
        return h.mean((2, 3)).square().sum()
    return f


def inputs(k: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 1, SIZE, SIZE, generator=gen, dtype=dtype)
    w1 = torch.randn(k, C1, 1, 3, 3, generator=gen, dtype=dtype) * 0.3
    w2 = torch.randn(k, C2, C1, 3, 3, generator=gen, dtype=dtype) * 0.1
    return x, w1, w2


def stacked_grads(form: str, x: Tensor, w1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    """Per-config gradients of both layers' weights, ``vmap(grad)`` over the configs."""
    return vmap(grad(_loss(FORMS[form], x), argnums=(0, 1)))(w1, w2)


def _time_ms(fn: Callable[[], Any], reps: int, rounds: int = 3) -> float:
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return 1e3 * best


def time_vmap_grad(k: int, reps: int, compiled: bool = False) -> dict[str, float]:
    """Each form's ``vmap(grad)`` (and, with ``compiled``, the same under ``torch.compile``,
    timed after its compiling call), and K one-config gradients."""
    x, w1, w2 = inputs(k)
    out = {f"vmap_grad_{form}_ms": _time_ms(lambda form=form: stacked_grads(form, x, w1, w2), reps) for form in FORMS}
    if compiled:
        for form in FORMS:
            fn = torch.compile(lambda x, w1, w2, form=form: stacked_grads(form, x, w1, w2), dynamic=False)
            out[f"compiled_vmap_grad_{form}_ms"] = _time_ms(lambda fn=fn: fn(x, w1, w2), reps)
    one = grad(_loss(conv_direct, x), argnums=(0, 1))
    out["one_config_grads_x_k_ms"] = k * _time_ms(lambda: one(w1[0], w2[0]), 2 * reps)
    return out


def time_stride2_layer(k: int, reps: int) -> dict[str, float]:
    """The stride-2 layer's backward on its own, as vmap issues it (``groups = K``)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, k * C1, SIZE, SIZE, generator=gen)
    w = torch.randn(k * C2, C1, 3, 3, generator=gen)
    gy = torch.randn(BATCH, k * C2, SIZE // 2, SIZE // 2, generator=gen)
    back = torch.ops.aten.convolution_backward

    def backward(g: Tensor, inp: Tensor, wt: Tensor, mask: list[bool], stride: int = 2, pad: int = 1) -> Any:
        return back(g, inp, wt, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], k, mask)

    out: dict[str, float] = {}
    for layout in ("contiguous", "channels_last"):
        fmt = torch.contiguous_format if layout == "contiguous" else torch.channels_last
        xl, wl, gl = (t.contiguous(memory_format=fmt) for t in (x, w, gy))
        out[f"forward_{layout}_ms"] = _time_ms(lambda: F.conv2d(xl, wl, stride=2, padding=1, groups=k), reps)
        out[f"input_grad_{layout}_ms"] = _time_ms(lambda: backward(gl, xl, wl, [True, False, False]), reps)
        out[f"weight_grad_{layout}_ms"] = _time_ms(lambda: backward(gl, xl, wl, [False, True, False]), reps)
    xs = space_to_depth_input(x)
    wsd = space_to_depth_weight(w)  # per output channel: the K groups stay in order
    out["input_grad_space_to_depth_ms"] = _time_ms(lambda: backward(gy, xs, wsd, [True, False, False], 1, 0), reps)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=16, help="configs per vmapped step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1: steadier on a shared box)")
    parser.add_argument("--reps", type=int, default=20, help="calls per timed round (best of 3 rounds)")
    parser.add_argument("--compiled", action="store_true", help="also time each vmap(grad) form under torch.compile")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"k": args.k, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "vmap_grad": time_vmap_grad(args.k, args.reps, args.compiled), "stride2_layer": time_stride2_layer(args.k, args.reps)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for group in ("vmap_grad", "stride2_layer"):
            for key, value in report[group].items():
                print(f"{group:14s} {key:34s} {value:8.2f}")
    return report


if __name__ == "__main__":
    main()
