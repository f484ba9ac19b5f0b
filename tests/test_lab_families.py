"""The project's own `lab_*` families (0.1, TaskSet-like, on embedded data): samplers (deterministic,
in range, JSON-safe, independent of the global RNGs), builders, names, and the vmap contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from taskset_lab.errors import ConfigError
from taskset_lab.tasks import build_task, task_family_names, get_task_family, sample_task_config, task_name
from taskset_lab.tasks.registry import released_samplers
from taskset_lab.tasks.families import conv_pooling, quadratic, two_d
from taskset_lab.tasks.nn import (
    ACTIVATIONS,
    INITIALIZER_SCALES,
    INITIALIZER_WEIGHTS,
    RecurrentCore,
    image_input,
    init_weight_,
)

#: the project's own (0.1) families, from the registry
FAMILIES = [f for f in task_family_names() if f.startswith("lab_")]

# Small overrides so building and running stay well under a second.
SMALL = {
    "lab_quadratic": {"dim": 6},
    "lab_mlp": {"hidden": [16, 12], "batch_size": 8},
    "lab_conv_pooling": {"channels": [8, 6], "strides": [1, 2], "padding": "same", "batch_size": 8},
    "lab_char_rnn_language_model": {"seq_len": 10, "hidden": 12, "embed_dim": 8, "batch_size": 4},
    "lab_two_d": {},
}

# Variants that must each pass the vmap check (different code paths inside a family).
VARIANTS = [
    ("lab_quadratic", {"output": "identity", "noise_scale": 0.0}),
    ("lab_quadratic", {"output": "log", "noise_scale": 0.5, "rotate": False}),
    ("lab_mlp", {"activation": "tanh", "center_data": True}),
    ("lab_mlp", {"activation": "leaky_relu"}),
    ("lab_conv_pooling", {"pooling": "max", "padding": "valid"}),
    ("lab_conv_pooling", {"pooling": "mean", "activation": "elu"}),
    ("lab_char_rnn_language_model", {"core": "rnn"}),
    ("lab_char_rnn_language_model", {"core": "gru"}),
    ("lab_char_rnn_language_model", {"core": "lstm"}),
    ("lab_two_d", {"function": "ackley", "noise_scale": 0.1}),
    ("lab_two_d", {"function": "beale"}),
]


def small_config(family: str, seed: int = 0, **extra) -> dict:
    return sample_task_config(family, seed, {**SMALL[family], **extra})


TASKSET_FAMILIES = ["char_rnn_language_model_family", "conv_fc_family", "conv_pooling_family",
                    "losg_tasks_family", "maf_family", "mlp_ae_family", "mlp_family", "mlp_vae_family",
                    "nvp_family", "quadratic_family", "rnn_text_classification_family",
                    "word_rnn_language_model_family"]


def test_taskset_and_lab_families_are_registered():
    """TaskSet's twelve families are registered, each with TaskSet's released sampler, and the
    five ``lab_*`` families with a small config each (the registry may hold other families)."""
    assert set(TASKSET_FAMILIES) <= set(released_samplers()) <= set(task_family_names())
    assert sorted(FAMILIES) == sorted(SMALL) == ["lab_char_rnn_language_model", "lab_conv_pooling", "lab_mlp",
                                                 "lab_quadratic", "lab_two_d"]


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_deterministic_json_and_varied(family):
    configs = [get_task_family(family).sample(seed) for seed in range(100)]
    again = [get_task_family(family).sample(seed) for seed in range(100)]
    assert configs == again
    for c in configs:
        assert c["family"] == family
        assert json.loads(json.dumps(c)) == c  # plain JSON types only
        assert isinstance(c["data_seed"], int)
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 100
    # the sampler must not touch (or depend on) the global RNGs
    np.random.seed(1)
    torch.manual_seed(1)
    state = (np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    assert get_task_family(family).sample(7) == configs[7]
    assert np.array_equal(np.random.get_state()[1], state[0]) and torch.equal(torch.get_rng_state(), state[1])


def _check_init(spec):
    assert spec["name"] in INITIALIZER_WEIGHTS
    if spec["name"] in INITIALIZER_SCALES:
        low, high = INITIALIZER_SCALES[spec["name"]]
        assert low <= spec["scale"] <= high
    else:
        assert spec["scale"] is None


def test_sampler_ranges_over_many_seeds():
    seen: dict[str, set] = {k: set() for k in ("spectrum", "output", "activation", "core", "function",
                                               "padding", "pooling", "init", "noise")}
    for seed in range(2000):
        q = get_task_family("lab_quadratic").sample(seed)
        assert 2 <= q["dim"] <= 3000 and 1e-5 <= q["loss_scale"] <= 1e3
        assert q["noise_scale"] == 0.0 or 0.01 <= q["noise_scale"] <= 1.0
        seen["spectrum"].add(q["spectrum"]["kind"])
        seen["output"].add(q["output"])
        seen["noise"].add(q["noise_scale"] > 0)

        m = get_task_family("lab_mlp").sample(seed)
        assert 1 <= len(m["hidden"]) <= 6 and all(16 <= h <= 128 for h in m["hidden"])
        assert m["dataset"] == "digits" and m["batch_size"] in (32, 64, 128, 256)
        assert m["activation"] in ACTIVATIONS
        _check_init(m["init"])
        seen["activation"].add(m["activation"])
        seen["init"].add(m["init"]["name"])

        c = get_task_family("lab_conv_pooling").sample(seed)
        assert 1 <= len(c["channels"]) <= 5 and len(c["strides"]) == len(c["channels"])
        assert all(8 <= ch <= 64 for ch in c["channels"]) and set(c["strides"]) <= {1, 2}
        assert min(conv_pooling.spatial_sizes(8, c["strides"], c["padding"])) >= 1
        _check_init(c["init"])
        seen["padding"].add(c["padding"])
        seen["pooling"].add(c["pooling"])

        r = get_task_family("lab_char_rnn_language_model").sample(seed)
        assert 32 <= r["hidden"] <= 128 and 8 <= r["embed_dim"] <= 128 and 10 <= r["seq_len"] <= 160
        assert r["dataset"] == "pydoc"
        seen["core"].add(r["core"])

        t = get_task_family("lab_two_d").sample(seed)
        (xl, xh), (yl, yh) = two_d.FUNCTIONS[t["function"]][1]
        assert xl <= t["init_center"][0] <= xh and yl <= t["init_center"][1] <= yh and t["init_radius"] > 0
        seen["function"].add(t["function"])
    assert seen["spectrum"] == set(quadratic.SPECTRA) and seen["output"] == {"identity", "log"}
    assert seen["activation"] == set(ACTIVATIONS) and seen["init"] == set(INITIALIZER_WEIGHTS)
    assert seen["core"] == {"rnn", "gru", "lstm"} and seen["function"] == set(two_d.FUNCTIONS)
    assert seen["padding"] == {"same", "valid"} and seen["pooling"] == {"mean", "max"}
    assert seen["noise"] == {True, False}


def test_activation_weighting_favours_relu_and_tanh():
    counts: dict[str, int] = {}
    for seed in range(2000):
        act = get_task_family("lab_mlp").sample(seed)["activation"]
        counts[act] = counts.get(act, 0) + 1
    assert counts["relu"] > counts["tanh"] > max(v for k, v in counts.items() if k not in ("relu", "tanh"))


def test_stable_names():
    # Curve stores key unnamed task configs by this hash: a change here orphans stored curves.
    # (0.2 renamed the project's own families to lab_*, which moved these on purpose; sampled
    # tasks are named <family>_seed<N>.)
    names = {f: task_name(sample_task_config(f, 0)) for f in FAMILIES}
    assert names == {
        "lab_char_rnn_language_model": "lab_char_rnn_language_model_7ee78555",
        "lab_conv_pooling": "lab_conv_pooling_80d65b37",
        "lab_mlp": "lab_mlp_f59099d6",
        "lab_quadratic": "lab_quadratic_32d725cd",
        "lab_two_d": "lab_two_d_e1f9c87e",
    }
    c = sample_task_config("lab_mlp", 0)
    assert task_name(dict(reversed(list(c.items())))) == names["lab_mlp"]


def test_image_sampler_dataset_pool():
    sample = get_task_family("lab_mlp").sample
    pooled = {sample(seed, datasets=("digits", "mnist"))["dataset"] for seed in range(50)}
    assert pooled == {"digits", "mnist"}
    assert {conv_pooling.sample(s, datasets=("cifar10",))["dataset"] for s in range(5)} == {"cifar10"}
    with pytest.raises(ValueError, match="imagenet"):
        sample(0, datasets=("imagenet",))


def test_conv_sampler_keeps_stride_and_padding_within_small_images():
    deep = [conv_pooling.sample(s) for s in range(2000)]
    # valid padding on 8x8 fits at most 3 layers; the guard must have cut some stacks
    assert max(len(c["channels"]) for c in deep if c["padding"] == "valid") == 3
    assert max(len(c["channels"]) for c in deep if c["padding"] == "same") == 5
    on_cifar = [conv_pooling.sample(s, datasets=("cifar10",)) for s in range(300)]
    assert all(min(conv_pooling.spatial_sizes(32, c["strides"], c["padding"])) >= 1 for c in on_cifar)


@pytest.mark.parametrize("family", FAMILIES)
def test_build_forward_backward(family):
    task = build_task(small_config(family))
    assert task.family == family and task.name == task_name(task.config)
    module = task.init_module(0)
    loss = task.forward_loss(module, task.data.batch("train", 0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in module.parameters())
    for split in ("valid_inner", "valid_outer", "test"):
        assert torch.isfinite(task.forward_loss(module, task.data.batch(split, 3)))


@pytest.mark.parametrize("family", FAMILIES)
def test_init_and_batches_are_seeded(family):
    task = build_task(small_config(family))
    a, b, c = task.init_module(5), task.init_module(5), task.init_module(6)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    same = build_task(small_config(family))
    assert all(torch.equal(x, y) for x, y in zip(task.data.batch("train", 3), same.data.batch("train", 3)))
    if family in ("lab_quadratic", "lab_two_d"):  # noise batches: only random when noise is on
        task = build_task(small_config(family, noise_scale=0.3))
    other = build_task({**task.config, "data_seed": task.config["data_seed"] + 1})
    assert not all(torch.equal(x, y) for x, y in zip(task.data.batch("train", 3), other.data.batch("train", 3)))


@pytest.mark.parametrize("family,extra", VARIANTS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(VARIANTS)])
def test_vmap_over_stacked_params_matches_each_copy(family, extra):
    """The engine's contract: vmap(functional_call) over [K]-stacked params, batch shared."""
    task = build_task(small_config(family, **extra)).to("cpu", torch.float64)
    modules = [task.init_module(seed).double() for seed in range(3)]
    batch = task.data.batch("train", 1)
    params, buffers = stack_module_state(modules)
    base = modules[0]

    def loss_fn(p, b):
        return task.forward_loss(lambda *args: functional_call(base, (p, b), args), batch)

    losses = vmap(loss_fn)(params, buffers)
    grads = vmap(grad(loss_fn))(params, buffers)
    assert losses.shape == (3,) and losses.dtype == torch.float64
    for k, module in enumerate(modules):
        module.zero_grad()
        loss = task.forward_loss(module, batch)
        loss.backward()
        torch.testing.assert_close(losses[k], loss.detach(), rtol=1e-10, atol=1e-12)
        for name, p in module.named_parameters():
            torch.testing.assert_close(grads[name][k], p.grad, rtol=1e-8, atol=1e-10)
    assert not torch.allclose(losses[0], losses[1])  # copies really differ


