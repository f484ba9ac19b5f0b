"""TaskSet's fixed conv tasks (FixedImageConv, FixedImageConvAE, FixedImageConvVAE): names,
parameter counts derived by hand from TaskSet's code, TF 'SAME' conv/transposed-conv
geometry, TaskSet's always-training BatchNorm, training in the population engine on the
offline digits stand-in, and config-in-population == config-alone (BatchNorm, VAE noise).

The names come from tests/data/taskset_reference/fixed_tasks.json (TaskSet's fixed task list,
Apache 2.0, google-research/google-research task_set); the 35 names are copied below."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_population_equals_alone
from taskset_lab.engine import train_population, train_single
from taskset_lab.errors import DataError
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.base import SPLITS, TensorData
from taskset_lab.tasks.fixed import image_conv, image_conv_ae, image_conv_vae
from taskset_lab.tasks.fixed.image_conv import BatchStatNorm, SameConv2d
from taskset_lab.tasks.fixed.image_conv_ae import SameConvTranspose2d
from taskset_lab.tasks.registry import FIXED_TASKS, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

F64 = torch.float64

CONV = [
    "FixedImageConv_cifar10_32x64x64_bs128", "FixedImageConv_cifar10_32x64x64_tanh_bs64",
    "FixedImageConv_cifar10_32x64x128_he_bs64", "FixedImageConv_cifar10_32x64x128_normal_bs64",
    "FixedImageConv_cifar10_32x64x128_largenormal_bs64", "FixedImageConv_cifar10_32x64x128_smallnormal_bs64",
    "FixedImageConv_cifar10_32x64x128x128x128_avg_he_bs64", "FixedImageConv_cifar10_batchnorm_32x64x64_bs128",
    "FixedImageConv_cifar10_batchnorm_32x32x32x64x64_bs128", "FixedImageConv_food101_batchnorm_32x32x32x64x64_bs128",
    "FixedImageConv_cifar100_bn_32x64x128x128_bs128", "FixedImageConv_coil10032x32_bn_32x64x128x128_bs128",
    "FixedImageConv_sun39732x32_bn_32x64x128x128_bs128", "FixedImageConv_cifar10_32x64x64_flatten_bs128",
    "FixedImageConv_cifar10_32x64x64_fc_64_bs128", "FixedImageConv_mnist_32x64x64_fc_64_bs128",
    "Mnist_Conv_32x16x64_flatten_FC32_tanh_bs32", "FixedImageConv_cifar10_32x64x128_flatten_FC64x32_tanh_he_bs8",
    "FixedImageConv_cifar10_32x64x128_flatten_FC64x32_tanh_variance_scaling_bs64",
    "FixedImageConv_cifar100_32x64x128_FC64x32_tanh_variance_scaling_bs64",
    "FixedImageConv_cifar100_32x64x64_flatten_bs128", "FixedImageConv_food10164x64_Conv_32x64x64_flatten_bs64",
    "FixedImageConv_colorectalhistology32x32_32x64x64_flatten_bs128",
]
AE = [
    "FixedImageConvAE_mnist_32x32x32x32x32_bs128", "FixedImageConvAE_mnist_32x64x8x64x32_bs128",
    "FixedImageConvAE_mnist_32x64x32x64x32_bs512", "FixedImageConvAE_cifar10_32x32x32x32x32_bs128",
    "FixedImageConvAE_cifar10_32x64x8x64x32_bs128",
]
VAE = [
    "FixedImageConvVAE_mnist_32x32x32x32x32_bs128", "FixedImageConvVAE_mnist_32x64x32x64x32_bs128",
    "FixedImageConvVAE_cifar10_32x64x128x64x32_bs128", "FixedImageConvVAE_mnist_64x128x128x128x64_bs128",
    "FixedImageConvVAE_cifar10_64x128x256x128x256x128x64_bs128",
    "FixedImageConvVAE_cifar10_32x64x128x64x128x64x32_bs128",
    "FixedImageConvVAE_cifar10_32x64x128x64x128x64x32_bs512",
]
KINDS = {**{n: "FixedImageConv" for n in CONV}, **{n: "FixedImageConvAE" for n in AE},
         **{n: "FixedImageConvVAE" for n in VAE}}
SPEC_TABLES = {"FixedImageConv": image_conv.SPECS, "FixedImageConvAE": image_conv_ae.SPECS,
               "FixedImageConvVAE": image_conv_vae.SPECS}
#: the parametrized smoke run trains on batches of at most this many images (see below)
SMOKE_BATCH = 2




def _small(task, batch_size: int = SMOKE_BATCH):
    """The task with its stand-in splits served in batches of ``batch_size`` (same model)."""
    task.data = TensorData(task.data.splits, min(batch_size, task.data.batch_size), task.data.seed)
    return task


def _n_params(task) -> int:
    return sum(p.numel() for p in task.make_module().parameters())


def test_the_35_names_are_registered_under_their_kinds():
    for name, kind in KINDS.items():
        assert FIXED_TASKS.get(name).kind == kind
        assert name in SPEC_TABLES[kind]
    assert sum(len(t) for t in SPEC_TABLES.values()) == 35


def test_parameter_counts_equal_taskset():
    # Hand derivations from TaskSet's code (3x3 conv: 9 c_in c_out + c_out; Linear: in out + out;
    # snt.BatchNorm defaults: offset beta only, c per layer; strides [2, 1, 1] with SAME padding).
    # FixedImageConv_cifar10_32x64x64_bs128 (ce_pool_loss, avg pool, Linear(10)):
    #   896 + 18496 + 36928 + (64*10 + 10 = 650) = 56970
    # FixedImageConv_cifar10_batchnorm_32x64x64_bs128: + beta 32 + 64 + 64 = 57130
    # FixedImageConv_cifar10_32x64x64_flatten_bs128: 32x32 -> 16x16 (first stride 2), flatten
    #   16*16*64 = 16384 -> Linear(10): 163850; + convs 56320 = 220170
    # FixedImageConvAE_mnist_32x32x32x32x32_bs128: enc 9*1*32+32 = 320, 9*32*32+32 = 9248
    #   (28 -> 14 -> 7); Linear(7*7*32=1568 -> 32) 50208; Linear(32 -> 1568) 51744;
    #   ConvNet2DTranspose [32, 32]: 9248 + 9248; Conv2D(1, 1x1): 32 + 1 = 33 -> 130049
    # FixedImageConvVAE_mnist_32x32x32x32x32_bs128: enc 320 + 9248; Linear(1568 -> 2*32) 100416;
    #   Linear(32 -> 1568) 51744; deconvs 9248 + 9248; Conv2D(2*1, 1x1): 64 + 2 = 66 -> 180290
    # FixedImageConvVAE_cifar10_32x64x128x64x128x64x32_bs128 (three layers, n_z 64):
    #   enc 896 + 18496 + 73856 (32 -> 16 -> 8 -> 4); Linear(4*4*128=2048 -> 128) 262272;
    #   Linear(64 -> 512) 33280; deconvs 32->128: 36992, 128->64: 73792, 64->32: 18464;
    #   Conv2D(6, 1x1): 198 -> 518246
    expected = {
        "FixedImageConv_cifar10_32x64x64_bs128": 56970,
        "FixedImageConv_cifar10_batchnorm_32x64x64_bs128": 57130,
        "FixedImageConv_cifar10_32x64x64_flatten_bs128": 220170,
        "FixedImageConvAE_mnist_32x32x32x32x32_bs128": 130049,
        "FixedImageConvVAE_mnist_32x32x32x32x32_bs128": 180290,
        "FixedImageConvVAE_cifar10_32x64x128x64x128x64x32_bs128": 518246,
    }
    for name, count in expected.items():
        assert _n_params(get_task(name, offline_data="substitute")) == count, name


def test_names_that_disagree_with_the_code_follow_the_code():
    he = image_conv.SPECS["FixedImageConv_cifar10_32x64x128_he_bs64"]
    assert (he.activation, he.head, he.init) == ("tanh", "max", "he")
    assert image_conv_ae.SPECS["FixedImageConvAE_mnist_32x64x32x64x32_bs512"].dec == (64, 64)
    vae = get_task("FixedImageConvVAE_mnist_32x64x32x64x32_bs128", offline_data="substitute")
    assert vae.image_shape == (3, 32, 32)  # cifar10, as TaskSet's code says
    coil = image_conv.SPECS["FixedImageConv_coil10032x32_bn_32x64x128x128_bs128"]
    assert (coil.dataset, coil.num_per_valid) == ("coil100_32x32", 800)


def test_same_conv_pads_like_tf_and_the_transpose_is_its_adjoint():
    torch.manual_seed(0)
    conv = SameConv2d(1, 1, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = conv(x)
    # TF 'SAME', stride 2 on 4 pixels: one padding row/column, at the bottom/right only
    assert y.shape == (1, 1, 2, 2)
    assert y[0, 0, 0, 0] == x[0, 0, 0:3, 0:3].sum() and y[0, 0, 1, 1] == x[0, 0, 2:4, 2:4].sum()
    # conv2d_transpose(SAME, output_shape) is the adjoint of the SAME conv with that kernel
    for hw, c_in, c_out in ((28, 3, 5), (7, 2, 4), (32, 4, 3)):
        fwd = SameConv2d(c_in, c_out, stride=2).double()
        tr = SameConvTranspose2d(c_out, c_in, (hw, hw), stride=2).double()
        with torch.no_grad():
            tr.weight.copy_(fwd.weight)  # torch layouts [out, in, k, k] and [in_T=out, out_T=in, k, k]
            fwd.bias.zero_()
            tr.bias.zero_()
        a = torch.randn(2, c_in, hw, hw, dtype=F64)
        b = torch.randn(2, c_out, -(-hw // 2), -(-hw // 2), dtype=F64)
        out = tr(b)
        assert out.shape == a.shape
        torch.testing.assert_close((fwd(a) * b).sum(), (a * out).sum())


def test_batchnorm_uses_batch_statistics_in_training_and_evaluation():
    norm = BatchStatNorm(3)
    with torch.no_grad():
        norm.beta.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(6, 3, 4, 4) * 3 + 7
    y = norm(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), norm.beta.detach(), atol=1e-5, rtol=0)
    task = _small(get_task("FixedImageConv_cifar10_batchnorm_32x64x64_bs128", offline_data="substitute"))
    module = task.init_module(0)
    batch = task.data.batch("train", 0)
    assert task.train_loss(module, batch, step=0) == task.eval_loss(module, batch, "k")  # TaskSet: is_training=True


def test_absent_dataset_is_a_one_line_data_error(tmp_path):
    with pytest.raises(DataError) as err:
        get_task("FixedImageConvAE_cifar10_32x32x32x32x32_bs128", data_dir=str(tmp_path))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", list(KINDS))
def test_builds_on_the_stand_in_and_trains_in_the_population_engine(name):
    # Real batch sizes at 3 steps take ~280 s here for the 35 tasks (2 shared cores; the bs512
    # VAE alone ~30 s), so the model and its real batch size are checked, then 3 steps run
    # on batches of at most SMOKE_BATCH images (the model code path does not depend on it).
    task = get_task(name, offline_data="substitute")
    assert task.name == f"{name}_on_digits" and task.data_substitute == "digits"
    spec = SPEC_TABLES[KINDS[name]][name]
    assert task.data.batch("train", 0)[0].shape[0] == spec.batch_size
    result = train_population(_small(task), "adam8p", [get_optimizer_family("adam8p").sample(0)], total_steps=3,
                              eval_every=3, eval_batches=1)
    for split in SPLITS:
        losses = result.losses[split]
        assert losses.shape[-1] == 2 and torch.isfinite(losses).all(), (split, losses)
    if KINDS[name] == "FixedImageConv":  # cross-entropy starts near log(num_classes)
        assert abs(float(result.losses["train"][0, 0]) - math.log(task.num_classes)) < 3.0


@pytest.mark.parametrize("name", ["FixedImageConv_cifar10_batchnorm_32x64x64_bs128",
                                  "FixedImageConvVAE_mnist_32x32x32x32x32_bs128"])
def test_config_in_population_equals_config_alone(name):
    task = _small(get_task(name, offline_data="substitute"), 2)
    configs = [get_optimizer_family("adam8p").sample(i) for i in range(2)]
    pop = assert_population_equals_alone(task, configs, steps=3, eval_every=3, config_ids=[5, 6], check=[1])
    other = train_single(task, ("adam8p", configs[1]), total_steps=3, eval_every=3, eval_batches=1, dtype=F64,
                         config_id=7)
    # the VAE's sampling noise is keyed by the config id; the BatchNorm task has no noise
    same = torch.allclose(other.losses["train"][0], pop.losses["train"][1])  # == config 6 alone
    assert same == ("VAE" not in name)
