"""The collection spec: everything a curve collection needs to know besides its tasks and store.

One typed object instead of 19 loose arguments: CURVES and HPARAM_LIST build it from the
composed config (``taskset_lab.pipelines.curves.collection_spec`` reads each field from
the key :attr:`CollectionSpec.CONFIG_KEYS` names; the spec checks every field and names the
config key of a bad one), and :func:`taskset_lab.curves.collect.collect_curves` takes it
as it is. The defaults live here and only here; the YAML groups show the same values to the
user (a test keeps ``learner/population.yaml`` equal to them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from taskset_lab.engine.state import DEFAULT_DIVERGENCE_FACTOR
from taskset_lab.errors import ConfigError

ENGINE_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class CollectionSpec:
    """How to collect curves: which optimizer configs, how long, where, in what precision.

    Config ``i`` of a collection has the hparams ``family.sample(config_seed_offset + i)``;
    ``chunk_size`` configs make one work item (one store part, the unit of sharding and
    resume); ``max_population`` caps the configs in one vmapped step (None: as many as fit).
    """

    optimizer: str
    num_configs: int
    total_steps: int
    eval_every: int
    config_seed_offset: int = 0
    replicas: int = 1
    eval_batches: int = 4
    shard_index: int = 0
    num_shards: int = 1
    chunk_size: int = 256
    max_population: int | None = None
    compile: Any = "auto"  # torch.compile the engine's step: auto (when it pays), true, false
    device: str = "auto"
    dtype: str = "float32"
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR
    data_dir: str | None = None
    download: bool = False
    offline_data: str = "error"
    progress: bool = True

    #: where each field is read from in a composed CURVES / HPARAM_LIST config
    CONFIG_KEYS: ClassVar[dict[str, str]] = {
        "optimizer": "search_space.family",
        "num_configs": "search_space.num_configs",
        "total_steps": "total_steps",
        "eval_every": "eval_every",
        "config_seed_offset": "search_space.seed_offset",
        "replicas": "replicas",
        "eval_batches": "learner.eval_batches",
        "shard_index": "shard_index",
        "num_shards": "num_shards",
        "chunk_size": "learner.chunk_size",
        "max_population": "learner.max_population",
        "compile": "learner.compile",
        "device": "learner.device",
        "dtype": "learner.dtype",
        "divergence_factor": "learner.divergence_factor",
        "data_dir": "misc.data_dir",
        "download": "misc.download",
        "offline_data": "misc.offline_data",
        "progress": "progress",
    }

    def __post_init__(self) -> None:
        self.validate()

    def part_settings(self, optimizer: str | None = None) -> dict[str, Any]:
        """The settings that decide what a store's parts hold (``curves.store.PART_SETTINGS``),
        as its manifest records them; ``optimizer`` is the resolved search-space name where the
        spec names a list file."""
        from taskset_lab.curves.store import PART_SETTINGS

        values = {name: getattr(self, name) for name in PART_SETTINGS}
        values["divergence_factor"] = float(self.divergence_factor)
        if optimizer is not None:
            values["optimizer"] = optimizer
        return values

    # -- checking ---------------------------------------------------------------------
    def validate(self) -> None:
        """Every field in range; all problems at once (ConfigError naming each config key)."""
        from taskset_lab.engine.driver import compile_mode
        from taskset_lab.errors import ConfigProblems
        from taskset_lab.optim.search_space import search_space_problem
        from taskset_lab.tasks.registry import OFFLINE_DATA

        key, problems = self.CONFIG_KEYS, ConfigProblems()
        for name in ("num_configs", "total_steps", "eval_every", "replicas", "eval_batches", "num_shards",
                     "chunk_size"):
            with problems:
                _positive_int(key[name], getattr(self, name))
        with problems:
            if self.max_population is not None:
                _positive_int(key["max_population"], self.max_population, nullable=True)
        with problems:
            compile_mode(self.compile)  # ConfigError naming learner.compile
        with problems:
            if _not_int(self.config_seed_offset) or self.config_seed_offset < 0:
                raise ConfigError(key["config_seed_offset"],
                                  f"must be an integer >= 0, got {self.config_seed_offset!r}")
        ints = not problems.errors  # the checks between fields read valid integers
        with problems:
            if ints and self.eval_every > self.total_steps:
                raise ConfigError("eval_every", f"({self.eval_every}) is larger than total_steps ({self.total_steps})")
        with problems:
            if ints and (_not_int(self.shard_index) or not 0 <= self.shard_index < self.num_shards):
                raise ConfigError("shard_index", f"must be in [0, num_shards={self.num_shards}), got {self.shard_index!r}")
        with problems:
            problem = search_space_problem(self.optimizer, self.num_configs) if ints else None  # a family or a list
            if problem:
                raise ConfigError(key["optimizer"], problem)
        with problems:
            if self.dtype not in ENGINE_DTYPES:
                raise ConfigError(key["dtype"], f"must be one of {ENGINE_DTYPES}, got {self.dtype!r}")
        with problems:
            if not isinstance(self.device, str) or not self.device:
                raise ConfigError(key["device"], f"must be 'auto' or a torch device name, got {self.device!r}")
            if self.device != "auto":
                try:
                    torch.device(self.device)
                except (RuntimeError, TypeError) as exc:
                    raise ConfigError(key["device"], f"must be 'auto' or a torch device name: {exc}") from None
        with problems:
            if isinstance(self.divergence_factor, bool) or not isinstance(self.divergence_factor, (int, float)) \
                    or not self.divergence_factor > 0:
                raise ConfigError(key["divergence_factor"], f"must be a number > 0, got {self.divergence_factor!r}")
        with problems:
            if self.offline_data not in OFFLINE_DATA:
                raise ConfigError(key["offline_data"], f"must be one of {OFFLINE_DATA}, got {self.offline_data!r}")
        for name in ("download", "progress"):
            with problems:
                if not isinstance(getattr(self, name), bool):
                    raise ConfigError(key[name], f"must be true or false, got {getattr(self, name)!r}")
        problems.raise_all()

    # -- derived values ----------------------------------------------------------------
    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def torch_device(self) -> torch.device:
        """``device``, with ``auto`` meaning cuda when available, else cpu."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def config_seeds(self, config_ids: Any) -> list[int]:
        """The sampler seeds of configs ``config_ids`` (``config_seed_offset + id``; for a list,
        each entry's config id in its source space, see ``SearchSpace.config_seed``)."""
        from taskset_lab.optim.search_space import resolve_search_space

        space = resolve_search_space(self.optimizer, self.config_seed_offset)
        return [space.config_seed(int(i)) for i in config_ids]


def _not_int(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _positive_int(field: str, value: Any, nullable: bool = False) -> None:
    if _not_int(value) or value < 1:
        raise ConfigError(field, f"must be a positive integer{' or null' if nullable else ''}, got {value!r}")
