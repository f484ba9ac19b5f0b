"""What every pipeline logs to W&B and TensorBoard: the shared pieces (docs/design.md §Dashboards).

A pipeline calls these with its composed config and its results:

* :func:`flat_config`: the resolved config as one flat mapping ``"a.b.c" -> value`` with
  numbers as numbers (W&B config, TensorBoard hparams); :func:`tensorboard_value` turns a
  value into what TensorBoard's HParams plugin accepts.
* :func:`run_name` / :func:`run_group`: a name that says what varies (the experiment and the
  explicit overrides that change what runs) and a group shared by a multirun's jobs
  (``<expr_name>/<sweep folder>``; ``<expr_name>`` for a single run).
* :func:`start_run`: a W&B run of its own (pipelines without a Lightning Trainer: CURVES,
  HPARAM_LIST, TRANSFER's aggregate, MTL's comparison), from the ``logger.wandb`` node;
  :func:`start_loggers`: the Lightning loggers with a W&B logger that fails to start left out.
  Either way a W&B failure is one warning line and the run goes on: results are never lost.
* :func:`log_table`, :func:`log_images`, :func:`log_artifact`, :func:`save_file`,
  :func:`set_summary`, :func:`finish_run`: results onto a run (no-ops with ``run=None``), each
  failure one warning line.
* :func:`wandb_run_of` / :func:`tensorboard_hparams`: the W&B run of a Lightning logger list,
  and the HParams record with real metric values (instead of Lightning's ``hp_metric=-1``).

Example (a pipeline of one's own)::

    from taskset_lab.pipelines import dashboards as dash

    run = dash.start_run(cfg, job_type="EVALUATE", config=dash.flat_config(cfg))
    dash.log_table(run, "evaluate/scores", scores_frame)       # a pandas frame
    dash.log_images(run, {"evaluate/profile": out / "profile.png"})
    dash.log_artifact(run, "scores", "evaluation", [out / "scores.csv"])
    dash.set_summary(run, {"evaluate/score": 0.87})
    dash.finish_run(run)
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import OmegaConf

from taskset_lab.overrides import explicit_overrides, override_key

log = logging.getLogger(__name__)

#: top-level config keys that say how a run is watched, not what it runs: left out of the
#: flat config (``logger`` holds save folders and the W&B settings themselves)
NOT_CONFIG = ("logger", "hydra")
#: overrides that say nothing about what a run computes (left out of run names)
NOT_VARYING = ("pipeline", "index", "output_dir", "resume", "logger", "hydra", "misc", "progress", "verbose",
               "debug", "results_dir", "curves_dir", "baseline_cache_dir", "torch_threads")
Scalar = bool | int | float | str | None


# -- config --------------------------------------------------------------------------------
def is_scalar(value: Any) -> bool:
    """A value W&B and TensorBoard take as it is (None, bool, int, float, str)."""
    return value is None or isinstance(value, (bool, int, float, str))


def flat_config(cfg: Any, prefix: str = "", skip: Sequence[str] = NOT_CONFIG) -> dict[str, Any]:
    """The resolved config as ``{"a.b.c": value}``: mappings flattened with dots, lists of
    scalars kept as lists, lists holding mappings flattened by index (``a.0.b``); numbers
    stay numbers. ``skip`` names top-level keys left out. A value that cannot be resolved
    (a missing ``???``) is recorded as the string ``"???"``."""
    if OmegaConf.is_config(cfg):
        node = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    else:
        node = cfg
    out: dict[str, Any] = {}
    _flatten(node, prefix, out, skip if not prefix else ())
    return out


def _flatten(node: Any, prefix: str, out: dict[str, Any], skip: Sequence[str]) -> None:
    if isinstance(node, Mapping):
        if not node and prefix:
            out[prefix] = "{}"
        for key, value in node.items():
            if str(key) in skip:
                continue
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out, ())
    elif isinstance(node, (list, tuple)):
        if all(is_scalar(v) for v in node):
            out[prefix] = list(node)
        else:
            for i, value in enumerate(node):
                _flatten(value, f"{prefix}.{i}", out, ())
    elif is_scalar(node):
        out[prefix] = node
    else:  # numpy scalars, paths, enums
        item = getattr(node, "item", None)
        out[prefix] = item() if callable(item) else str(node)


def tensorboard_value(value: Any) -> bool | int | float | str:
    """A config value as TensorBoard's HParams plugin takes it: lists and None as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if value is None:
        return "None"
    return json.dumps(value, default=str)


