"""TaskSet's fixed MLP tasks: ``FixedMLP`` (13), ``FixedMLPAE`` (3), ``FixedMLPVAE`` (7).

Task names and definitions are TaskSet's (google-research/google-research
``task_set/tasks/fixed/fixed_mlp.py``, ``fixed_mlp_ae.py``, ``fixed_mlp_vae.py``, Apache
License 2.0). Every name builds on the digits stand-in and trains 3 steps in the population
engine; parameter counts are derived by hand from TaskSet's code; dropout and BatchNorm behave
as TaskSet's (dropout on in evaluation too, BatchNorm in inference mode throughout);
config-in-population == config-alone in float64 for a BatchNorm and a dropout task.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_population_equals_alone
from taskset_lab.engine import train_population
from taskset_lab.errors import DataError
from taskset_lab.tasks.base import SPLITS
from taskset_lab.tasks.fixed import mlp, mlp_ae, mlp_vae
from taskset_lab.tasks.registry import build_fixed_task, fixed_task_names, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

F64 = torch.float64

FIXED_MLP = [
    "FixedMLP_cifar10_mse_128x128x128_relu_bs128", "FixedMLP_cifar10_ce_128x128x128_relu_bs128",
    "FixedMLP_mnist_mse_128x128x128_relu_bs128", "FixedMLP_mnist_ce_128x128x128_relu_bs128",
    "FixedMLP_food10132x32_mse_128x128x128_relu_bs128", "FixedMLP_food10132x32_ce_128x128x128_relu_bs128",
    "FixedMLP_cifar10_Dropout05_128x128_relu_bs128", "FixedMLP_cifar10_Dropout08_128x128_relu_bs128",
    "FixedMLP_cifar10_Dropout02_128x128_relu_bs128", "FixedMLP_cifar10_LayerNorm_128x128x128_relu_bs128",
    "FixedMLP_cifar10_LayerNorm_128x128x128_tanh_bs128", "FixedMLP_cifar10_BatchNorm_128x128x128_relu_bs128",
    "FixedMLP_cifar10_BatchNorm_64x64x64x64x64_relu_bs128",
]
FIXED_MLP_AE = ["FixedMLPAE_mnist_32x32x32_bs128", "FixedMLPAE_mnist_128x32x128_bs128",
                "FixedMLPAE_cifar10_128x32x128_bs128"]
FIXED_MLP_VAE = [
    "FixedMLPVAE_cifar101_128x32x128_bs128", "FixedMLPVAE_cifar101_128x128x32x128x128_bs128",
    "FixedMLPVAE_mnist_128x8x128x128_bs128", "FixedMLPVAE_mnist_128x128x8x128_bs128",
    "FixedMLPVAE_mnist_128x64x32x64x128_bs64", "FixedMLPVAE_food10132x32_128x64x32x64x128_bs64",
    "Imagenet32x30_FC_VAE_128x64x32x64x128_relu_bs256",
]
KINDS = {**{n: "FixedMLP" for n in FIXED_MLP}, **{n: "FixedMLPAE" for n in FIXED_MLP_AE},
         **{n: "FixedMLPVAE" for n in FIXED_MLP_VAE}}




def test_all_23_registered_under_taskset_names_and_kinds():
    registered = set(fixed_task_names("FixedMLP*")) | set(fixed_task_names("Imagenet32x30_FC_VAE*"))
    assert registered == set(KINDS)
    assert set(mlp.SPECS) | set(mlp_ae.SPECS) | set(mlp_vae.SPECS) == set(KINDS)


# ------------------------------------------------------------------ parameter counts
# Derived by hand from TaskSet's code: snt.Linear(n) on d inputs has d*n + n parameters; the
# input is the flattened image (mnist 28*28 = 784, cifar10 / food101_32x32 32*32*3 = 3072).
#   FixedMLP ce/mse [128,128,128,10] on cifar10:
#     3072*128+128 = 393,344; 128*128+128 = 16,512 (x2); 128*10+10 = 1,290    -> 427,658
#   food101_32x32 (101 classes): 393,344 + 2*16,512 + 128*101+101 = 13,029    -> 439,397
#   Dropout [128,128,10] on cifar10: 393,344 + 16,512 + 1,290                  -> 411,146
#   LayerNorm: the ce MLP + gamma, beta [128] per hidden layer: + 3*256        -> 428,426
#   BatchNormV2 (offset only; moving statistics are not trainable): + 3*128    -> 428,042
#   BatchNorm [64]*5 + [10]: 3072*64+64 = 196,672; 4*(64*64+64) = 16,640;
#     64*10+10 = 650; beta 5*64 = 320                                          -> 214,282
#   FixedMLPAE [32,32,32,784] on mnist: 784*32+32 = 25,120; 32*32+32 = 1,056 (x2);
#     32*784+784 = 25,872                                                      -> 53,104
#   FixedMLPVAE enc [128] + [2*8], dec [128,128] + [2*784] on mnist: 784*128+128 = 100,480;
#     128*16+16 = 2,064; 8*128+128 = 1,152; 128*128+128 = 16,512;
#     128*1568+1568 = 202,272                                                  -> 322,480
#   Imagenet32x30_FC_VAE (food101_32x32): enc [128,64] + [64], dec [64,128] + [6144]:
#     393,344 + 128*64+64 = 8,256 + 64*64+64 = 4,160; 32*64+64 = 2,112; 64*128+128 = 8,320;
#     128*6144+6144 = 792,576                                                  -> 1,208,768
PARAM_COUNTS = {
    "FixedMLP_cifar10_ce_128x128x128_relu_bs128": 427_658,
    "FixedMLP_food10132x32_mse_128x128x128_relu_bs128": 439_397,
    "FixedMLP_cifar10_Dropout02_128x128_relu_bs128": 411_146,
    "FixedMLP_cifar10_LayerNorm_128x128x128_tanh_bs128": 428_426,
    "FixedMLP_cifar10_BatchNorm_128x128x128_relu_bs128": 428_042,
    "FixedMLP_cifar10_BatchNorm_64x64x64x64x64_relu_bs128": 214_282,
    "FixedMLPAE_mnist_32x32x32_bs128": 53_104,
    "FixedMLPVAE_mnist_128x8x128x128_bs128": 322_480,
    "Imagenet32x30_FC_VAE_128x64x32x64x128_relu_bs256": 1_208_768,
}


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_counts_match_taskset(name):
    module = build_fixed_task(name, offline_data="substitute").init_module(0)
    assert sum(p.numel() for p in module.parameters()) == PARAM_COUNTS[name]


# ------------------------------------------------------------------ every task builds and trains


def _small(name: str, batch_size: int = 8):
    """The task on the stand-in with TaskSet's model, and a small batch (CPU budget)."""
    for module in (mlp, mlp_ae, mlp_vae):
        if name in module.SPECS:
            spec = dataclasses.replace(module.SPECS[name], batch_size=batch_size)
            return module.build_spec(spec, offline_data="substitute")
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_builds_offline_and_trains_3_steps_in_the_population_engine(name):
    task = get_task(name, offline_data="substitute")
    assert task.name == f"{name}_on_digits" and task.family == KINDS[name]
    spec = {**mlp.SPECS, **mlp_ae.SPECS, **mlp_vae.SPECS}[name]
    x, y = task.data.batch("train", 0)
    assert x.shape[0] == spec.batch_size and x.dtype == torch.uint8
    assert x.shape[1:] == ((1, 28, 28) if spec.dataset == "mnist" else (3, 32, 32))
    small = _small(name)
    result = train_population(small, "adam1p", [{"lr": 1e-3}], total_steps=3, eval_every=3, eval_batches=1,
                              divergence_factor=math.inf)
    assert result.steps == [0, 3]
    for split in SPLITS:
        assert torch.isfinite(result.losses[split]).all(), (name, split)


