"""The ``tasklab`` command: ``tasklab pipeline=<PIPELINE> index=<name> [overrides…]``.

Hydra composes ``entrance.yaml`` + ``index/<name>.yaml`` + the overrides; the pipeline named
by ``pipeline`` is looked up, checks its config and runs. Mistakes in what the user asked for
(unknown pipeline or index, a missing or invalid field, unreadable data) end with one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from taskset_lab.errors import TasklabError, os_error_line  # noqa: F401  (os_error_line: tests, pipelines)
from taskset_lab.overrides import explicit_overrides, override_key  # noqa: F401

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
    # shell completion: Hydra's own business
    if any(a.startswith(("--shell-completion", "-sc")) for a in argv):
        return
    dirs = [builtin_config_dir(), *_user_config_dirs(argv)]
    indexes = available_indexes(dirs)
    pipeline = _override_value(argv, "pipeline")
    if pipeline is not None and pipeline not in PIPELINES:
        alias = CLARENA_PIPELINES.get(pipeline)
        hint = f" (CLArena's {pipeline} is tasklab's pipeline={alias})" if alias else ""
        raise TasklabError(f"unknown pipeline '{pipeline}'{hint}; valid pipelines: {', '.join(pipeline_names())}")
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
    check_launcher(argv)


def check_launcher(argv: Sequence[str]) -> None:
    """A SLURM launcher needs SLURM here (``sbatch`` on PATH): say so before Hydra starts."""
    import shutil

    launcher = _override_value(argv, "hydra/launcher")
    if launcher == "submitit_slurm" and shutil.which("sbatch") is None:
        raise TasklabError("hydra/launcher=submitit_slurm needs SLURM (no `sbatch` on PATH); on one machine use "
                           "hydra/launcher=joblib (processes) or hydra/launcher=submitit_local")


def task_name_overrides(argv: Sequence[str]) -> list[str]:
    """``task=<a TaskSet task name>`` → ``task=named task.name=<name>``: every task the
    catalogue lists trains by its name (``task=<option>`` of the task group is left alone)."""
    dirs = [builtin_config_dir(), *_user_config_dirs(argv)]
    options = set(_groups(dirs).get("task", []))
    out: list[str] = []
    for arg in argv:
        if arg.startswith("task=") and arg[len("task="):] not in options and "," not in arg:
            name = arg[len("task="):]
            from taskset_lab.tasks.registry import get_task  # noqa: F401 (imports every family)
            from taskset_lab.tasks.registry import TASK_FAMILIES, FIXED_TASKS, parse_sampled_name

            if name in FIXED_TASKS or parse_sampled_name(name) is not None:
                out += ["task=named", f"task.name={name}"]
                continue
            if name not in TASK_FAMILIES:
                raise TasklabError(f"unknown task '{name}': task= takes a task config ({', '.join(sorted(options))}) "
                                   "or a task name from `tasklab pipeline=TASKS` (a fixed task or <family>_seed<N>)")
        out.append(arg)
    return out


def honour_explicit_list_size(cfg: Any) -> None:
    """A list search space's ``size`` given on the command line wins over a preset's
    ``num_configs`` (``debug=curves`` sets 8, which would shadow ``search_space.size=5``)."""
    from omegaconf import OmegaConf, open_dict

    keys = {override_key(o) for o in explicit_overrides() or []}
    size = OmegaConf.select(cfg, "search_space.size", default=None)
    if "search_space.size" in keys and "search_space.num_configs" not in keys and size is not None:
        with open_dict(cfg):
            cfg.search_space.num_configs = size


def check_devices(cfg: Any) -> None:
    """A GPU asked for where there is none: one line naming the field, before anything runs."""
    from omegaconf import OmegaConf

    from taskset_lab.errors import ConfigError

    wants = {"learner.device": OmegaConf.select(cfg, "learner.device", default=None),
             "trainer.accelerator": OmegaConf.select(cfg, "trainer.accelerator", default=None)}
    gpu = {k: v for k, v in wants.items() if isinstance(v, str) and v.split(":")[0] in ("cuda", "gpu")}
    if gpu:
        import torch

        if not torch.cuda.is_available():
            field, value = next(iter(gpu.items()))
            raise ConfigError(field, f"asks for {value!r} but no CUDA GPU is available here; use {field}="
                                     f"{'auto' if field == 'learner.device' else 'cpu'}")


def check_loggers(cfg: Any) -> None:
    """W&B needs a login or offline mode. CURVES writes a Parquet store and no per-step metrics
    of one model: it logs to W&B (a run per shard, pipelines/curves_dashboard.py) and any
    other logger there is refused, not ignored."""
    from omegaconf import OmegaConf

    from taskset_lab.errors import ConfigError

    loggers = OmegaConf.select(cfg, "logger", default=None)
    problem = wandb_login_problem(loggers)
    if problem:
        raise ConfigError("logger", problem)
    others = [name for name in (loggers or {}) if name != "wandb"]
    if OmegaConf.select(cfg, "pipeline", default=None) == "CURVES" and others:
        raise ConfigError("logger", f"CURVES logs to W&B only (a run per shard with the collection's tables; it "
                                    f"has no per-step metrics of one model for {', '.join(others)}); use "
                                    f"logger=wandb or logger=none")


def wandb_login_problem(loggers: Any) -> str | None:
    """Why a W&B logger could not start here, or None: online mode (``WANDB_MODE`` unset or
    ``online``) needs an API key (``WANDB_API_KEY`` or a ``wandb login`` entry in ~/.netrc),
    else wandb asks for one interactively or fails with a long traceback."""
    targets = [str(v.get("_target_", "")) for v in (loggers or {}).values() if hasattr(v, "get")]
    if not any(t.endswith("WandbLogger") for t in targets):
        return None
    if os.environ.get("WANDB_MODE", "online") in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_DISABLED"):
        return None
    if os.environ.get("WANDB_API_KEY"):
        return None
    import netrc

    try:
        rc = netrc.netrc(os.environ.get("NETRC") or None)
        if any(host in rc.hosts for host in ("api.wandb.ai", os.environ.get("WANDB_BASE_URL", "").split("//")[-1])):
            return None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return ("logger=wandb needs a W&B login: run `wandb login` (or set WANDB_API_KEY), or log offline with "
            "WANDB_MODE=offline (sync later with `wandb sync <run dir>`)")


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
        check_override_meaning(explicit_overrides())
        honour_explicit_list_size(cfg)
        pipeline = get_pipeline(str(name))(cfg)
        from taskset_lab.pipelines.hparam_list_config import check_divergence_factor

        for check in (check_loggers, check_devices, check_divergence_factor):
            with pipeline.problems:  # reported with the pipeline's own problems, all at once
                check(cfg)
        pipeline.sanity_check()
        return pipeline.run()
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
        msg = str(exc).splitlines()[0]
        raise TasklabError(f"config field '{key}': {msg}") from exc
    except OSError as exc:
        line = os_error_line(exc)
        if line is None:
            raise
        raise TasklabError(line) from exc


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors as one line (options listed, search paths dropped)."""
    lines: list[str] = []
    seen: set[str] = set()
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        options: list[str] = []
        for raw in str(e).splitlines():
            text = raw.strip()
            if not text or text.startswith(("full_key:", "object_type=", "reference_type=", "provider=",
                                             "Config search path", "Set the environment variable")):
                continue
            if raw.startswith("\t") and lines and lines[-1].endswith(":"):
                options.append(text)
                continue
            if options:
                lines[-1] += " " + ", ".join(options)
                options = []
            if text not in seen:
                seen.add(text)
                lines.append(text.rstrip(".") if not text.endswith(":") else text)
        if options and lines:
            lines[-1] += " " + ", ".join(options)
    line = "; ".join(lines) or type(exc).__name__
    hints = [hint for name, hint in CLARENA_GROUPS.items() if name in line]
    return line + "".join(f" ({hint})" for hint in hints)


