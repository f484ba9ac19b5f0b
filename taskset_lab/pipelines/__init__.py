"""Pipelines by name. ``tasklab pipeline=<NAME>`` looks the class up here."""

from __future__ import annotations

import importlib

from taskset_lab.errors import TasklabError
from taskset_lab.pipelines.base import Pipeline

# name -> "module:Class"; imported lazily so `tasklab` starts fast.
PIPELINES: dict[str, str] = {
    "TRAIN": "taskset_lab.pipelines.train:TrainPipeline",
    "CURVES": "taskset_lab.pipelines.curves:CurvesPipeline",
    "HPARAM_LIST": "taskset_lab.pipelines.hparam_list:HparamListPipeline",
}


def pipeline_names() -> list[str]:
    return sorted(PIPELINES)


def get_pipeline(name: str) -> type[Pipeline]:
    if name not in PIPELINES:
        raise TasklabError(
            f"unknown pipeline '{name}'; valid pipelines: {', '.join(pipeline_names())}")
    module, cls = PIPELINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["PIPELINES", "Pipeline", "get_pipeline", "pipeline_names"]
