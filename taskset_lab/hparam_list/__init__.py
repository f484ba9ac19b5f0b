"""Learned hparam lists: loss normalization, greedy list learning, search baselines,
held-out evaluation and reports (the library behind ``pipeline=HPARAM_LIST``)."""

from taskset_lab.hparam_list.baselines import (
    ConfigSpace,
    order_curve,
    random_search_expectation,
    random_search_weights,
    single_best_config,
    tpe_curves,
    tpe_search,
)
from taskset_lab.hparam_list.evaluate import (
    Evaluation,
    cv_folds,
    evaluate_hparam_list,
    evaluate_matrices,
    lofo_folds,
    speedup_table,
    summarize,
)
from taskset_lab.hparam_list.greedy import GreedyList, learn_greedy_list, learn_hparam_list, list_objective
from taskset_lab.hparam_list.normalize import (
    hparams_frame,
    loss_matrix,
    normalization_info,
    normalized_losses,
    task_families,
)
from taskset_lab.hparam_list.report import (
    build_hparam_list,
    format_table,
    log_to_wandb,
    read_hparam_list,
    write_hparam_list,
    write_report,
)

__all__ = [
    "ConfigSpace", "Evaluation", "GreedyList", "build_hparam_list", "cv_folds", "evaluate_hparam_list",
    "evaluate_matrices", "format_table", "hparams_frame", "learn_greedy_list", "learn_hparam_list",
    "list_objective", "lofo_folds", "log_to_wandb", "loss_matrix", "normalization_info",
    "normalized_losses", "order_curve", "random_search_expectation", "random_search_weights",
    "read_hparam_list", "single_best_config", "speedup_table", "summarize", "task_families",
    "tpe_curves", "tpe_search", "write_hparam_list", "write_report",
]
