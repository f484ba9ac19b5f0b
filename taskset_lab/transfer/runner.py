"""Running one TRANSFER trial with a Lightning Trainer, and skipping it when already done.

Layout of a results folder (``<output_dir>/<pair>/``)::

    setup.json                     what every trial here shares (pair, steps, seed) + its hash
    trials/<trial>.json            one finished trial (written atomically, last)
    trials/<trial>/curve.csv       its loss curve; Lightning loggers write under trials/<trial>/

    claims/<trial>.claim           the process running that trial (single-device runs)

A trial whose ``.json`` exists and reads as a trial record is finished and skipped; a killed
run leaves at most a ``.tmp`` or a trial folder without ``.json``, which the next run redoes.
A damaged ``.json`` (not JSON, not a record, a field of the wrong type) is named in a warning,
moved aside to ``<trial>.json.damaged`` and redone. Two processes on one folder share the
trials: each runs only the trials it claims (:mod:`taskset_lab.files`; a killed holder's claim
is free at once). Every rank of a DDP run executes the same trials in the same order (no
claims then); only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from taskset_lab import files
from taskset_lab.errors import ConfigError
from taskset_lab.pipelines import dashboards as dash
from taskset_lab.pipelines.building import build_callbacks, build_loggers, finish_loggers, instantiate_field
from taskset_lab.transfer.methods import TrialSpec, optimizer_spec
from taskset_lab.transfer.module import DIVERGENCE_MULTIPLE, TransferModule

log = logging.getLogger(__name__)
_MACHINE_KEYS = ("root", "data_dir", "num_workers", "download")  # where data lives, not what it is


#: what a trial record must hold, and of which type, to be counted
TRIAL_FIELDS: dict[str, tuple[type, ...]] = {"pair": (str,), "method": (str,), "k": (int,), "repeat": (int,),
                                             "trial": (str,), "status": (str,), "valid": (int, float),
                                             "test": (int, float)}
TRIAL_STATUSES = ("done", "diverged")
CLAIMS_DIR = "claims"


def write_json_atomic(path: Path, payload: Any) -> None:
    files.write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def read_trial_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a readable trial record, ``(None, what is wrong)`` otherwise."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return None, "not text (binary bytes)"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(record, dict):
        return None, f"holds a JSON {type(record).__name__}, not a trial record"
    missing = [k for k in TRIAL_FIELDS if k not in record]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    for key, kinds in TRIAL_FIELDS.items():
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            return None, f"'{key}' is {value!r}, not {'a number' if float in kinds else kinds[0].__name__}"
    if record["status"] not in TRIAL_STATUSES:
        return None, f"'status' is {record['status']!r}, not one of {', '.join(TRIAL_STATUSES)}"
    name = TrialSpec(record["method"], record["k"], record["repeat"]).name
    if name != path.stem:
        return None, f"records trial {name!r}, not {path.stem!r}"
    return record, None


def is_rank_zero() -> bool:
    from pytorch_lightning.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0)) == 0


def setup_record(cfg: DictConfig, pair_name: str) -> dict[str, Any]:
    """What all trials of a pair share; trials of a different setup never mix in one folder."""
    pair = OmegaConf.to_container(cfg.pairs[pair_name], resolve=True)
    assert isinstance(pair, dict)
    data = {k: v for k, v in dict(pair.get("data", {})).items() if k not in _MACHINE_KEYS}
    record = {"pair": pair_name, "kind": pair.get("kind"), "data": data, "model": pair.get("model"),
              "divergence_multiple": pair.get("divergence_multiple"), "total_steps": int(cfg.total_steps),
              "eval_every": int(cfg.eval_every), "global_seed": int(cfg.global_seed)}
    record["hash"] = setup_hash(record)
    return record


def setup_hash(record: Mapping[str, Any]) -> str:
    """The hash of a setup record (its fields but ``hash``)."""
    fields = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _as_recorded_before_the_rename(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` as setups recorded the divergence multiple before it had its own name
    (``divergence_factor``), so folders of those setups resume."""
    old = {("divergence_factor" if k == "divergence_multiple" else k): v for k, v in record.items() if k != "hash"}
    return {**old, "hash": setup_hash(old)}


def check_setup(results: Path, record: dict[str, Any]) -> None:
    """Write ``setup.json``, or check that the one there describes the same setup."""
    path = results / "setup.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if "divergence_factor" in old:
            record = _as_recorded_before_the_rename(record)
        if old.get("hash") != record["hash"]:
            changed = sorted(k for k in record if k != "hash" and old.get(k) != record[k])
            raise ConfigError("output_dir", f"{results} holds trials of another setup ({', '.join(changed)} "
                                            "differ); choose a new output_dir")
    elif is_rank_zero():
        write_json_atomic(path, record)