def test_quadratic_matches_dense_form_and_log_output_is_finite():
    task = build_task(small_config("lab_quadratic", output="identity", noise_scale=0.0))
    x = task.init_module(0).double()
    eig, basis = task.fixed_tensors(x.x)
    a = basis @ torch.diag(eig) @ basis.T
    torch.testing.assert_close(basis.T @ basis, torch.eye(6, dtype=torch.float64))
    expected = task.config["loss_scale"] * 0.5 * x.x @ a @ x.x
    batch = tuple(t.double() for t in task.data.batch("train", 0))
    torch.testing.assert_close(task.forward_loss(x, batch), expected)

    log_task = build_task(small_config("lab_quadratic", output="log"))
    zero = quadratic.QuadraticPoint(6, {"kind": "normal", "mean": 0.0, "std": 0.0})
    loss = log_task.forward_loss(zero, log_task.data.batch("train", 0))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zero.x.grad).all()


def test_quadratic_noise_perturbs_gradient_by_noise():
    task = build_task(small_config("lab_quadratic", noise_scale=0.5, output="identity"))
    module = task.init_module(0)
    clean = torch.zeros(6)
    noise = task.data.batch("train", 4)[0]
    assert noise.abs().sum() > 0
    g = [torch.autograd.grad(task.forward_loss(module, (n,)), module.x)[0] for n in (clean, noise)]
    torch.testing.assert_close(g[1] - g[0], task.config["loss_scale"] * noise)


