"""``lab_mlp``, the one toy family kept of the project's own 0.1 families (on embedded data):
its sampler (deterministic, in range, JSON-safe, independent of the global RNGs), builder,
names, initializers, input scaling, config checks and the vmap contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from taskset_lab.errors import ConfigError
from taskset_lab.tasks import build_task, task_family_names, get_task_family, sample_task_config, task_name
from taskset_lab.tasks.families.mlp import ACTIVATIONS, INITIALIZER_SCALES, INITIALIZER_WEIGHTS, init_weight_
from taskset_lab.tasks.images import ImageInput
from taskset_lab.tasks.registry import released_samplers

FAMILY = "lab_mlp"
# Small overrides so building and running stay well under a second.
SMALL = {"hidden": [16, 12], "batch_size": 8}

# Variants that must each pass the vmap check (different code paths inside the family).
VARIANTS = [{"activation": "tanh", "center_data": True}, {"activation": "leaky_relu"}]


def small_config(seed: int = 0, **extra) -> dict:
    return sample_task_config(FAMILY, seed, {**SMALL, **extra})


TASKSET_FAMILIES = ["char_rnn_language_model_family", "conv_fc_family", "conv_pooling_family",
                    "losg_tasks_family", "maf_family", "mlp_ae_family", "mlp_family", "mlp_vae_family",
                    "nvp_family", "quadratic_family", "rnn_text_classification_family",
                    "word_rnn_language_model_family"]


def test_taskset_families_and_lab_mlp_are_registered():
    """TaskSet's twelve families are registered, each with TaskSet's released sampler, and
    ``lab_mlp`` is the one ``lab_*`` family left (the registry may hold other families)."""
    assert set(TASKSET_FAMILIES) <= set(released_samplers()) <= set(task_family_names())
    assert [f for f in task_family_names() if f.startswith("lab_")] == [FAMILY]
    assert FAMILY not in released_samplers()


def test_sampler_deterministic_json_and_varied():
    family = get_task_family(FAMILY)
    configs = [family.sample(seed) for seed in range(100)]
    again = [family.sample(seed) for seed in range(100)]
    assert configs == again
    for c in configs:
        assert c["family"] == FAMILY
        assert json.loads(json.dumps(c)) == c  # plain JSON types only
        assert isinstance(c["data_seed"], int)
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 100
    # the sampler must not touch (or depend on) the global RNGs
    np.random.seed(1)
    torch.manual_seed(1)
    state = (np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    assert family.sample(7) == configs[7]
    assert np.array_equal(np.random.get_state()[1], state[0]) and torch.equal(torch.get_rng_state(), state[1])


def _check_init(spec):
    assert spec["name"] in INITIALIZER_WEIGHTS
    if spec["name"] in INITIALIZER_SCALES:
        low, high = INITIALIZER_SCALES[spec["name"]]
        assert low <= spec["scale"] <= high
    else:
        assert spec["scale"] is None


def test_sampler_ranges_over_many_seeds():
    seen: dict[str, set] = {"activation": set(), "init": set()}
    for seed in range(2000):
        m = get_task_family(FAMILY).sample(seed)
        assert 1 <= len(m["hidden"]) <= 6 and all(16 <= h <= 128 for h in m["hidden"])
        assert m["dataset"] == "digits" and m["batch_size"] in (32, 64, 128, 256)
        assert m["activation"] in ACTIVATIONS
        _check_init(m["init"])
        seen["activation"].add(m["activation"])
        seen["init"].add(m["init"]["name"])
    assert seen["activation"] == set(ACTIVATIONS) and seen["init"] == set(INITIALIZER_WEIGHTS)


def test_activation_weighting_favours_relu_and_tanh():
    counts: dict[str, int] = {}
    for seed in range(2000):
        act = get_task_family(FAMILY).sample(seed)["activation"]
        counts[act] = counts.get(act, 0) + 1
    assert counts["relu"] > counts["tanh"] > max(v for k, v in counts.items() if k not in ("relu", "tanh"))


def test_leaky_relu_is_taskset_s_leaky_relu2():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    torch.testing.assert_close(ACTIVATIONS["leaky_relu"](x), torch.where(x > 0, x, 0.2 * x))


def test_stable_names():
    # Curve stores key unnamed task configs by this hash, and the shipped learned optimizer's
    # checkpoint records its lab_mlp training tasks by name: a change here orphans them.
    # (0.2 renamed the project's own families to lab_*, which moved these on purpose; sampled
    # tasks are named <family>_seed<N>.)
    assert task_name(sample_task_config(FAMILY, 0)) == "lab_mlp_f59099d6"
    c = sample_task_config(FAMILY, 0)
    assert task_name(dict(reversed(list(c.items())))) == "lab_mlp_f59099d6"


def test_image_sampler_dataset_pool():
    sample = get_task_family(FAMILY).sample
    pooled = {sample(seed, datasets=("digits", "mnist"))["dataset"] for seed in range(50)}
    assert pooled == {"digits", "mnist"}
    assert {sample(s, datasets=("cifar10",))["dataset"] for s in range(5)} == {"cifar10"}
    with pytest.raises(ValueError, match="imagenet"):
        sample(0, datasets=("imagenet",))


def test_build_forward_backward():
    task = build_task(small_config())
    assert task.family == FAMILY and task.name == task_name(task.config)
    module = task.init_module(0)
    loss = task.forward_loss(module, task.data.batch("train", 0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in module.parameters())
    for split in ("valid_inner", "valid_outer", "test"):
        assert torch.isfinite(task.forward_loss(module, task.data.batch(split, 3)))


def test_init_and_batches_are_seeded():
    task = build_task(small_config())
    a, b, c = task.init_module(5), task.init_module(5), task.init_module(6)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    same = build_task(small_config())
    assert all(torch.equal(x, y) for x, y in zip(task.data.batch("train", 3), same.data.batch("train", 3)))
    other = build_task({**task.config, "data_seed": task.config["data_seed"] + 1})
    assert not all(torch.equal(x, y) for x, y in zip(task.data.batch("train", 3), other.data.batch("train", 3)))


@pytest.mark.parametrize("extra", VARIANTS, ids=[f"{FAMILY}-{i}" for i in range(len(VARIANTS))])
def test_vmap_over_stacked_params_matches_each_copy(extra):
    """The engine's contract: vmap(functional_call) over [K]-stacked params, batch shared."""
    task = build_task(small_config(**extra)).to("cpu", torch.float64)
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


def test_image_input_scales_uint8():
    """The MLP's input layer (TaskSet's ImageInput, no augmentation): uint8 to [0, 1], or [-1, 1]
    when centred; the layer has no parameters, so the state dict is the linear layers'."""
    like = torch.zeros(1, dtype=torch.float64)
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert torch.equal(ImageInput(None, False)(x, like), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(ImageInput(None, True)(x, like), torch.tensor([-1.0, 1.0], dtype=torch.float64))
    module = build_task(small_config(center_data=True)).init_module(0)
    assert module.center is True and all(k.startswith("layers.") for k in module.state_dict())


@pytest.mark.parametrize("bad,field", [
    ({"activation": "softsign"}, "activation"),
    ({"init": {"name": "random_normal"}}, "init"),
    ({"dataset": "nope"}, "dataset"),
])
def test_builders_reject_bad_configs_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        build_task(small_config(**bad))
    # the family's typed fields catch them before the builder runs (field "task.<key>")
    assert err.value.field in (field, f"task.{field.split('.')[0]}")
    assert "\n" not in str(err.value)