# -- names ---------------------------------------------------------------------------------
def _matches(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def varying_overrides(overrides: Sequence[str] | None = None, extra_not_varying: Sequence[str] = ()) -> list[str]:
    """The overrides (default: the command line's) that change what runs (``optimizer.lr=0.1``),
    ``+`` removed."""
    skip = (*NOT_VARYING, *extra_not_varying)
    given = explicit_overrides() if overrides is None else overrides
    return [o.lstrip("+") for o in given or [] if "=" in o and not _matches(override_key(o), skip)]


def run_name(cfg: Any, describe: Sequence[str] = (), suffix: str = "",
             overrides: Sequence[str] | None = None) -> str:
    """``<expr_name> <describe...> <overrides that change the run...><suffix>``: what varies,
    so the runs of a sweep tell themselves apart (a described key given again as an
    override is not repeated). ``overrides`` defaults to the command line's."""
    overrides = varying_overrides(overrides)
    keys = {o.split("=", 1)[0] for o in overrides}
    described = [d for d in describe if d.split("=", 1)[0] not in keys]
    return " ".join([str(OmegaConf.select(cfg, "expr_name", default="tasklab")), *described, *overrides]) + suffix


def multirun_folder() -> str | None:
    """The sweep folder's name in a Hydra ``--multirun`` job, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(str(HydraConfig.get().sweep.dir)).name
    except Exception:  # noqa: BLE001 - no Hydra run (a test, a notebook): a single run
        return None
    return None


def run_group(cfg: Any) -> str:
    """``logger.wandb.group`` when the user set one, else ``<expr_name>`` for a single run and
    ``<expr_name>/<sweep folder>`` for the jobs of one multirun (grouped together, apart from
    other multiruns of the same experiment)."""
    given = OmegaConf.select(cfg, "logger.wandb.group", default=None)
    if given:
        return str(given)
    name = str(OmegaConf.select(cfg, "expr_name", default="tasklab"))
    sweep = multirun_folder()
    return f"{name}/{sweep}" if sweep else name


def artifact_name(*parts: str) -> str:
    """A W&B artifact name (letters, digits, ``-``, ``_``, ``.``) from ``parts``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(str(p) for p in parts if p)).strip("-")[:120] or "artifact"


# -- runs ----------------------------------------------------------------------------------
def wandb_node(cfg: Any) -> dict[str, Any] | None:
    """The ``logger.wandb`` settings as plain values, or None when W&B is not asked for."""
    node = OmegaConf.select(cfg, "logger.wandb", default=None)
    if node is None:
        return None
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def warn_failed(what: str, exc: BaseException) -> None:
    """One warning line for a W&B call that failed; the run goes on."""
    log.warning("W&B: %s failed (%s); the run goes on, its results are in its output folder", what, _one_line(exc))


def start_run(cfg: Any, job_type: str, config: Mapping[str, Any] | None = None, name: str | None = None,
              group: str | None = None, save_dir: str | Path | None = None) -> Any:
    """A W&B run for ``cfg``'s ``logger.wandb`` settings (``project``, ``entity``, ``tags``,
    ``save_dir``, ``mode``...), named :func:`run_name` and grouped :func:`run_group` unless
    given; ``None`` when W&B is not configured or does not start (one warning line)."""
    node = wandb_node(cfg)
    if node is None:
        return None
    node.pop("_target_", None)
    kwargs: dict[str, Any] = {"project": node.pop("project", None), "entity": node.pop("entity", None),
                              "tags": node.pop("tags", None), "notes": node.pop("notes", None),
                              "mode": node.pop("mode", None)}
    folder = save_dir or node.pop("save_dir", None) or node.pop("dir", None) or OmegaConf.select(cfg, "output_dir")
    if folder is not None:
        Path(str(folder)).mkdir(parents=True, exist_ok=True)
    try:
        import wandb

        run = wandb.init(dir=str(folder) if folder is not None else None, job_type=job_type,
                         name=name or run_name(cfg), group=group or run_group(cfg),
                         config=dict(config or {}), reinit="create_new",
                         **{k: v for k, v in kwargs.items() if v is not None})
    except Exception as exc:  # noqa: BLE001 - no network, a bad key, a wandb bug: never lose the run
        warn_failed("starting the run", exc)
        return None
    return run


def start_loggers(loggers: list[Any]) -> list[Any]:
    """``loggers`` with every W&B logger started now; one that fails to start (``wandb.init``
    raises) is left out with one warning line, so training goes on with the others."""
    kept = []
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            try:
                logger.experiment  # noqa: B018 - starts the run (wandb.init)
            except Exception as exc:  # noqa: BLE001
                warn_failed("starting the run", exc)
                continue
        kept.append(logger)
    return kept


def wandb_run_of(loggers: Iterable[Any]) -> Any:
    """The W&B run of the first (started) W&B logger in ``loggers``, or None."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            try:
                return logger.experiment
            except Exception as exc:  # noqa: BLE001
                warn_failed("reaching the run", exc)
                return None
    return None


def finish_run(run: Any) -> None:
    """Close ``run`` (its files complete when this returns)."""
    if run is None:
        return
    try:
        run.finish()
    except Exception as exc:  # noqa: BLE001
        warn_failed("finishing the run", exc)


# -- results onto a run ---------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """A table cell W&B accepts: numpy scalars unwrapped, non-finite floats as None."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (list, tuple, dict, str)):
        try:
            value = item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, default=str)


