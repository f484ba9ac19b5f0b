"""The ``tasklab`` command: ``tasklab pipeline=<PIPELINE> index=<name> [overrides…]``.

Hydra composes ``entrance.yaml`` + ``index/<name>.yaml`` + the overrides; the pipeline named
by ``pipeline`` is looked up, checks its config and runs. Mistakes in what the user asked for
(unknown pipeline or index, a missing or invalid field, unreadable data) end with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from taskset_lab.errors import TasklabError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C (SIGINT)
log = logging.getLogger("taskset_lab")


def builtin_config_dir() -> Path:
    """The shipped configs: inside the installed package, or ``example_configs/`` in a checkout."""
    import taskset_lab

    here = Path(taskset_lab.__file__).resolve().parent
    for candidate in (here / "example_configs", here.parent / "example_configs"):
        if (candidate / "entrance.yaml").is_file():
            return candidate
    raise TasklabError(f"cannot find the shipped configs next to {here}; is the package installed?")


def _user_config_dirs(argv: Sequence[str]) -> list[Path]:
    dirs: list[Path] = []
    for i, arg in enumerate(argv):
        for flag in ("--config-dir", "-cd"):
            if arg == flag and i + 1 < len(argv):
                dirs.append(Path(argv[i + 1]))
            elif arg.startswith(flag + "="):
                dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def available_indexes(config_dirs: Sequence[Path]) -> list[str]:
    names: set[str] = set()
    for d in config_dirs:
        index_dir = d / "index"
        if index_dir.is_dir():
            names.update(p.stem for p in index_dir.glob("*.yaml"))
    return sorted(names)


def _override_value(argv: Sequence[str], key: str) -> str | None:
    value = None
    for arg in argv:
        for prefix in (f"{key}=", f"+{key}=", f"++{key}="):
            if arg.startswith(prefix):
                value = arg[len(prefix):]
    return value


def _index_pipeline(config_dirs: Sequence[Path], index: str) -> str | None:
    """The ``pipeline:`` an index config declares (read without composing)."""
    import yaml

    for d in reversed(list(config_dirs)):
        path = d / "index" / f"{index}.yaml"
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise TasklabError(f"index config {path} is not valid YAML: {exc}") from None
            value = data.get("pipeline") if isinstance(data, dict) else None
            return str(value) if value is not None else None
    return None


def precheck(argv: Sequence[str]) -> None:
    """Check ``pipeline=`` and ``index=`` before Hydra runs, for one clear line of error."""
    from taskset_lab.pipelines import PIPELINES, pipeline_names

    if any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--version") or a.startswith("--info=")
           for a in argv):
        return
    dirs = [builtin_config_dir(), *_user_config_dirs(argv)]
    indexes = available_indexes(dirs)
    pipeline = _override_value(argv, "pipeline")
    if pipeline is not None and pipeline not in PIPELINES:
        raise TasklabError(f"unknown pipeline '{pipeline}'; valid pipelines: {', '.join(pipeline_names())}")
    index = _override_value(argv, "index")
    if index is None:
        raise TasklabError(f"missing index=<name>; available index configs: {', '.join(indexes)}")
    if index not in indexes:
        raise TasklabError(f"unknown index '{index}'; available index configs: {', '.join(indexes)}")
    declared = _index_pipeline(dirs, index)
    if pipeline is None and declared is None:
        raise TasklabError(f"missing pipeline=<NAME>; valid pipelines: {', '.join(pipeline_names())}")
    if pipeline is not None and declared is not None and declared != pipeline:
        raise TasklabError(f"index '{index}' is written for pipeline {declared}, not {pipeline}")


def run_pipeline(cfg: Any) -> dict[str, Any]:
    """Look up ``cfg.pipeline``, check the config, run. Used by the CLI and by tests."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from taskset_lab.pipelines import get_pipeline

    try:
        name = OmegaConf.select(cfg, "pipeline", throw_on_missing=False)
        if name is None or name == "???":
            from taskset_lab.pipelines import pipeline_names

            raise TasklabError(f"missing pipeline=<NAME>; valid pipelines: {', '.join(pipeline_names())}")
        pipeline = get_pipeline(str(name))(cfg)
        pipeline.sanity_check()
        return pipeline.run()
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
        msg = str(exc).splitlines()[0]
        raise TasklabError(f"config field '{key}': {msg}") from exc


def _hydra_entry(cfg: Any) -> None:
    try:
        run_pipeline(cfg)
    except TasklabError as exc:
        print(f"tasklab: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:  # what was finished is on disk; the pipeline logged where
        print("tasklab: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def main(argv: Sequence[str] | None = None) -> None:
    import hydra

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        precheck(argv)
        config_dir = builtin_config_dir()
    except TasklabError as exc:
        print(f"tasklab: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.argv = [sys.argv[0] if sys.argv else "tasklab", *argv]
    entry = hydra.main(version_base="1.3", config_path=str(config_dir), config_name="entrance")(_hydra_entry)
    entry()


if __name__ == "__main__":
    main()