def test_absent_dataset_raises_one_line_data_error(tmp_path):
    with pytest.raises(DataError) as err:
        get_task("FixedMLPVAE_cifar101_128x32x128_bs128", data_dir=str(tmp_path))
    assert "\n" not in str(err.value) and "'cifar10'" in str(err.value)  # the code's dataset, not "cifar101"


# ------------------------------------------------------------------ what the tasks compute


def test_names_that_differ_from_the_code_follow_the_code():
    assert mlp_vae.SPECS["Imagenet32x30_FC_VAE_128x64x32x64x128_relu_bs256"].dataset == "food101_32x32"
    assert mlp_vae.SPECS["Imagenet32x30_FC_VAE_128x64x32x64x128_relu_bs256"].batch_size == 256
    assert {mlp_vae.SPECS[n].dataset for n in FIXED_MLP_VAE if "cifar101" in n} == {"cifar10"}
    # DropoutXX is the keep probability (Sonnet's dropout_keep_prob), not the drop rate
    assert mlp.SPECS["FixedMLP_cifar10_Dropout08_128x128_relu_bs128"].keep_prob == 0.8


def test_mse_and_ce_losses_and_sonnet_default_initialisation():
    for loss in ("mse", "ce"):
        task = _small(f"FixedMLP_mnist_{loss}_128x128x128_relu_bs128", batch_size=5)
        module = task.init_module(0).double()
        x, y = task.data.batch("train", 1)
        with torch.no_grad():
            logits = module(x)
            got = task.train_loss(module, (x, y), 1)
        want = (F.cross_entropy(logits, y) if loss == "ce" else
                ((F.one_hot(y, 10).double() - torch.sigmoid(logits)) ** 2).mean())
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    w = module.mlp.layers[0].w.detach()  # truncated_normal(stddev=1/sqrt(784)) cut at 2 stddevs, b = 0
    assert float(w.abs().max()) <= 2 / 28 and abs(float(w.std()) * 28 - 0.88) < 0.03
    assert float(module.mlp.layers[0].b.detach().abs().max()) == 0.0


