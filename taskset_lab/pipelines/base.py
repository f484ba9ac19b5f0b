"""The pipeline base class: one subclass per experiment type, looked up by name."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from taskset_lab.errors import ConfigError, ConfigProblems
from taskset_lab.files import write_text_atomic

log = logging.getLogger(__name__)


def require_positive_int(cfg: DictConfig, field: str, default: Any = None, nullable: bool = False) -> int | None:
    """``cfg.<field>`` as a positive int (``default`` where absent; ``None`` allowed if ``nullable``)."""
    value = OmegaConf.select(cfg, field, default=default)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, f"must be a positive integer{' or null' if nullable else ''}, got {value!r}")
    return value


#: seeds torch and Lightning take as given (a value outside makes Lightning draw a random one)
MAX_GLOBAL_SEED = 2**32 - 1


def check_global_seed(cfg: DictConfig) -> None:
    """``global_seed``, where set, is an integer in [0, 2**32 - 1]."""
    value = OmegaConf.select(cfg, "global_seed", default=None)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GLOBAL_SEED:
        raise ConfigError("global_seed", f"must be an integer in [0, {MAX_GLOBAL_SEED}], got {value!r}")


class Pipeline:
    """Validate the composed config (``sanity_check``), then ``run`` it.

    Subclasses list the top-level fields they need in ``required_fields`` (dotted paths are
    allowed) and add their own checks in ``check``. Everything a run writes goes under
    ``self.output_dir``.
    """

    name: ClassVar[str] = ""
    required_fields: ClassVar[tuple[str, ...]] = ("expr_name", "output_dir")

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        #: problems found so far; a check in a ``with self.problems:`` block that raises a
        #: ConfigError is recorded and the next block runs, so one run reports them all
        self.problems = ConfigProblems()

    # -- validation -------------------------------------------------------------------
    def sanity_check(self) -> None:
        """Every missing required field at once, then every problem ``check`` finds at once
        (one ConfigError, or ConfigErrors listing them)."""
        for field in self.required_fields:
            value = OmegaConf.select(self.cfg, field, default=None, throw_on_missing=False)
            if value is None or (isinstance(value, str) and value == "???"):
                with self.problems:
                    raise ConfigError(field, f"required by pipeline {self.name} but missing")
        self.problems.raise_all()  # the checks below read the required fields
        with self.problems:
            check_global_seed(self.cfg)
        with self.problems:
            self.check()
        self.problems.raise_all()

    def check(self) -> None:
        """Pipeline-specific checks; raise :class:`ConfigError` naming the field. Checks
        that do not depend on each other go in their own ``with self.problems:`` block so
        that all their problems are reported together."""

    def require_positive_int(self, field: str) -> int:
        return require_positive_int(self.cfg, field)

    # -- running ----------------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        return Path(str(self.cfg.output_dir))

    def save_config(self, name: str = "config.yaml") -> Path:
        """Write the resolved config next to the results (``config.yaml`` by default), atomically."""
        return write_text_atomic(self.output_dir / name, OmegaConf.to_yaml(self.cfg, resolve=True))

    def write_json(self, name: str, payload: Any) -> Path:
        """Write ``payload`` as JSON under ``output_dir``, atomically."""
        return write_text_atomic(self.output_dir / name, json.dumps(payload, indent=2, sort_keys=True, default=str))

    def run(self) -> dict[str, Any]:
        raise NotImplementedError