#: CLArena's names that a CLArena user writes first, and what tasklab calls them
CLARENA_GROUPS = {"lightning_loggers": "tasklab's logger group is `logger` (logger=csv|tensorboard|wandb|none)",
                  "/callbacks/": "tasklab's callbacks group is `callbacks` (callbacks=default|none)"}
CLARENA_PIPELINES = {"MTL_EXPR": "MTL", "MTL_MAIN_EXPR": "MTL", "STL_EXPR": "MTL", "CL_MAIN_EXPR": "MTL"}
#: top-level keys users add with `+key=` that tasklab spells differently (the added key would do nothing)
RENAMED_KEYS = {"seed": "global_seed", "experiment": "index", "max_epochs": "total_steps", "epochs": "total_steps",
                "max_steps": "total_steps", "steps": "total_steps", "output": "output_dir",
                "lr": "optimizer.lr"}
#: top-level keys that may be added with `+` (read where present)
ADDABLE_KEYS = ("verbose",)


def check_override_meaning(overrides: Sequence[str] | None) -> None:
    """Refuse overrides that would do nothing: a new top-level key added with ``+`` that no
    pipeline reads (``+seed=42``, ``+experiment=foo``), and ``trainer.max_epochs`` (tasklab
    runs are bounded by ``total_steps``). Every problem is named in one line."""
    problems = []
    removed = {override_key(o) for o in overrides or [] if o.startswith("~")}  # `~key +key=...` replaces it
    for override in overrides or []:
        key = override_key(override)
        if override.startswith("+") and not override.startswith("++") and "." not in key and key not in ADDABLE_KEYS \
                and key not in removed:
            hint = f"use {RENAMED_KEYS[key]}=" if key in RENAMED_KEYS else "no tasklab pipeline reads it"
            problems.append(f"'{override}' adds a key that does nothing ({hint})")
        if key == "trainer.max_epochs":
            problems.append(f"'{override}': runs are bounded by steps, not epochs (use total_steps=<N>)")
    if problems:
        raise TasklabError("; ".join(problems))


