"""Optimizers: families (search space + update), schedules, batched forms, released configs, lists."""

from taskset_lab.optim.adam import ADAM1P, ADAM4P, Adam1p, Adam4p
from taskset_lab.optim.adam8p import ADAM6P, ADAM8P, Adam6p, Adam8p
from taskset_lab.optim.base import BatchedOptimizer, FamilyOptimizer, OptimizerFamily
from taskset_lab.optim.hparam_list import (
    builtin_list_names,
    hparam_list_entry,
    hparam_list_optimizer,
    load_hparam_list,
)
from taskset_lab.optim.learned import LearnedOptimizer, learned_optimizer_names
from taskset_lab.optim.nadamw import NADAMW, NAdamW
from taskset_lab.optim.registry import optimizer_family_names, get_optimizer_family, sampled_optimizer
from taskset_lab.optim.released import released_optimizer_config, released_hparams
from taskset_lab.optim.schedules import opt_list_cosine_lr, taskset_decay_lr
from taskset_lab.optim.search_space import SearchSpace, resolve_search_space

__all__ = [
    "ADAM1P", "ADAM4P", "ADAM6P", "ADAM8P", "NADAMW", "Adam1p", "Adam4p", "Adam6p", "Adam8p", "NAdamW",
    "BatchedOptimizer", "FamilyOptimizer", "LearnedOptimizer", "learned_optimizer_names", "OptimizerFamily", "SearchSpace", "builtin_list_names",
    "optimizer_family_names", "get_optimizer_family", "hparam_list_entry", "hparam_list_optimizer", "load_hparam_list",
    "opt_list_cosine_lr", "released_optimizer_config", "released_hparams", "resolve_search_space",
    "sampled_optimizer", "taskset_decay_lr",
]
