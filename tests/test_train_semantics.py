"""One training semantics (docs/design.md §One training semantics): TRAIN's Lightning run
writes the same curve as the population engine for the same config — for a converging and a
diverging config — because both use the same step, evaluation schedule and divergence rule."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose
from taskset_lab.cli import run_pipeline
from taskset_lab.engine import train_population
from taskset_lab.optim import get_optimizer_family
from taskset_lab.pipelines.building import build_task
from taskset_lab.tasks.base import SPLITS


def _hparams(cfg) -> dict:
    family = get_optimizer_family("nadamw")
    node = OmegaConf.to_container(cfg.optimizer, resolve=True)
    return {k: v for k, v in node.items() if k in family.hparam_names}


@pytest.mark.parametrize("lr,diverges", [(3e-3, False), (30.0, True)])
def test_train_curve_equals_the_engine_curve(tmp_path, lr, diverges):
    out = tmp_path / "run"
    cfg = compose("train_mlp_digits", ["debug=train", "+trainer.precision=64-true", f"optimizer.lr={lr}",
                                       "learner.divergence_factor=3.0", f"output_dir={out}"])
    summary = run_pipeline(cfg)
    curve = pd.read_csv(out / "curve.csv")

    task = build_task(cfg)  # as TRAIN builds it: plain values reach the task builder
    engine = train_population(task, "nadamw", [_hparams(cfg)], total_steps=int(cfg.total_steps),
                              eval_every=int(cfg.eval_every), eval_batches=int(cfg.learner.eval_batches),
                              replica=int(cfg.global_seed), dtype=torch.float64, divergence_factor=3.0)
    assert list(curve["step"]) == engine.steps
    for s in SPLITS:
        torch.testing.assert_close(torch.tensor(curve[s].to_numpy()), engine.losses[s][0],
                                   rtol=1e-9, atol=1e-12, equal_nan=True)
    dstep = int(engine.diverged_step[0])
    assert (dstep >= 0) == diverges
    assert summary["diverged_step"] == (dstep if diverges else None)
    if diverges:
        assert math.isnan(curve["test"].iloc[-1])
    else:
        assert curve["train"].iloc[-1] < curve["train"].iloc[0]
