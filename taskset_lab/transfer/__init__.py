"""TRANSFER: does a learned hparam list help on large models (ResNet-50, a Transformer LM)?

Model/data pairs (LightningDataModules + a LightningModule), the methods compared (list
entries, Adam baselines, random search, the model's reference recipe), the trial runner,
and the aggregation into ``transfer.csv``, a plot and a table. The pipeline that drives them
is ``taskset_lab.pipelines.transfer`` (``tasklab pipeline=TRANSFER index=transfer_quickstart``).
"""

from taskset_lab.transfer.image_data import ImageDataModule
from taskset_lab.transfer.methods import METHODS, TrialSpec, parse_trial, plan_trials
from taskset_lab.transfer.models import TransformerLM, build_classifier
from taskset_lab.transfer.module import TransferModule
from taskset_lab.transfer.text_data import TextDataModule

__all__ = ["METHODS", "ImageDataModule", "TextDataModule", "TransferModule", "TransformerLM", "TrialSpec",
           "build_classifier", "parse_trial", "plan_trials"]
