"""Optimizers: families (search space + update), schedules, batched forms, learned lists."""

from taskset_lab.optim.adam import ADAM1P, ADAM4P, ADAM8P, Adam1p, Adam4p, Adam8p
from taskset_lab.optim.base import BatchedOptimizer, FamilyOptimizer, OptimizerFamily
from taskset_lab.optim.hparam_list import hparam_list_entry, hparam_list_optimizer, load_hparam_list
from taskset_lab.optim.nadamw import NADAMW, NAdamW
from taskset_lab.optim.registry import family_names, get_family, sampled_optimizer
from taskset_lab.optim.schedules import linear_exponential_decay, virtual_step, warmup_constant_cosine

__all__ = [
    "ADAM1P", "ADAM4P", "ADAM8P", "NADAMW", "Adam1p", "Adam4p", "Adam8p", "NAdamW",
    "BatchedOptimizer", "FamilyOptimizer", "OptimizerFamily", "family_names", "get_family",
    "sampled_optimizer", "hparam_list_entry", "hparam_list_optimizer", "load_hparam_list",
    "linear_exponential_decay", "virtual_step", "warmup_constant_cosine",
]
