"""Throughput of the population engine against training one config at a time.

For each case (a small MLP on digits, a medium MLP on MNIST-shaped random data, TaskSet's conv
net with pooling on digits, TaskSet's character GRU language model on the pydoc stand-in) it
measures config-steps per second of

* ``population``: :func:`taskset_lab.engine.train_population` with K adam4p configs at
  several K (vmap over stacked parameters, batched optimizer);
* ``sequential``: one config, the plain loop (``nn.Module``, ``loss.backward()``,
  ``torch.optim.Adam.step()``), the way one would train configs one after another;
* ``lightning``: one config through a ``pytorch_lightning.Trainer`` (automatic
  optimisation, no logger, no checkpoints, no progress bar).

With ``--compiled``, ``compiled``: the same population step through ``torch.compile``
(:class:`taskset_lab.engine.compiled.CompiledStep`; compile time excluded, reported apart).
On CPU the report then also splits the best compiled step (``compiled_step_split``): the time
in GEMM and convolution kernels (profiler), the least time the optimizer update can take (the
bytes it must move at the measured in-place bandwidth), and how far ahead of one config at a
time and of JAX we would be if the step took only those two (``floor_vs_sequential``,
``floor_vs_jax``): the most any implementation that runs these kernels and a separate update
pass could reach.
With the optional ``bench`` extra (jax, optax) installed, the MLP, conv and rnn cases also run
``jax`` (``jax_peers.py``): the same model, initial parameters, batches and TF-Adam formula in
JAX, ``jit(vmap(step))`` called per step and ``lax.scan`` over all steps, interleaved with ours
in the same process (the JAX columns are left out when jax is not installed, and for the other
cases). ``--allocator`` measures the engine's ``mallopt`` settings on vs off (one child process
each, they cannot be undone in-process).

Each measurement is warmed up first, then sized to run for about ``--seconds``; ``--repeats``
interleaved rounds, best of each kept. The FLOPs of
one config-step (forward + backward, counted by ``torch.utils.flop_counter``) times the
best population rate give the achieved FLOP/s, reported against a measured matmul peak.

    python benchmarks/bench_population.py --device cpu
    python benchmarks/bench_population.py --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from typing import Any, Callable

import torch

from taskset_lab.engine import train_population
from taskset_lab.optim import ADAM4P
from taskset_lab.tasks import SPLITS, Task, TensorData, build_task, sample_task_config
from taskset_lab.tasks.families.mlp import MLPTask

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # jax_peers.py, also when loaded by path
from jax_peers import JaxPeer, jax_available, make_peer, max_param_diff  # noqa: E402

CPU_KS = (1, 16, 64, 256)
CUDA_KS = (1, 64, 256, 1024, 4096, 16384)
QUICK_KS = (1, 4)
LR = 1e-3


def _image_config(family: str, **extra: Any) -> dict[str, Any]:
    base = {"family": family, "dataset": "digits", "activation": "relu",
            "init": {"name": "he_normal", "scale": None}, "center_data": False, "data_seed": 0}
    return {**base, **extra}


def small_mlp(quick: bool) -> Task:
    """64-32-32-10 on digits (8x8 images), batch 128."""
    return build_task(_image_config("lab_mlp", hidden=[32, 32], batch_size=128))


def medium_mlp(quick: bool) -> Task:
    """784-128-128-10 on random MNIST-shaped data, batch 128."""
    gen = torch.Generator().manual_seed(0)
    n = 512 if quick else 4096
    splits = {s: (torch.rand(n, 1, 28, 28, generator=gen), torch.randint(10, (n,), generator=gen))
              for s in SPLITS}
    config = _image_config("lab_mlp", dataset="random_mnist_shape", hidden=[128, 128], batch_size=128)
    return MLPTask(config, TensorData(splits, 128, seed=0), in_features=784, num_classes=10)


def conv(quick: bool) -> Task:
    """TaskSet's conv_pooling_family model: 3x3 SAME convs 16 -> 32 (stride 1, 2), relu, mean
    pooling, a linear head; trained on scikit-learn's digits at their own 8x8 (as the
    medium MLP case, the task is built on its data directly), batch 64."""
    from taskset_lab.data import load_dataset
    from taskset_lab.tasks.families.taskset_conv import TasksetConvTask

    overrides = {"hidden_units": [16, 32], "strides": [[1, 1], [2, 2]], "padding": ["SAME", "SAME"],
                 "activation": "relu", "w_init": ["he_normal", None], "pool_type": "mean", "use_bias": True,
                 "center_data": False, "dataset": ["mnist", {"bs": 64, "num_train": None, "just_train": False}, None]}
    config = sample_task_config("conv_pooling_family", 0, overrides)
    splits = load_dataset("digits")
    return TasksetConvTask(config, TensorData(splits, 64, seed=0), tuple(splits["train"][0].shape[1:]), 10)


def rnn(quick: bool) -> Task:
    """TaskSet's char_rnn_language_model_family: GRU (embed 32, hidden 64, 256 bytes) on the
    pydoc stand-in, 32 bytes (8 with --quick), batch 32."""
    glorot = ["glorot_uniform", None]
    overrides = {"embed_dim": 32, "trainable_init": False, "w_init": glorot,
                 "core": ["gru", {"core_dim": 64, **{k: glorot for k in ("wh", "wz", "wr", "uh", "uz", "ur")}}],
                 "dataset": ["lm1b/bytes", {"patch_length": 8 if quick else 32, "batch_size": 32,
                                            "just_train": False, "num_train": None}]}
    return build_task(sample_task_config("char_rnn_language_model_family", 0, overrides), offline_data="substitute")


def taskset_case(name: str) -> Callable[[bool], Task]:
    """One of TaskSet's tasks by name, on its offline stand-in (same shapes as the real data)."""

    def build(quick: bool) -> Task:
        from taskset_lab.tasks.registry import get_task

        return get_task(name, offline_data="substitute")

    build.__doc__ = f"TaskSet's {name} (offline stand-in)"
    return build


