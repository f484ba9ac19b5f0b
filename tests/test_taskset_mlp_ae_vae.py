"""TaskSet's ``mlp_ae_family`` and ``mlp_vae_family``: seeds 0-7 build on the digits stand-in
and train 20 steps in the population engine; the losses against hand computations from
TaskSet's definitions (``task_set/tasks/mlp_ae.py``, ``mlp_vae.py``, ``generative_utils.py``
in google-research/google-research, Apache License 2.0); config-in-population == config-alone
in float64, the VAE's sampling noise included."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from conftest import assert_population_equals_alone
from taskset_lab.engine import train_population
from taskset_lab.errors import ConfigError, DataError
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.base import SPLITS
from taskset_lab.tasks.context import StepContext, step_context
from taskset_lab.tasks.initializers import sonnet_default_weight
from taskset_lab.tasks.registry import build_task, get_task, sample_task, sample_task_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

F64 = torch.float64
FAMILIES = ["mlp_ae_family", "mlp_vae_family"]




def _first_linear(module) -> torch.Tensor:
    return next(p.detach() for n, p in module.named_parameters() if n.endswith("layers.0.w"))


# ------------------------------------------------------------------ every seed builds and trains


@pytest.mark.parametrize("family", FAMILIES)
def test_seeds_0_to_7_build_offline_and_train_20_steps(family):
    for seed in range(8):
        task = get_task(f"{family}_seed{seed}", offline_data="substitute")
        assert task.name == f"{family}_seed{seed}_on_digits" and task.data_substitute == "digits"
        x, _ = task.data.batch("train", 0)
        assert x.shape[0] == task.config["dataset"][1]["bs"] and tuple(x.shape[1:]) == task.image_shape
        # the released config with a 4-image batch (CPU budget). TaskSet's VAEs start at losses
        # up to 1e9 whose minibatch values swing by 100x, which the engine's default divergence
        # rule would cut off: only non-finite losses count here.
        name, dcfg, aug = task.config["dataset"]
        small = sample_task(family, seed, {"dataset": [name, {**dcfg, "bs": 4}, aug]}, offline_data="substitute")
        module = small.init_module(0)
        d = math.prod(task.seen_shape)
        if family == "mlp_ae_family":  # hidden layers, then back to the D inputs
            widths = [*task.config["hidden_units"], d]
        else:  # encoder: all but the last width, then [mu, log_sigma] of the latent
            widths = [*task.config["enc_hidden_units"][:-1], 2 * task.config["enc_hidden_units"][-1],
                      *task.config["dec_hidden_units"], 2 * d]
        assert [p.shape[1] for n, p in module.named_parameters() if n.endswith(".w")] == widths
        result = train_population(small, "adam1p", [{"lr": 1e-4}], total_steps=20, eval_every=20, eval_batches=1,
                                  divergence_factor=math.inf)
        assert result.steps == [0, 20] and not bool(result.diverged[0])
        for split in SPLITS:
            assert torch.isfinite(result.losses[split]).all(), (small.name, split, result.losses[split])
        assert float(result.losses["train"][0, 1]) < float(result.losses["train"][0, 0]), small.name


# Derived by hand from TaskSet's code (snt.Linear(n) on d inputs: d*n + n parameters):
#   mlp_ae_family_seed2: imagenet_resized/32x32 (D = 3072), hidden [41]:
#     3072*41+41 = 125,993; 41*3072+3072 = 129,024                              -> 255,017
#   mlp_vae_family_seed1: imagenet_resized/16x16 (D = 768), enc [128, 117] -> MLP [128, 2*117],
#     dec [49, 39] -> MLP [49, 39, 2*768] on the 117 latents: 768*128+128 = 98,432;
#     128*234+234 = 30,186; 117*49+49 = 5,782; 49*39+39 = 1,950; 39*1536+1536 = 61,440 -> 197,790
@pytest.mark.parametrize("name,count", [("mlp_ae_family_seed2", 255_017), ("mlp_vae_family_seed1", 197_790)])
def test_parameter_counts_match_taskset(name, count):
    module = get_task(name, offline_data="substitute").init_module(0)
    assert sum(p.numel() for p in module.parameters()) == count


def test_absent_dataset_raises_one_line_data_error(tmp_path):
    with pytest.raises(DataError) as err:
        get_task("mlp_vae_family_seed6", data_dir=str(tmp_path))  # fashion_mnist, not there
    assert "\n" not in str(err.value) and "fashion_mnist" in str(err.value)
    with pytest.raises(ConfigError, match="output_type"):
        build_task({**sample_task_config("mlp_ae_family", 0), "output_type": "softplus"},
                   offline_data="substitute")


# ------------------------------------------------------------------ the autoencoder's loss


def _ae_by_hand(module, config, x_uint8):
    """TaskSet's mlp_ae loss restated: flatten NHWC, centre for tanh/linear_center, MLP with the
    activation between layers, output nonlinearity, l1/l2 reduced by mean/sum, batch mean."""
    flat = (x_uint8.to(F64) / 255.0).permute(0, 2, 3, 1).reshape(x_uint8.shape[0], -1)
    if config["output_type"] in ("tanh", "linear_center"):
        flat = flat * 2.0 - 1.0
    ws = [p.detach() for n, p in module.named_parameters() if n.endswith(".w")]
    bs = [p.detach() for n, p in module.named_parameters() if n.endswith(".b")]
    h = flat
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w + b
        if i < len(ws) - 1:
            h = torch.tanh(h)
    h = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}.get(config["output_type"], lambda v: v)(h)
    err = (h - flat) ** 2 if config["loss_type"] == "l2" else (h - flat).abs()
    per_image = err.mean(1) if config["reduction_type"] == "reduce_mean" else err.sum(1)
    return per_image.mean()


@pytest.mark.parametrize("output_type", ["tanh", "sigmoid", "linear_center", "linear"])
def test_autoencoder_loss_matches_taskset_definition(output_type):
    base = sample_task_config("mlp_ae_family", 7)  # mnist
    name, dcfg, _ = base["dataset"]
    for loss_type in ("l2", "l1"):
        for reduction in ("reduce_mean", "reduce_sum"):
            overrides = {"hidden_units": [5, 4], "activation": "tanh", "output_type": output_type,
                         "loss_type": loss_type, "reduction_type": reduction,
                         "dataset": [name, {**dcfg, "bs": 3}, None]}
            task = sample_task("mlp_ae_family", 7, overrides, offline_data="substitute")
            module = task.init_module(1).double()
            batch = task.data.batch("train", 2)
            got = task.train_loss(module, batch, step=2)
            torch.testing.assert_close(got, _ae_by_hand(module, task.config, batch[0]), rtol=1e-12, atol=0)
    # sum over the 784 pixel values is exactly 784 times the mean (same parameters, same batch)
    sums = sample_task("mlp_ae_family", 7, {**overrides, "reduction_type": "reduce_sum"}, offline_data="substitute")
    means = sample_task("mlp_ae_family", 7, {**overrides, "reduction_type": "reduce_mean"}, offline_data="substitute")
    batch = sums.data.batch("train", 0)
    with torch.no_grad():
        ratio = sums.train_loss(sums.init_module(3).double(), batch, 0) / means.train_loss(
            means.init_module(3).double(), batch, 0)
    assert float(ratio) == pytest.approx(784.0, rel=1e-12)


def test_initializers_follow_the_config_and_sonnet_default():
    config = {**sample_task_config("mlp_ae_family", 7), "hidden_units": [300], "w_init": ["random_uniform", 0.05]}
    w = _first_linear(build_task(config, offline_data="substitute").init_module(0))
    assert w.shape == (784, 300) and float(w.abs().max()) <= 0.05 and float(w.abs().max()) > 0.049
    torch.manual_seed(0)
    default = sonnet_default_weight(400, 500)  # truncated_normal(stddev=1/sqrt(400)) cut at 2 stddevs
    assert float(default.abs().max()) <= 2 / 20 and abs(float(default.std()) * 20 - 0.88) < 0.02


# ------------------------------------------------------------------ the VAE's negative ELBO


def test_vae_negative_elbo_matches_taskset_definition_with_given_noise():
    base = sample_task_config("mlp_vae_family", 1)  # imagenet_resized/16x16: D = 768
    name, dcfg, _ = base["dataset"]
    overrides = {"enc_hidden_units": [6, 3], "dec_hidden_units": [5], "w_init": ["random_normal", 0.05],
                 "activation": "relu",
                 "dataset": [name, {**dcfg, "bs": 4}, None]}
    task = sample_task("mlp_vae_family", 1, overrides, offline_data="substitute")
    module = task.init_module(0).double()
    x_uint8 = task.data.batch("train", 0)[0]
    gen = torch.Generator().manual_seed(5)
    eps = torch.randn(4, 3, generator=gen, dtype=F64)
    u = torch.rand(4, 768, generator=gen, dtype=F64)
    with step_context(StepContext(train=True, noise={"vae/latent": eps, "vae/dequantize": u})), torch.no_grad():
        got = task.forward_loss(module, (x_uint8, None))
    # by hand, with torch.distributions: x in [0, 1] (not centred), flattened NHWC
    x = (x_uint8.to(F64) / 255.0).permute(0, 2, 3, 1).reshape(4, -1)
    w = {n: p.detach() for n, p in module.named_parameters()}
    h = torch.relu(x @ w["vae.encoder.layers.0.w"] + w["vae.encoder.layers.0.b"])
    q = h @ w["vae.encoder.layers.1.w"] + w["vae.encoder.layers.1.b"]  # [mu(3), log_sigma(3)]
    assert q.shape == (4, 6)
    posterior = Normal(q[:, :3], q[:, 3:].exp())
    z = q[:, :3] + q[:, 3:].exp() * eps
    out = torch.relu(z @ w["vae.decoder.layers.0.w"] + w["vae.decoder.layers.0.b"])
    out = (out @ w["vae.decoder.layers.1.w"] + w["vae.decoder.layers.1.b"]).clamp(-10, 10)
    likelihood = Normal(out[:, :768], out[:, 768:].exp())
    log_p_x = (likelihood.log_prob(x + (u - 0.5) / 255.0) + math.log(1 / 255)).sum(1)
    kl = kl_divergence(posterior, Normal(torch.zeros_like(z), torch.ones_like(z))).sum(1)
    torch.testing.assert_close(got, -(log_p_x - kl).mean(), rtol=1e-12, atol=0)


def test_vae_noise_is_drawn_in_training_and_evaluation_and_fixed_per_key():
    task = sample_task("mlp_vae_family", 6, {"dataset": ["fashion_mnist", {"bs": 8, "num_train": None}, None]},
                       offline_data="substitute")
    module = task.init_module(0).double()
    batch = task.data.batch("train", 0)
    with torch.no_grad():
        spec = task.noise_spec(module, batch, train=False)
        assert spec == {"vae/latent": ((8, 35), "normal"), "vae/dequantize": ((8, 784), "uniform")}
        a, b = task.eval_loss(module, batch, "k1"), task.eval_loss(module, batch, "k1")
        assert a == b and a != task.eval_loss(module, batch, "k2")
        assert task.train_loss(module, batch, 0) != task.train_loss(module, batch, 1)


# ------------------------------------------------------------------ population == alone (float64)


def _population_equals_alone(task, steps: int = 4):
    return assert_population_equals_alone(task, steps=steps, configs_differ=True)


AUG = {"crop_amount": 1, "flip_left_right": True, "flip_up_down": False, "do_color_aug": True,
       "brightness": 0.1, "saturation": 0.3, "hue": 0.05, "contrast": 0.3}


def test_autoencoder_population_equals_alone_with_augmentation():
    overrides = {"hidden_units": [6, 5], "dataset": ["cifar10", {"bs": 5, "num_train": None}, AUG]}
    _population_equals_alone(sample_task("mlp_ae_family", 5, overrides, offline_data="substitute"))


def test_vae_population_equals_alone_and_noise_is_per_config():
    overrides = {"enc_hidden_units": [7, 4], "dec_hidden_units": [6],
                 "dataset": ["imagenet_resized/16x16", {"bs": 5, "num_train": None}, None]}
    task = sample_task("mlp_vae_family", 1, overrides, offline_data="substitute")
    _population_equals_alone(task)
    # identical hparams: the two configs differ only by their latent and dequantisation noise
    adam = get_optimizer_family("adam8p")
    same = train_population(task, adam, [adam.sample(3)] * 2, 2, 2, eval_batches=1, dtype=F64)
    for split in SPLITS:
        assert not torch.equal(same.losses[split][0], same.losses[split][1])