def test_quadratic_spectra_are_positive():
    rng = np.random.default_rng(0)
    for seed in range(200):
        spec = get_task_family("lab_quadratic").sample(seed)["spectrum"]
        eig = quadratic.eigenvalues(spec, 50, rng)
        assert eig.shape == (50,) and (eig > 0).all()


@pytest.mark.parametrize("name,point,value", [
    ("rosenbrock", (1.0, 1.0), 0.0), ("beale", (3.0, 0.5), 0.0), ("booth", (1.0, 3.0), 0.0),
    ("himmelblau", (3.0, 2.0), 0.0), ("rastrigin", (0.0, 0.0), 0.0), ("ackley", (0.0, 0.0), 0.0),
    ("matyas", (0.0, 0.0), 0.0), ("three_hump_camel", (0.0, 0.0), 0.0),
    ("styblinski_tang", (-2.903534, -2.903534), -78.33233),
])
def test_two_d_known_minima(name, point, value):
    x = torch.tensor(point, dtype=torch.float64, requires_grad=True)
    fn = two_d.FUNCTIONS[name][0]
    f = fn(x[0], x[1])
    f.backward()
    assert math.isclose(f.item(), value, abs_tol=1e-4)
    assert x.grad.abs().max() < 1e-3  # a stationary point, with a finite gradient