CASES: dict[str, Callable[[bool], Task]] = {
    "small_mlp": small_mlp, "medium_mlp": medium_mlp, "conv": conv, "rnn": rnn,
    # one case per kind of TaskSet family that landed in 0.2 (the quickstart's seeds: cheap ones)
    "mlp_ae": taskset_case("mlp_ae_family_seed25"), "mlp_vae": taskset_case("mlp_vae_family_seed35"),
    "conv_fc": taskset_case("conv_fc_family_seed14"), "nvp": taskset_case("nvp_family_seed5"),
    "maf": taskset_case("maf_family_seed16"), "word_rnn_lm": taskset_case("word_rnn_language_model_family_seed11"),
    "rnn_text_classification": taskset_case("rnn_text_classification_family_seed16"),
    "losg": taskset_case("losg_tasks_family_seed15"),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _sized_steps(per_step_s: float, seconds: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, seconds / max(per_step_s, 1e-9))))


def _configs(k: int) -> list[dict[str, float]]:
    return [dict(lr=LR * (1 + i / max(k, 1)), beta1=0.9, beta2=0.999, eps=1e-8) for i in range(k)]


def population_rate(task: Task, k: int, device: str, seconds: float, quick: bool) -> float:
    """Config-steps/s of the population engine with ``k`` adam4p configs (eager step)."""
    configs = _configs(k)

    def run(steps: int) -> float:
        result = train_population(task, ADAM4P, configs, steps, steps, eval_batches=1, device=device,
                                  max_chunk=k, compile=False)
        return result.seconds

    run(2)  # warm-up (allocations, kernels, data blocks)
    probe = 3 if quick else 5
    per_step = run(probe) / probe
    steps = probe if quick else _sized_steps(per_step, seconds, 5, 5000)
    return k * steps / run(steps)