def trial_path(results: Path, spec: TrialSpec) -> Path:
    return results / "trials" / f"{spec.name}.json"


def finished_trial(results: Path, spec: TrialSpec, opt: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded result of ``spec`` if it finished with the same optimizer, else None."""
    path = trial_path(results, spec)
    if not path.is_file():
        return None
    record, problem = read_trial_record(path)
    if record is None:  # not ours to trust: kept aside, redone
        aside = path.with_name(path.name + ".damaged")
        try:
            os.replace(path, aside)
            where = f"moved to {aside}"
        except OSError:
            where = "left in place"
        log.warning("damaged trial file %s: %s; %s, the trial is run again", path, problem, where)
        return None

    def same(o: Any) -> Any:  # the list's hparams decide, not the path it was read from
        return {k: v for k, v in json.loads(json.dumps(o, default=str)).items() if k != "list"}

    if same(record.get("optimizer") or {}) != same(opt):
        raise ConfigError("output_dir", f"{path} was run with another optimizer ({record.get('optimizer')}); "
                                        "choose a new output_dir")
    return record


def _trial_config(cfg: DictConfig, trial_dir: Path, pair_name: str, spec: TrialSpec) -> DictConfig:
    """The config with ``output_dir`` pointing at the trial folder (loggers, callbacks and the
    trainer's ``default_root_dir`` follow it) and W&B runs named after the trial."""
    trial_cfg = cfg.copy()
    with open_dict(trial_cfg):
        trial_cfg.output_dir = str(trial_dir)
        wandb = OmegaConf.select(trial_cfg, "logger.wandb")
        if wandb is not None:
            wandb.name = f"{cfg.expr_name}/{pair_name}/{spec}"
            wandb.group = f"{dash.run_group(cfg)}/{pair_name}"  # a pair's trials together (a multirun's too)
    return trial_cfg


def trial_hparams(cfg: DictConfig, pair_name: str, spec: TrialSpec, opt: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config for the loggers: the flat composed config, the trial (pair, method, k,
    repeat) and its optimizer's settings (``trial.optimizer.<key>``), numbers as numbers."""
    hp = dash.flat_config(cfg)
    hp.update({"trial.pair": pair_name, "trial.method": spec.method, "trial.k": int(spec.k),
               "trial.repeat": int(spec.repeat), "trial.name": str(spec)})
    hp.update(dash.flat_config(json.loads(json.dumps(dict(opt), default=str)), prefix="trial.optimizer"))
    return hp


def log_trial_results(loggers: list[Any], hparams: Mapping[str, Any], final: Mapping[str, Any], diverged: bool,
                      steps: int, seconds: float) -> None:
    """The trial's final losses where trials are compared: W&B summary, TensorBoard HParams metrics."""
    metrics = {f"final/{k}": float(v) for k, v in final.items()
               if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics.update({"diverged": float(diverged), "steps": float(steps), "seconds": float(seconds)})
    for logger in loggers:
        if dash.is_tensorboard(logger):
            dash.tensorboard_hparams(logger, hparams, metrics, step=steps)
    dash.set_summary(dash.wandb_run_of(loggers), metrics)


def _final_row(curve: list[dict[str, float]]) -> dict[str, float]:
    return dict(curve[-1]) if curve else {}


def shares_work(cfg: DictConfig) -> bool:
    """Whether trials are claimed (one device, one process per run: another run on the same
    folder takes the other trials); a multi-device run's ranks follow one plan instead."""
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    return devices in (1, "1") and nodes in (1, None) and int(os.environ.get("WORLD_SIZE", "1")) == 1


def claim_path(results: Path, spec: TrialSpec) -> Path:
    return results / CLAIMS_DIR / f"{spec.name}.claim"


def run_trial(cfg: DictConfig, pair_name: str, spec: TrialSpec, results: Path) -> dict[str, Any] | None:
    """Train ``spec`` on pair ``pair_name`` (or return its recorded result); None when another
    process is running it (see the module doc)."""
    pair = cfg.pairs[pair_name]
    opt = optimizer_spec(spec, cfg.methods, OmegaConf.select(cfg, "list"),
                         OmegaConf.to_container(pair.reference, resolve=True) if "reference" in pair else None)
    done = finished_trial(results, spec, opt)
    if done is not None:
        log.info("%s %s: finished earlier, skipped", pair_name, spec)
        return done
    if not shares_work(cfg):
        return _train_trial(cfg, pair_name, spec, results, opt)
    claim = claim_path(results, spec)
    if not files.claim(claim, done=lambda: trial_path(results, spec).is_file()):
        done = finished_trial(results, spec, opt)  # finished by the holder just before us
        if done is None:
            log.info("%s %s: being run by another process, skipped", pair_name, spec)
        return done
    try:
        return _train_trial(cfg, pair_name, spec, results, opt)
    finally:
        files.release(claim)


def _train_trial(cfg: DictConfig, pair_name: str, spec: TrialSpec, results: Path,
                 opt: dict[str, Any]) -> dict[str, Any]:
    pair = cfg.pairs[pair_name]
    total_steps, eval_every = int(cfg.total_steps), int(cfg.eval_every)
    trial_dir = results / "trials" / spec.name
    trial_cfg = _trial_config(cfg, trial_dir, pair_name, spec)
    pl.seed_everything(int(cfg.global_seed), workers=True, verbose=False)  # same init and data for all
    datamodule = instantiate_field(cfg, f"pairs.{pair_name}.data")
    model = instantiate_field(cfg, f"pairs.{pair_name}.model")
    module = TransferModule(model, str(pair.kind), opt, total_steps,
                            divergence_multiple=OmegaConf.select(pair, "divergence_multiple",
                                                                 default=DIVERGENCE_MULTIPLE),
                            divergence_bound=OmegaConf.select(pair, "divergence_bound", default=None))
    loggers = dash.start_loggers(build_loggers(trial_cfg))  # a W&B run that cannot start: one line, no W&B
    hparams = trial_hparams(cfg, pair_name, spec, opt)
    for logger in loggers:
        try:
            logger.log_hyperparams(hparams)
        except Exception as exc:  # noqa: BLE001 - a tracker's failure never stops a trial
            dash.warn_failed(f"{type(logger).__name__}: logging the hparams", exc)
    callbacks = build_callbacks(trial_cfg)
    accumulate = int(OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1) or 1)
    checkpointing = any(type(c).__name__ == "ModelCheckpoint" for c in callbacks)
    try:
        trainer = instantiate(trial_cfg.trainer, logger=loggers or False, callbacks=callbacks,
                              max_steps=total_steps, val_check_interval=eval_every * accumulate,
                              check_val_every_n_epoch=None, num_sanity_val_steps=0,
                              enable_checkpointing=checkpointing)
    except Exception as exc:  # a bad trainer field (e.g. unknown strategy) is the user's to fix
        cause = exc.__cause__ or exc
        raise ConfigError("trainer", str(cause).splitlines()[0] if str(cause) else type(cause).__name__) from exc
    log.info("%s %s: %s for %d steps -> %s", pair_name, spec, opt.get("family") or opt["kind"], total_steps,
             trial_dir)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule)
    except SystemExit:  # Lightning turns Ctrl-C into a graceful shutdown and exit(1)
        if not trainer.interrupted:
            raise
        finish_loggers(loggers)
        log.warning("interrupted during %s %s; finished trials are kept in %s and skipped when the same "
                    "command runs again", pair_name, spec, results)
        raise KeyboardInterrupt from None
    if module.diverged_step is None and (not module.curve or module.curve[-1]["step"] < trainer.global_step):
        trainer.validate(module, datamodule=datamodule, verbose=False)  # the end of training is evaluated
    seconds = time.perf_counter() - start
    steps = int(trainer.global_step)
    final = _final_row(module.curve)
    diverged = module.diverged_step is not None
    log_trial_results(loggers, hparams, final, diverged, steps, seconds)
    finish_loggers(loggers)
    record = {"pair": pair_name, "method": spec.method, "k": spec.k, "repeat": spec.repeat, "trial": str(spec),
              "optimizer": json.loads(json.dumps(opt, default=str)), "status": "diverged" if diverged else "done",
              "diverged_step": module.diverged_step, "steps": steps, "seconds": seconds,
              "seconds_per_step": seconds / max(steps, 1), "world_size": int(trainer.world_size),
              "valid": math.inf if diverged else final.get("valid", math.nan),
              "test": math.inf if diverged else final.get("test", math.nan),
              "valid_accuracy": None if diverged else final.get("valid_accuracy"),
              "test_accuracy": None if diverged else final.get("test_accuracy"),
              "last_finite": final}
    if trainer.is_global_zero:
        trial_dir.mkdir(parents=True, exist_ok=True)
        files.write_text_atomic(trial_dir / "curve.csv", pd.DataFrame(module.curve).to_csv(index=False))
        write_json_atomic(trial_path(results, spec), record)  # last: marks the trial finished
    if diverged:
        log.warning("%s %s diverged at step %d (loss NaN/inf or above %.4g)", pair_name, spec,
                    module.diverged_step, module.bound if module.bound is not None else math.nan)
    return record
