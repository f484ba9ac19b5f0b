"""The command line's overrides, for the pipelines that must know what the user typed
(a resumed run refuses overrides that change what is trained; a curve store's settings
yield to no explicit override)."""

from __future__ import annotations


def explicit_overrides() -> list[str] | None:
    """The command line's overrides (Hydra's ``overrides.task``), or None outside the CLI."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def override_key(override: str) -> str:
    """``optimizer.lr`` of ``optimizer.lr=3``, ``+a.b=1``, ``~a.b``."""
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
