"""Turning config groups into objects with ``hydra.utils.instantiate``, and config nodes into
the plain values and typed specs the library packages take, with clear errors."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any, Callable, Mapping, TypeVar

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from taskset_lab.errors import ConfigError, TasklabError


SpecT = TypeVar("SpecT")


def plain(node: Any) -> Any:
    """A config node as plain Python values (interpolations resolved); other values as they are."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def read_spec(cfg: DictConfig, cls: type[SpecT], keys: Mapping[str, str]) -> SpecT:
    """The dataclass ``cls`` with each field read from the config key ``keys[field]``; absent
    optional keys take the class's defaults. Every missing or unreadable key is reported at
    once (:class:`ConfigError` naming it); the class checks the values it is given."""
    from taskset_lab.errors import ConfigProblems

    missing, problems = object(), ConfigProblems()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = keys[f.name]
        with problems:
            try:
                value = OmegaConf.select(cfg, key, default=missing, throw_on_missing=True)
            except Exception as exc:  # noqa: BLE001 - a missing (???) or unresolvable value
                raise ConfigError(key, f"cannot be read: {exc}") from None
            if value is missing:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(key, "is required")
                continue
            values[f.name] = plain(value)
    problems.raise_all()
    return cls(**values)


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
    """The task of ``cfg.<field>``; its arguments reach the task builder as plain values."""
    return instantiate_field(cfg, field, _convert_="all")


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