def test_dropout_is_on_in_training_and_evaluation_with_taskset_keep_probability():
    task = _small("FixedMLP_cifar10_Dropout02_128x128_relu_bs128", batch_size=64)
    module = task.init_module(0).double()
    batch = task.data.batch("train", 0)
    with torch.no_grad():
        e1, e1_again, e2 = (task.eval_loss(module, batch, k) for k in ("k1", "k1", "k2"))
        assert e1 == e1_again and e1 != e2  # TaskSet never switches dropout off
        assert task.train_loss(module, batch, 0) != task.train_loss(module, batch, 1)
        spec = task.noise_spec(module, batch, train=False)
        assert spec == {"mlp.between.0": ((64, 128), "uniform"), "mlp.between.1": ((64, 128), "uniform")}
        # keep probability 0.2: about 80 % of the first hidden layer's pre-activations are zeroed
        drop = module.mlp.between[0]
        h = torch.ones(64, 128, dtype=F64)
        out = drop(h)
        assert abs(float((out == 0).double().mean()) - 0.8) < 0.03 and float(out.max()) == pytest.approx(5.0)


def test_batchnorm_is_taskset_inference_mode_in_training_and_evaluation():
    task = _small("FixedMLP_cifar10_BatchNorm_128x128x128_relu_bs128", batch_size=6)
    module = task.init_module(0).double()
    assert not [n for n, _ in module.named_parameters() if "norms" in n and not n.endswith("beta")]  # no scale
    with torch.no_grad():
        module.mlp.norms[0].beta.normal_()
        batch = task.data.batch("train", 0)
        assert task.train_loss(module, batch, 0) == task.eval_loss(module, batch, "k")
        h = torch.randn(6, 128, dtype=F64)
        torch.testing.assert_close(module.mlp.norms[0](h), h / math.sqrt(1.001) + module.mlp.norms[0].beta)
    # no running statistics are task state: nothing moves while training
    assert not getattr(module.mlp.norms[0], "task_state", False)


def test_layer_norm_normalises_each_example_over_its_features():
    task = _small("FixedMLP_cifar10_LayerNorm_128x128x128_relu_bs128", batch_size=4)
    norm = task.init_module(0).double().mlp.norms[1]
    h = torch.randn(4, 128, dtype=F64) * 3 + 2
    with torch.no_grad():
        out = norm(h)
    torch.testing.assert_close(out.mean(1), torch.zeros(4, dtype=F64), atol=1e-12, rtol=0)
    var = h.var(1, unbiased=False)
    torch.testing.assert_close(out.var(1, unbiased=False), var / (var + 1e-5), rtol=1e-12, atol=0)


def test_fixed_ae_and_vae_compute_taskset_losses():
    ae = _small("FixedMLPAE_mnist_32x32x32_bs128", batch_size=3)
    module = ae.init_module(0).double()
    x, y = ae.data.batch("train", 0)
    flat = (x.double() / 255).permute(0, 2, 3, 1).reshape(3, -1)  # [0, 1], not centred
    with torch.no_grad():
        torch.testing.assert_close(ae.train_loss(module, (x, y), 0),
                                   ((flat - torch.sigmoid(module.mlp(flat))) ** 2).mean(), rtol=1e-14, atol=0)
    vae = _small("FixedMLPVAE_mnist_128x64x32x64x128_bs64", batch_size=3).init_module(0)
    # encoder: every listed width is a hidden layer, then [mu, log_sigma] of the 32 latents
    assert [layer.w.shape[1] for layer in vae.vae.encoder.layers] == [128, 64, 64]
    assert [layer.w.shape[1] for layer in vae.vae.decoder.layers] == [64, 128, 1568]
    assert vae.input.center  # the fixed VAEs centre the image: (x - 0.5) * 2


# ------------------------------------------------------------------ population == alone (float64)


@pytest.mark.parametrize("name", ["FixedMLP_cifar10_BatchNorm_64x64x64x64x64_relu_bs128",
                                  "FixedMLP_cifar10_Dropout05_128x128_relu_bs128"])
def test_config_in_population_equals_config_alone_in_float64(name):
    task = _small(name, batch_size=6)
    assert_population_equals_alone(task, configs_differ=True)