def table_of(frame: Any) -> Any:
    """A pandas frame as a ``wandb.Table`` (columns kept, numbers as numbers, NaN/inf as null)."""
    import wandb

    columns = [str(c) for c in frame.columns]
    data = [[_json_safe(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return wandb.Table(columns=columns, data=data)


def log_table(run: Any, key: str, frame: Any) -> None:
    """Log a pandas frame as the W&B table ``key``."""
    if run is None:
        return
    try:
        run.log({key: table_of(frame)})
    except Exception as exc:  # noqa: BLE001
        warn_failed(f"logging table {key}", exc)


def log_images(run: Any, images: Mapping[str, str | Path]) -> None:
    """Log image files (plots) as W&B images, one key each; absent files are skipped."""
    if run is None:
        return
    try:
        import wandb

        found = {k: wandb.Image(str(p)) for k, p in images.items() if p is not None and Path(p).is_file()}
        if found:
            run.log(found)
    except Exception as exc:  # noqa: BLE001
        warn_failed("logging images", exc)


def log_artifact(run: Any, name: str, kind: str, paths: Iterable[str | Path], root: str | Path | None = None) -> None:
    """Log the existing files of ``paths`` as one artifact ``name`` of type ``kind`` (paths
    inside the artifact relative to ``root`` when given, else the file names)."""
    if run is None:
        return
    try:
        import wandb

        artifact = wandb.Artifact(artifact_name(name), type=kind)
        added = 0
        for p in paths:
            p = Path(p)
            if not p.is_file():
                continue
            inside = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else p.name
            artifact.add_file(str(p), name=inside)
            added += 1
        if added:
            run.log_artifact(artifact)
    except Exception as exc:  # noqa: BLE001
        warn_failed(f"logging artifact {name}", exc)


def save_file(run: Any, path: str | Path, name: str) -> None:
    """A copy of ``path`` in the run's ``files/`` as ``name`` (e.g. ``tasklab/config.yaml``;
    W&B keeps its own ``files/config.yaml`` for the run config)."""
    if run is None or not Path(path).is_file():
        return
    try:
        target = Path(run.dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        run.save(str(target), base_path=run.dir, policy="now")
    except Exception as exc:  # noqa: BLE001
        warn_failed(f"saving {name}", exc)


def set_summary(run: Any, values: Mapping[str, Any]) -> None:
    """Set summary values (the numbers runs are sorted by); non-finite floats are left out."""
    if run is None:
        return
    try:
        for key, value in values.items():
            value = _json_safe(value)
            if value is not None:
                run.summary[key] = value
    except Exception as exc:  # noqa: BLE001
        warn_failed("setting the summary", exc)


def line_plot(run: Any, key: str, frame: Any, x: str, y: str, series: str, title: str = "") -> None:
    """A W&B line plot ``key`` of ``y`` against ``x``, one line per value of ``series``."""
    if run is None or not len(frame):
        return
    try:
        import wandb

        xs, ys, keys = [], [], []
        for label, part in frame.groupby(series, sort=True):
            part = part.sort_values(x)
            xs.append([_json_safe(v) for v in part[x]])
            ys.append([_json_safe(v) for v in part[y]])
            keys.append(str(label))
        run.log({key: wandb.plot.line_series(xs=xs, ys=ys, keys=keys, title=title or key, xname=x)})
    except Exception as exc:  # noqa: BLE001
        warn_failed(f"logging plot {key}", exc)


# -- TensorBoard ------------------------------------------------------------------------------
def tensorboard_hparams(logger: Any, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
    """Write the HParams record of a Lightning ``TensorBoardLogger`` with real metric values:
    the metrics as scalars at ``step``, then the experiment and session summaries naming them
    (TensorBoard's HParams view ranks runs by them). NaN metrics are left out."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    values = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    params = {k: tensorboard_value(v) for k, v in hparams.items()}
    try:
        logger.log_metrics(values, step=step)
        experiment, start, end = hparams_summary(params, values)
        writer = logger.experiment._get_file_writer()  # noqa: SLF001 - Lightning's own way (log_hyperparams)
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        logger.experiment.flush()
    except Exception as exc:  # noqa: BLE001
        log.warning("TensorBoard: writing the hparams record failed (%s)", _one_line(exc))


def is_tensorboard(logger: Any) -> bool:
    return type(logger).__name__ == "TensorBoardLogger"


__all__ = ["artifact_name", "finish_run", "flat_config", "is_scalar", "is_tensorboard", "line_plot", "log_artifact",
           "log_images", "log_table", "run_group", "run_name", "save_file", "set_summary", "start_loggers",
           "start_run", "table_of", "tensorboard_hparams", "tensorboard_value", "varying_overrides",
           "wandb_node", "wandb_run_of", "warn_failed"]
