"""``--multirun`` jobs: each in its own folder, and one summary of the whole sweep.

Hydra gives every job of a sweep a folder ``<hydra.sweep.dir>/<hydra.sweep.subdir>``; the
job's ``output_dir`` becomes that folder, so two jobs never write into one place. The curve
store of shards (``num_shards > 1``) or of an explicit ``curves_dir=`` stays shared: shards
fill one store, each job writing only the parts it claimed.
Every job leaves ``job.json`` (its overrides, status, result) and rewrites
``<sweep dir>/sweep_summary.json`` and ``sweep_summary.csv`` from all the ``job.json`` files
there, under a lock, so the summary is complete after the last job whichever launcher ran them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from taskset_lab.errors import TasklabError
from taskset_lab.files import write_text_atomic

JOB_FILE = "job.json"
SUMMARY_JSON = "sweep_summary.json"
SUMMARY_CSV = "sweep_summary.csv"


def _scalars(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalar fields of a result (one level of nested dicts flattened to ``a.b``; long text left out)."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not prefix:
            out.update(_scalars(v, key + "."))
        elif v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 200):
            out[key] = v
    return out


def _atomic_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def run_sweep_job(cfg: DictConfig, job_dir: Path, run: Callable[[DictConfig], Any]) -> Any:
    """Run one job of a sweep in ``job_dir``; record it; re-raise a failure for Hydra to report."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    keys = {o.lstrip("+~").split("=", 1)[0] for o in hc.overrides.task}
    with open_dict(cfg):
        # Shards (num_shards > 1) and an explicit curves_dir share one store: resolve it against
        # the sweep's output_dir before that moves. Otherwise each job collects its own store
        # (jobs sweeping collection settings could not share one).
        shared = "curves_dir" in keys or int(OmegaConf.select(cfg, "num_shards", default=1) or 1) > 1
        curves_dir = OmegaConf.select(cfg, "curves_dir", default=None)
        if curves_dir is not None and shared:
            cfg.curves_dir = str(curves_dir)
        cfg.output_dir = str(job_dir)
    record: dict[str, Any] = {"num": int(hc.job.num), "overrides": list(hc.overrides.task),
                              "output_dir": str(job_dir), "status": "running", "error": None,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    sweep_dir = Path(str(hc.sweep.dir))
    try:
        result = run(cfg)
        record.update(status="ok", result=_scalars(result if isinstance(result, dict) else {}))
        return None  # results live in the job folder; nothing to pickle back to the launcher
    except TasklabError as exc:
        record.update(status="error", error=str(exc))
        raise TasklabError(f"job {record['num']} ({' '.join(record['overrides'])}): {exc}") from None
    except KeyboardInterrupt:
        record.update(status="interrupted")
        raise
    except Exception as exc:
        record.update(status="error", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        job_dir.mkdir(parents=True, exist_ok=True)
        _atomic_text(job_dir / JOB_FILE, json.dumps(record, indent=2, default=str))
        update_sweep_summary(sweep_dir)


def update_sweep_summary(sweep_dir: Path) -> dict[str, Any]:
    """Rewrite the sweep's summary from every ``job.json`` below ``sweep_dir`` (under a lock)."""
    import fcntl

    import pandas as pd

    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / ".sweep_summary.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jobs = []
        for path in sorted(sweep_dir.glob(f"*/{JOB_FILE}")):
            try:
                jobs.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        jobs.sort(key=lambda j: j.get("num", 0))
        counts = {s: sum(j.get("status") == s for j in jobs) for s in ("ok", "error", "interrupted", "running")}
        summary = {"sweep_dir": str(sweep_dir), "jobs": jobs, "counts": counts}
        _atomic_text(sweep_dir / SUMMARY_JSON, json.dumps(summary, indent=2, default=str))
        rows = [{"num": j.get("num"), "status": j.get("status"), "overrides": " ".join(j.get("overrides", [])),
                 "output_dir": j.get("output_dir"), "error": j.get("error"), **(j.get("result") or {})}
                for j in jobs]
        write_text_atomic(sweep_dir / SUMMARY_CSV, pd.DataFrame(rows).to_csv(index=False))
    return summary
