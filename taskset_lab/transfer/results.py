"""Aggregating finished TRANSFER trials: best validation loss after k trials, per method.

"Best after k trials" of a method is the trial with the lowest final validation loss among
its first k trials (a diverged trial counts as +inf), reported with that trial's test loss,
as a practitioner who tries k settings and keeps the best on validation would see it.
Random search has several repetitions: their mean and standard deviation. A method whose
whole budget is one trial (``adam_default``, ``reference``) keeps that value for every k.
Only complete prefixes count: if trial 2 of a method is missing, k stops at 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from taskset_lab.transfer.methods import METHODS, SINGLE_TRIAL, TrialSpec

COLUMNS = ["pair", "method", "k", "trials_used", "repeats", "valid_loss", "test_loss", "valid_loss_std",
           "test_loss_std", "valid_accuracy", "test_accuracy", "diverged", "best_trial"]


def load_trials(output_dir: Path, damaged: list[str] | None = None) -> pd.DataFrame:
    """One row per finished trial of every pair under ``output_dir`` (``<pair>/trials/*.json``).
    A file that does not read as a trial record is left out; ``damaged`` (when given) gets
    one ``"<path>: <what is wrong>"`` per such file."""
    from taskset_lab.transfer.runner import read_trial_record

    rows = []
    for path in sorted(Path(output_dir).glob("*/trials/*.json")):
        record, problem = read_trial_record(path)
        if record is None:
            if damaged is not None:
                damaged.append(f"{path}: {problem}")
            continue
        rows.append({k: record.get(k) for k in ("pair", "method", "k", "repeat", "trial", "status", "valid", "test",
                                                 "valid_accuracy", "test_accuracy", "steps", "seconds",
                                                 "seconds_per_step", "diverged_step")})
    return pd.DataFrame(rows)


def uncounted_trials(trials: pd.DataFrame) -> list[str]:
    """One line per method run whose finished trials are not all counted because an earlier
    trial is missing (only complete prefixes count: best after k needs trials 0..k-1)."""
    out = []
    if trials.empty:
        return out
    for (pair, method, repeat), rep in trials.groupby(["pair", "method", "repeat"], sort=True):
        ks = set(int(k) for k in rep["k"])
        gap = next(n for n in range(len(ks) + 1) if n not in ks)
        later = sorted(TrialSpec(str(method), int(k), int(repeat)).name for k in ks if k > gap)
        if later:
            out.append(f"{pair}: {len(later)} finished {method} trial(s) not counted ({', '.join(later)}): "
                       f"{TrialSpec(str(method), gap, int(repeat)).name} is missing or damaged")
    return out


def _score(value: Any) -> float:
    v = float(value) if value is not None else math.nan
    return v if math.isfinite(v) else math.inf


def best_after_k(trials: pd.DataFrame, max_k: int | None = None,
                 single_trial: Iterable[str] = SINGLE_TRIAL) -> pd.DataFrame:
    """The ``transfer.csv`` table (columns :data:`COLUMNS`) from :func:`load_trials` rows."""
    if trials.empty:
        return pd.DataFrame(columns=COLUMNS)
    single = set(single_trial)
    rows: list[dict[str, Any]] = []
    for pair, part in trials.groupby("pair", sort=True):
        longest = int(part.groupby(["method", "repeat"])["k"].max().max()) + 1
        horizon = max_k or longest
        for method in [m for m in METHODS if m in set(part["method"])]:
            runs = part[part["method"] == method]
            prefixes = []
            for _, rep in runs.groupby("repeat"):
                rep = rep.set_index("k").sort_index()
                n = 0
                while n in rep.index:
                    n += 1
                prefixes.append(rep.loc[: n - 1])
            last = min(len(p) for p in prefixes)
            top = horizon if method in single and last >= 1 else last
            for k in range(1, top + 1):
                picks = []
                for rep in prefixes:
                    used = rep.iloc[: min(k, len(rep))]
                    scores = [_score(v) for v in used["valid"]]
                    best = int(np.argmin(scores))
                    picks.append({"valid": scores[best], "test": _score(used["test"].iloc[best]),
                                  "valid_accuracy": used["valid_accuracy"].iloc[best],
                                  "test_accuracy": used["test_accuracy"].iloc[best],
                                  "diverged": int((used["status"] == "diverged").sum()),
                                  "trial": used["trial"].iloc[best], "used": len(used)})
                valid = np.array([p["valid"] for p in picks])
                test = np.array([p["test"] for p in picks])
                rows.append({"pair": pair, "method": method, "k": k, "trials_used": picks[0]["used"],
                             "repeats": len(picks), "valid_loss": float(np.mean(valid)),
                             "test_loss": float(np.mean(test)),
                             "valid_loss_std": float(np.std(valid)) if len(picks) > 1 else 0.0,
                             "test_loss_std": float(np.std(test)) if len(picks) > 1 else 0.0,
                             "valid_accuracy": _mean_or_none([p["valid_accuracy"] for p in picks]),
                             "test_accuracy": _mean_or_none([p["test_accuracy"] for p in picks]),
                             "diverged": float(np.mean([p["diverged"] for p in picks])),
                             "best_trial": picks[0]["trial"] if len(picks) == 1 else ""})
    return pd.DataFrame(rows, columns=COLUMNS)


def _mean_or_none(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else None


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> Path:
    from taskset_lab.files import write_text_atomic

    return write_text_atomic(path, frame.to_csv(index=False))


def format_table(table: pd.DataFrame, ks: Sequence[int] = (1, 3, 10), metric: str = "test_loss") -> str:
    """Per pair: one line per method, ``metric`` of the best-on-valid trial after each k
    ("–" where a method has fewer trials; random search as mean ± std)."""
    lines = []
    name = {"test_loss": "test loss", "valid_loss": "valid loss"}.get(metric, metric)
    for pair, part in table.groupby("pair", sort=True):
        lines.append(f"{pair}: {name} of the best-on-valid trial after k trials (lower is better)")
        header = f"{'method':<14}" + "".join(f"{'k=' + str(k):>17}" for k in ks)
        lines += [header, "-" * len(header)]
        for method in [m for m in METHODS if m in set(part["method"])]:
            rows = part[part["method"] == method].set_index("k")
            cells = []
            for k in ks:
                if k not in rows.index:
                    cells.append(f"{'–':>17}")
                    continue
                row = rows.loc[k]
                value, std = float(row[metric]), float(row[f"{metric}_std"])
                text = "diverged" if not math.isfinite(value) else (
                    f"{value:.4f} ± {std:.4f}" if int(row["repeats"]) > 1 else f"{value:.4f}")
                cells.append(f"{text:>17}")
            lines.append(f"{method:<14}" + "".join(cells))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def summary_numbers(table: pd.DataFrame, ks: Sequence[int] = (1, 3, 10)) -> dict[str, Any]:
    """{pair: {method: {k: test_loss}}} for the run summary (JSON-able)."""
    out: dict[str, Any] = {}
    for row in table.itertuples():
        if int(row.k) in ks:
            out.setdefault(row.pair, {}).setdefault(row.method, {})[int(row.k)] = float(row.test_loss)
    return out


def plot_transfer(table: pd.DataFrame, path: Path, style: Mapping[str, tuple[str, str]] | None = None) -> Path:
    """valid and test loss of the best-on-valid trial vs k (log axis), one column per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    style = style or {"list": ("C0", "-"), "adam_default": ("C2", ":"), "adam_lr_grid": ("C3", "-."),
                      "random": ("C1", "--"), "reference": ("C4", ":")}
    pairs = sorted(table["pair"].unique())
    fig, axes = plt.subplots(2, max(len(pairs), 1), figsize=(5 * max(len(pairs), 1), 7), squeeze=False)
    for col, pair in enumerate(pairs):
        part = table[table["pair"] == pair]
        for row, metric in enumerate(("valid_loss", "test_loss")):
            ax = axes[row][col]
            for method in [m for m in METHODS if m in set(part["method"])]:
                g = part[part["method"] == method].sort_values("k")
                y = g[metric].to_numpy(dtype=float)
                y = np.where(np.isfinite(y), y, np.nan)
                color, ls = style.get(method, ("k", "-"))
                ax.plot(g["k"], y, ls, color=color, marker="o", ms=3, label=method)
                std = g[f"{metric}_std"].to_numpy(dtype=float)
                if (g["repeats"] > 1).any():
                    ax.fill_between(g["k"], y - std, y + std, color=color, alpha=0.2)
            ax.set_xscale("log")
            ks = sorted(part["k"].unique())
            ax.set_xticks(ks if len(ks) <= 10 else [k for k in ks if k in (1, 2, 3, 5, 10, 20, 50, 100)])
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("trials k")
            ax.set_ylabel(metric.replace("_", " ") + " (best on valid)")
            ax.set_title(pair)
            ax.grid(alpha=0.3, which="both")
        axes[0][col].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
