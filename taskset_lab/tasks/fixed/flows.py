"""TaskSet's 5 ``FixedNVP`` and 3 ``FixedMAF`` tasks: flows fitted to images by likelihood.

TaskSet's definitions (``task_set/tasks/fixed/fixed_nvp.py``, ``fixed_maf.py``): the families'
flows (:mod:`taskset_lab.tasks.families.taskset_flows`; ``distribution_with_nvp_bijectors`` /
``dist_with_maf_bijectors`` and ``neg_log_p``) called with only ``num_bijectors`` and
``layers``, so with the defaults: ReLU, and ``w_init=None`` (``tf.layers.dense``'s
glorot_uniform in RealNVP's networks, ``masked_dense``'s glorot_normal in MAF's MADEs), biases
zero. Data: ``datasets.get_image_datasets(name, batch_size=64)`` (images in [0, 1], no
augmentation, 3000 examples per validation split). Loss: ``-mean_batch(log p(x + 0.01 n))``
in nats per image (see the family module's likelihood convention).

* ``FixedNVP_mnist_9layer_thin_bs16`` uses batch size **64** in TaskSet's code (the name says
  16): the code is followed.
* ``FixedMAF_cifar10_3layer_bs64``: hidden widths 1024 < D = 3072, so TFP's MADE masks
  degenerate (see the family module): each MAF bijector is elementwise affine with the output
  biases as shift and log-scale; its full kernels still count as (unused) parameters.
  ``FixedMAF_mnist_2layer_bs64`` (2048 >= 784) is a proper MADE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from taskset_lab.tasks.families.taskset_flows import MAF_DEFAULT_INIT, NVP_DEFAULT_INIT, ImageFlow
from taskset_lab.tasks.losses import NegativeLogLikelihoodTask
from taskset_lab.tasks.images import build_fixed_image_task
from taskset_lab.tasks.registry import register_fixed_tasks


@dataclass(frozen=True)
class FixedFlowSpec:
    """One fixed flow task: its name, ``nvp``/``maf``, dataset, bijectors, hidden widths, batch."""

    name: str
    kind: str
    dataset: str
    num_bijectors: int
    hidden: tuple[int, ...]
    batch_size: int = 64

    @property
    def group(self) -> str:
        return "FixedNVP" if self.kind == "nvp" else "FixedMAF"


SPECS: dict[str, FixedFlowSpec] = {s.name: s for s in [
    FixedFlowSpec("FixedNVP_mnist_2layer_bs64", "nvp", "mnist", 2, (2048, 2048)),
    FixedFlowSpec("FixedNVP_mnist_5layer_bs64", "nvp", "mnist", 5, (2048, 2048)),
    FixedFlowSpec("FixedNVP_mnist_5layer_thin_bs64", "nvp", "mnist", 5, (128, 128)),
    FixedFlowSpec("FixedNVP_mnist_3layer_thin_bs64", "nvp", "mnist", 3, (128, 128)),
    FixedFlowSpec("FixedNVP_mnist_9layer_thin_bs16", "nvp", "mnist", 9, (128, 128), 64),  # bs 64 in the code
    FixedFlowSpec("FixedMAF_mnist_2layer_bs64", "maf", "mnist", 2, (2048, 2048)),
    FixedFlowSpec("FixedMAF_mnist_3layer_thin_bs64", "maf", "mnist", 3, (128, 128)),
    FixedFlowSpec("FixedMAF_cifar10_3layer_bs64", "maf", "cifar10", 3, (1024, 1024)),
]}


class FixedFlowTask(NegativeLogLikelihoodTask):
    def __init__(self, spec: FixedFlowSpec, data: Any, shape: tuple[int, int, int]):
        super().__init__({"family": spec.group, "name": spec.name}, data)
        self.spec, self.image_shape = spec, shape

    def make_module(self) -> nn.Module:
        init = NVP_DEFAULT_INIT if self.spec.kind == "nvp" else MAF_DEFAULT_INIT
        return ImageFlow(self.spec.kind, self.image_shape, self.spec.num_bijectors, self.spec.hidden, "relu", init)


def build_spec(spec: FixedFlowSpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> FixedFlowTask:
    """The task of ``spec`` on its dataset (or the digits stand-in with ``offline_data="substitute"``)."""
    return build_fixed_image_task(lambda data, shape, _classes: FixedFlowTask(spec, data, shape), spec, data_dir,
                                  download, offline_data)


register_fixed_tasks(SPECS.values(), build_spec, kind=lambda spec: spec.group)
