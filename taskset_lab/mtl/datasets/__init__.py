"""MTL datasets (LightningDataModules whose batches give every task its targets)."""

from taskset_lab.mtl.datasets.base import MTLDataModule, TensorMTLDataset
from taskset_lab.mtl.datasets.cityscapes import CityScapes
from taskset_lab.mtl.datasets.digits import DigitsMTL
from taskset_lab.mtl.datasets.multimnist import MultiMNIST
from taskset_lab.mtl.datasets.synthetic import GradNormSynthetic

__all__ = ["CityScapes", "DigitsMTL", "GradNormSynthetic", "MTLDataModule", "MultiMNIST", "TensorMTLDataset"]