class CompiledRunner:
    """One population of ``k`` configs stepped by the compiled step; built (and compiled) once."""

    def __init__(self, task: Task, k: int, device: str, steps: int = 100000):
        from taskset_lab.engine.compiled import CompiledStep
        from taskset_lab.engine.population import Population

        self.pop = Population(task, ADAM4P, _configs(k), steps, eval_batches=1, device=device)
        self.k = k
        self.stepper = CompiledStep(self.pop)
        start = time.perf_counter()
        self.state0 = self.pop.evaluate(self.pop.init())[1]
        self.stepper.step(self.state0)
        self.compile_seconds = time.perf_counter() - start

    def rate(self, device: str, seconds: float, quick: bool) -> float:
        def run(steps: int) -> float:
            state = self.state0
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                state = self.stepper.step(state)
            float(state.diverged_step.sum())
            return time.perf_counter() - start

        run(2)
        probe = 3 if quick else 5
        per_step = run(probe) / probe
        steps = probe if quick else _sized_steps(per_step, seconds, 5, 5000)
        return self.k * steps / run(steps)


def sequential_rate(task: Task, device: str, seconds: float, quick: bool) -> float:
    """Config-steps/s of one config trained the plain way."""
    task = task.to(device, torch.float32)
    model = task.init_module(0).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def run(steps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for s in range(steps):
            loss = task.forward_loss(model, task.data.batch("train", s))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        return time.perf_counter() - start

    run(3)
    probe = 3 if quick else 10
    per_step = run(probe) / probe
    steps = probe if quick else _sized_steps(per_step, seconds, 10, 20000)
    return steps / run(steps)


def lightning_rate(task: Task, device: str, seconds: float, quick: bool) -> float:
    """Config-steps/s of one config trained by a Lightning Trainer (fit time, setup included)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)

    class Module(pl.LightningModule):
        def __init__(self, steps: int):
            super().__init__()
            self.task = task.to(device, torch.float32)
            self.model = task.init_module(0)
            self.steps = steps

        def train_dataloader(self) -> DataLoader:
            return DataLoader(range(self.steps), batch_size=None)

        def training_step(self, _batch: Any, _idx: int) -> torch.Tensor:
            return self.task.forward_loss(self.model, self.task.data.batch("train", self.global_step))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.model.parameters(), lr=LR)

    def run(steps: int) -> float:
        trainer = pl.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
                             max_steps=steps, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        module = Module(steps)
        _sync(device)
        start = time.perf_counter()
        trainer.fit(module)
        _sync(device)
        return time.perf_counter() - start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(3)
        probe = 3 if quick else 20
        per_step = run(probe) / probe
        steps = probe if quick else _sized_steps(per_step, seconds, 20, 20000)
        return steps / run(steps)


def flops_per_config_step(task: Task, device: str) -> float:
    """Forward + backward FLOPs of one config on one training batch."""
    from torch.utils.flop_counter import FlopCounterMode

    task = task.to(device, torch.float32)
    model = task.init_module(0).to(device)
    with FlopCounterMode(display=False) as counter:
        task.forward_loss(model, task.data.batch("train", 0)).backward()
    return float(counter.get_total_flops())


def _seconds_per_call(fn: Callable[[], Any], device: str, warmup: int, reps: int) -> float:
    """Mean seconds of ``fn()`` over ``reps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / reps


def matmul_peak(device: str, quick: bool) -> float:
    """Measured FLOP/s of a large float32 matmul (the default precision settings)."""
    n = 512 if quick else (8192 if device.startswith("cuda") else 2048)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2.0 * n ** 3 / _seconds_per_call(lambda: a @ b, device, 2, 2 if quick else 10)


def inplace_bandwidth(device: str, quick: bool) -> float:
    """Measured bytes/s of an in-place pass over a large float32 tensor (``x.mul_(1)``: each
    line read once and written back, the way the in-place update touches θ and the moments)."""
    x = torch.rand(1 << (20 if quick else 26), device=device)  # 256 MiB: far larger than any cache
    return 2.0 * x.numel() * x.element_size() / _seconds_per_call(lambda: x.mul_(1.0), device, 1, 2 if quick else 5)


def _is_matmul_op(name: str) -> bool:
    """ATen's GEMM and convolution ops (their kernels run in MKL / oneDNN, not in our code)."""
    return name in ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm") or "conv" in name


def step_split(runner: "CompiledRunner", steps: int, quick: bool = False) -> dict[str, float]:
    """Where one compiled step's time goes (CPU), all measured in one window (the VM's speed
    drifts from minute to minute): ``step_ms``, the wall time of ``steps`` profiled steps;
    ``matmul_ms``, the profiler's self time of the GEMM and convolution ops per step (self
    time, so nested ops count once); ``update_floor_ms``, the least the optimizer update can
    take: the bytes it must move (read θ, g and each moment, write θ and each moment back) at
    the in-place bandwidth measured just before. ``floor_ms`` is their sum, the step if
    everything else took no time; ``step_ms / floor_ms`` bounds what any implementation that
    runs these kernels and a separate update pass could gain."""
    from torch.profiler import ProfilerActivity, profile

    bandwidth = inplace_bandwidth("cpu", quick)
    state = runner.state0
    for _ in range(2):
        state = runner.stepper.step(state)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            state = runner.stepper.step(state)
        float(state.diverged_step.sum())
        wall = time.perf_counter() - start
    matmul_us = sum(e.self_cpu_time_total for e in prof.key_averages() if _is_matmul_op(e.key))
    param_bytes = sum(p.numel() * p.element_size() for p in state.params.values())  # all K configs
    moved = param_bytes * (3 + 2 * len(runner.pop.family.state_names))
    step_ms, matmul_ms, update_ms = wall / steps * 1e3, matmul_us / 1e3 / steps, moved / bandwidth * 1e3
    return {"k": runner.k, "step_ms": step_ms, "matmul_ms": matmul_ms, "update_floor_ms": update_ms,
            "other_ms": step_ms - matmul_ms, "floor_ms": matmul_ms + update_ms,
            "inplace_bandwidth_bytes_per_s": bandwidth}


# cases with a JAX peer and the steps it pre-stages (the longest per-step run, the scan's length)
JAX_MAX_STEPS = {"small_mlp": 300, "medium_mlp": 20, "conv": 50, "rnn": 30}


def _best(d: dict[str, float], key: str, value: float) -> None:
    d[key] = max(d.get(key, 0.0), value)


def run_case(name: str, device: str, ks: tuple[int, ...], seconds: float, quick: bool,
             peak: float, log: Callable[[str], None], repeats: int = 1, compiled: bool = False,
             use_jax: bool = False) -> dict[str, Any]:
    task = CASES[name](quick)
    by_k: dict[str, float] = {}
    comp_by_k: dict[str, float] = {}
    compile_s: dict[str, float] = {}
    jax_step: dict[str, float] = {}
    jax_scan: dict[str, float] = {}
    jax_diff: dict[str, float] = {}
    use_jax = use_jax and name in JAX_MAX_STEPS and device == "cpu"
    runners: dict[int, CompiledRunner] = {}
    peers: dict[int, JaxPeer] = {}
    scan_steps: dict[int, int] = {}
    seq = 0.0
    for rnd in range(repeats):
        for k in ks:
            try:
                _best(by_k, str(k), population_rate(task, k, device, seconds, quick))
            except torch.cuda.OutOfMemoryError:
                log(f"  {name}: K={k} out of memory, stopping here")
                torch.cuda.empty_cache()
                break
            line = f"  {name}: round {rnd} K={k:>5}: population {by_k[str(k)]:10.0f}"
            if compiled:
                if k not in runners:
                    runners[k] = CompiledRunner(task, k, device)
                    compile_s[str(k)] = runners[k].compile_seconds
                    if not runners[k].stepper.compiled:
                        log(f"  {name}: torch.compile unavailable here; compiled column is the eager step")
                _best(comp_by_k, str(k), runners[k].rate(device, seconds, quick))
                line += f"  compiled {comp_by_k[str(k)]:10.0f}"
            if use_jax:
                if k not in peers:
                    peers[k] = make_peer(task, _configs(k), 5 if quick else JAX_MAX_STEPS[name])
                    peers[k].run_per_step(2)  # compile
                    jax_diff[str(k)] = max_param_diff(task, peers[k], 3)
                peer = peers[k]
                per = peer.run_per_step(3)[0] / 3
                n = min(len(peer.xs), 3 if quick else _sized_steps(per, seconds, 5, 100000))
                _best(jax_step, str(k), k * n / peer.run_per_step(n)[0])
                n_scan = scan_steps.setdefault(k, n)  # one length per K: one compile
                _best(jax_scan, str(k), k * n_scan / peer.run_scan(n_scan)[0])
                line += f"  jax per-step {jax_step[str(k)]:10.0f}  jax scan {jax_scan[str(k)]:10.0f}"
            log(line + " cfg-steps/s")
        # the baseline takes its turn in every round too: best of the rounds on each side
        seq = max(seq, sequential_rate(task, device, seconds, quick))
    log(f"  {name}: sequential (torch.optim): {seq:12.0f} cfg-steps/s (best of {repeats} rounds)")
    light = lightning_rate(task, device, seconds, quick)
    log(f"  {name}: lightning Trainer:        {light:12.0f} cfg-steps/s")
    best_k = max(by_k, key=by_k.get)
    best = by_k[best_k]
    flops = flops_per_config_step(task, device)
    ours = max([best, *comp_by_k.values()])
    out: dict[str, Any] = {
        "task": task.config,
        "population_cfg_steps_per_s": best,
        "population_best_k": int(best_k),
        "population_by_k": by_k,
        "sequential_cfg_steps_per_s": seq,
        "lightning_cfg_steps_per_s": light,
        "speedup_vs_sequential": best / seq,
        "speedup_vs_lightning": best / light,
        "flops_per_cfg_step": flops,
        "population_flops_per_s": flops * best,
        "fraction_of_matmul_peak": flops * ours / peak,
    }
    if compiled:
        cbest = max(comp_by_k, key=comp_by_k.get)
        out.update({"compiled_cfg_steps_per_s": comp_by_k[cbest], "compiled_best_k": int(cbest),
                    "compiled_by_k": comp_by_k, "compile_seconds_by_k": compile_s,
                    "compiled_speedup_vs_eager": comp_by_k[cbest] / best,
                    "compiled_speedup_vs_sequential": comp_by_k[cbest] / seq})
        if device == "cpu" and runners[int(cbest)].stepper.compiled:
            out["compiled_step_split"] = split = step_split(runners[int(cbest)], 2 if quick else 10, quick)
            log(f"  {name}: compiled step at K={cbest} (profiled): {split['step_ms']:.2f} ms, of which "
                f"matmul/conv {split['matmul_ms']:.2f} ms; the update's data alone takes "
                f"{split['update_floor_ms']:.2f} ms at {split['inplace_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s")
            split["floor_vs_sequential"] = out["compiled_speedup_vs_sequential"] * split["step_ms"] / split["floor_ms"]
            log(f"  {name}: with nothing but the matmuls and the update's data, compiled / sequential would be "
                f"at most {split['floor_vs_sequential']:.1f}x")
    if jax_step:
        jbest = max(max(jax_step.values()), max(jax_scan.values()))
        out.update({"jax_cfg_steps_per_s": jbest, "jax_per_step_by_k": jax_step, "jax_scan_by_k": jax_scan,
                    "jax_max_param_diff_by_k": jax_diff, "speedup_vs_jax": ours / jbest,
                    "speedup_vs_jax_scan": ours / max(jax_scan.values())})
        if "compiled_step_split" in out:
            split = out["compiled_step_split"]
            # ours / JAX from the rounds, times the most the step itself could still shrink
            split["floor_vs_jax"] = out["speedup_vs_jax"] * split["step_ms"] / split["floor_ms"]
            log(f"  {name}: with nothing but the matmuls and the update's data, ours / JAX would be at most "
                f"{split['floor_vs_jax']:.2f}x")
    return out


def allocator_ratio(case: str, k: int, seconds: float, threads: int | None) -> dict[str, float]:
    """Population rate with the engine's mallopt settings on vs off (a child process each)."""
    rates = {}
    for flag in ("1", "0"):
        env = dict(os.environ, TASKLAB_MALLOPT=flag)
        cmd = [sys.executable, os.path.abspath(__file__), "--json", "--cases", case, "--ks", str(k),
               "--seconds", str(seconds), "--no-jax"] + (["--threads", str(threads)] if threads else [])
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rates[flag] = json.loads(out)["cases"][case]["population_cfg_steps_per_s"]
    return {"k": k, "on": rates["1"], "off": rates["0"], "ratio": rates["1"] / rates["0"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from taskset_lab.engine import apply_allocator_settings

    apply_allocator_settings()  # as the CLI does (TASKLAB_MALLOPT=0: off, see --allocator)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--ks", nargs="+", type=int, default=None, help="population sizes to try")
    parser.add_argument("--seconds", type=float, default=None, help="target time per measurement")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is steadier on a busy machine)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds (best of each kept)")
    parser.add_argument("--compiled", action="store_true", help="also time the torch.compile'd step")
    parser.add_argument("--no-jax", action="store_true", help="leave out the JAX peer")
    parser.add_argument("--allocator", type=int, default=None, metavar="K",
                        help="also measure the mallopt settings on vs off at this K (child processes)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        if args.threads == 1:  # XLA's CPU backend reads this when jax is first imported
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                       + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    use_jax = not args.no_jax and jax_available()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    ks = tuple(args.ks) if args.ks else QUICK_KS if args.quick else CUDA_KS if args.device == "cuda" else CPU_KS
    seconds = args.seconds or (0.05 if args.quick else 1.5)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    log(f"device {device_name}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = matmul_peak(args.device, args.quick)
    log(f"matmul peak (float32): {peak / 1e9:.1f} GFLOP/s")
    report: dict[str, Any] = {"device": args.device, "device_name": device_name,
                              "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "matmul_peak_flops": peak, "quick": args.quick, "cases": {}}
    for name in args.cases:
        case = run_case(name, args.device, ks, seconds, args.quick, peak, log, repeats=max(1, args.repeats),
                        compiled=args.compiled, use_jax=use_jax)
        report["cases"][name] = case
        if "speedup_vs_jax" in case:
            log(f"  {name}: ours / JAX = {case['speedup_vs_jax']:.2f}x (JAX best {case['jax_cfg_steps_per_s']:.0f})")
        log(f"  {name}: eager population / sequential = {case['speedup_vs_sequential']:.1f}x, "
            f"/ lightning = {case['speedup_vs_lightning']:.1f}x, {case['population_flops_per_s'] / 1e9:.2f} GFLOP/s")
        if "compiled_speedup_vs_sequential" in case:
            log(f"  {name}: compiled / sequential = {case['compiled_speedup_vs_sequential']:.1f}x")
        log(f"  {name}: best of ours at {100 * case['fraction_of_matmul_peak']:.1f}% of the matmul peak")
    report["jax"] = use_jax
    if args.allocator:
        for name in args.cases:
            report["cases"][name]["allocator"] = alloc = allocator_ratio(name, args.allocator, seconds, args.threads)
            log(f"  {name}: mallopt on / off at K={args.allocator}: {alloc['ratio']:.2f}x")
    if args.json:
        print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