def _is_user_config_error(exc: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(exc, (HydraException, OmegaConfBaseException))


def _multirun_job_dir() -> Path | None:
    """This job's own folder in a ``--multirun`` (Hydra's sweep dir / subdir), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir) if hc.mode == RunMode.MULTIRUN else None


def _hydra_entry(cfg: Any) -> Any:
    job_dir = _multirun_job_dir()
    if job_dir is not None:  # every job of a sweep in its own folder; a shared store stays shared
        from taskset_lab.sweep import run_sweep_job

        return run_sweep_job(cfg, job_dir, run_pipeline)
    try:
        run_pipeline(cfg)
    except TasklabError as exc:
        print(f"tasklab: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:  # what was finished is on disk; the pipeline logged where
        print("tasklab: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import taskset_lab

    parts = []
    for dist in ("hydra-core", "pytorch-lightning", "torch"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return f"tasklab (taskset_lab) {taskset_lab.__version__}" + (f" ({', '.join(parts)})" if parts else "")


def _groups(config_dirs: Sequence[Path]) -> dict[str, list[str]]:
    groups: dict[str, set[str]] = {}
    for d in config_dirs:
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            options = {p.stem for p in sub.glob("*.yaml")}
            if options:
                groups.setdefault(sub.name, set()).update(options)
    return {k: sorted(v) for k, v in sorted(groups.items())}


def help_text(argv: Sequence[str]) -> str:
    """``tasklab --help``: how to call tasklab, the pipelines, indexes and config groups."""
    from taskset_lab.pipelines import pipeline_names

    dirs = [builtin_config_dir(), *_user_config_dirs(argv)]
    groups = _groups(dirs)
    index = _override_value(argv, "index")
    lines = [
        "usage: tasklab pipeline=<PIPELINE> index=<name> [key=value ...] [--multirun]",
        "",
        "Runs an experiment: the index config picks every config group; overrides change it.",
        "",
        f"pipelines:      {', '.join(pipeline_names())}",
        f"index configs:  {', '.join(groups.pop('index', []))}",
        "config groups (group=option):",
        *[f"  {name}: {', '.join(options)}" for name, options in groups.items() if name != "index"],
        "",
        "overrides:      field=value (optimizer.lr=3e-3), group=option (debug=train), +field=value adds,",
        "                ~field removes; a,b,c with --multirun runs one job per value, each in its own folder",
        "TRAIN resume:   resume=true output_dir=<run folder> continues a run with its saved config",
        "",
        "tasklab --cfg job pipeline=<P> index=<name> [overrides]   print the composed config",
        "tasklab --version                                          versions",
        "tasklab --hydra-help                                       Hydra's own flags (launchers, sweeps)",
    ]
    if index is not None:
        lines += ["", f"the fields of index '{index}': tasklab --cfg job index={index}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import hydra

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("--help", "-h") for a in argv):
        print(help_text(argv))
        return
    if "--version" in argv:
        print(_version())
        return
    if _override_value(argv, "pipeline") == "TASKS" and _override_value(argv, "index") is None:
        argv.append("index=tasks")  # the catalogue needs no experiment of its own
    if _override_value(argv, "trial") == "aggregate" and _override_value(argv, "hydra.output_subdir") is None:
        argv.append("hydra.output_subdir=null")  # reading an archive (maybe read-only) adds no .hydra
    try:
        precheck(argv)
        argv = task_name_overrides(argv)
        config_dir = builtin_config_dir()
    except TasklabError as exc:
        print(f"tasklab: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    # A failing log handler (full disk, read-only folder) must not print tracebacks of its own.
    logging.raiseExceptions = False
    user_full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; we print one line
    sys.argv = [sys.argv[0] if sys.argv else "tasklab", *argv]
    from taskset_lab.engine.driver import apply_allocator_settings

    apply_allocator_settings()  # process-wide, so taken here: the engine's large temporaries stay in the heap
    entry = hydra.main(version_base="1.3", config_path=str(config_dir), config_name="entrance")(_hydra_entry)
    try:
        entry()
    except TasklabError as exc:  # a failed job of a multirun (its job.json and the sweep summary say which)
        print(f"tasklab: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:  # a multirun stopped by Ctrl-C: finished jobs are in the sweep summary
        print("tasklab: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - only config and file-system errors become one line
        line = hydra_error_line(exc) if _is_user_config_error(exc) else os_error_line(exc)
        if line is None or user_full_error:
            raise
        print(f"tasklab: error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