@pytest.mark.parametrize("kind,cell", [("rnn", nn.RNNCell), ("gru", nn.GRUCell), ("lstm", nn.LSTMCell)])
def test_recurrent_core_matches_torch_cells(kind, cell):
    torch.manual_seed(0)
    core = RecurrentCore(kind, 5, 7, {"name": "glorot_uniform", "scale": None}).double()
    ref = cell(5, 7).double()
    with torch.no_grad():
        ref.weight_ih.copy_(core.w_in)
        ref.weight_hh.copy_(core.w_h)
        ref.bias_ih.copy_(core.bias)
        ref.bias_hh.zero_()
    xs = torch.randn(3, 4, 5, dtype=torch.float64)
    state = None
    outs = []
    for t in range(4):
        state = ref(xs[:, t], state)
        outs.append(state[0] if kind == "lstm" else state)
    torch.testing.assert_close(core(xs), torch.stack(outs, dim=1))


@pytest.mark.parametrize("name", sorted(INITIALIZER_WEIGHTS))
def test_initializer_statistics(name):
    torch.manual_seed(0)
    spec = {"name": name, "scale": 0.5 if name in INITIALIZER_SCALES else None}
    w = init_weight_(torch.empty(400, 300, dtype=torch.float64), spec)
    expected_std = {"he_normal": math.sqrt(2 / 300), "he_uniform": math.sqrt(2 / 300),
                    "glorot_normal": math.sqrt(2 / 700), "glorot_uniform": math.sqrt(2 / 700),
                    "orthogonal": 0.5 * math.sqrt(1 / 400), "random_normal": 0.5,
                    "random_uniform": 0.5 / math.sqrt(3)}[name]
    assert math.isclose(w.std().item(), expected_std, rel_tol=0.05)
    if name == "orthogonal":
        torch.testing.assert_close(w.T @ w, 0.25 * torch.eye(300, dtype=torch.float64))
    core = RecurrentCore("lstm", 5, 6, spec)  # every gate block initialised on its own
    if name == "orthogonal":
        block = core.w_h[6:12].detach()
        torch.testing.assert_close(block @ block.T, 0.25 * torch.eye(6))
    assert torch.equal(core.bias[6:12], torch.ones(6))  # forget gate


def test_image_input_scales_uint8():
    like = torch.zeros(1, dtype=torch.float64)
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert torch.equal(image_input(x, like), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(image_input(x, like, center=True), torch.tensor([-1.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("family,bad,field", [
    ("lab_mlp", {"activation": "softsign"}, "activation"),
    ("lab_mlp", {"init": {"name": "random_normal"}}, "init"),
    ("lab_mlp", {"dataset": "nope"}, "dataset"),
    ("lab_conv_pooling", {"channels": [8] * 5, "strides": [2] * 5, "padding": "valid"}, "strides"),
    ("lab_char_rnn_language_model", {"core": "transformer"}, "core"),
    ("lab_quadratic", {"dim": 0}, "dim"),
    ("lab_quadratic", {"spectrum": {"kind": "flat"}}, "spectrum.kind"),
    ("lab_two_d", {"function": "sphere"}, "function"),
])
def test_builders_reject_bad_configs_naming_the_field(family, bad, field):
    with pytest.raises(ConfigError) as err:
        build_task(small_config(family, **bad))
    # the family's typed fields catch most before the builder runs (field "task.<key>");
    # what only the builder can see (a conv stack running out of pixels) it names itself
    assert err.value.field in (field, f"task.{field.split('.')[0]}")
    assert "\n" not in str(err.value)
