"""Turning config groups into objects with ``hydra.utils.instantiate``, with clear errors."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from taskset_lab.errors import ConfigError, TasklabError


def instantiate_field(cfg: DictConfig, field: str, **kwargs: Any) -> Any:
    """``instantiate(cfg.<field>)``; a failure becomes a ConfigError naming the field."""
    node = OmegaConf.select(cfg, field)
    if node is None:
        raise ConfigError(field, "missing")
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, TasklabError):
            raise cause from None
        detail = str(cause) if cause is not None else str(exc)
        raise ConfigError(field, detail.splitlines()[0] if detail else type(exc).__name__) from exc


def build_task(cfg: DictConfig, field: str = "task") -> Any:
    return instantiate_field(cfg, field)


def build_optimizer_factory(cfg: DictConfig, field: str = "optimizer") -> Callable:
    """The optimizer config as a factory ``params -> Optimizer`` (``_partial_`` config).

    It is called once here on a dummy parameter so bad hyperparameters are reported
    before training starts.
    """
    import torch

    factory = instantiate_field(cfg, field)
    if not callable(factory):
        raise ConfigError(field, "must build a factory (set _partial_: true)")
    try:
        factory([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(field, str(exc)) from exc
    return factory


def _build_named(cfg: DictConfig, group: str) -> list[Any]:
    node = OmegaConf.select(cfg, group)
    if not node:
        return []
    return [instantiate_field(cfg, f"{group}.{name}") for name in node]


def build_loggers(cfg: DictConfig) -> list[Any]:
    return _build_named(cfg, "logger")


def build_callbacks(cfg: DictConfig) -> list[Any]:
    return _build_named(cfg, "callbacks")


def finish_loggers(loggers: list[Any]) -> None:
    """Flush every logger; close W&B runs so their files are complete when the run returns."""
    for logger in loggers:
        logger.save()
        experiment = getattr(logger, "_experiment", None)
        if type(logger).__name__ == "WandbLogger" and experiment is not None:
            experiment.finish()


_CHATTY_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                   "lightning_fabric.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                   "pytorch_lightning.accelerators.cuda", "lightning.pytorch.accelerators.cuda")


def quiet_lightning(verbose: bool) -> None:
    """No tips, deprecation or accelerator lines from Lightning unless ``verbose=true``."""
    if verbose:
        return
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|is deprecated|LeafSpec|litlogger"
                                              r"|Tip:|exists and is not empty|dataloader is not resumable"
                                              r"|returned `None`|no pre-optimization state was saved).*")
