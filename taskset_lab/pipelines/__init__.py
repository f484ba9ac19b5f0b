"""Pipelines by name. ``tasklab pipeline=<NAME>`` looks the class up here."""

from __future__ import annotations

import importlib

from taskset_lab.registry import Registry
from taskset_lab.pipelines.base import Pipeline

# name -> "module:Class"; imported lazily so `tasklab` starts fast.
PIPELINES: dict[str, str] = {
    "TRAIN": "taskset_lab.pipelines.train:TrainPipeline",
    "CURVES": "taskset_lab.pipelines.curves:CurvesPipeline",
    "HPARAM_LIST": "taskset_lab.pipelines.hparam_list:HparamListPipeline",
    "MTL": "taskset_lab.pipelines.mtl:MTLPipeline",
    "TRANSFER": "taskset_lab.pipelines.transfer:TransferPipeline",
    "TASKS": "taskset_lab.pipelines.tasks:TasksPipeline",
    "META_TRAIN": "taskset_lab.pipelines.meta_train:MetaTrainPipeline",
    "REPLAY": "taskset_lab.pipelines.replay:ReplayPipeline",
    "EVALUATE": "taskset_lab.pipelines.evaluate:EvaluatePipeline",
}
_REGISTRY: Registry[str] = Registry("pipeline")
for _name, _target in PIPELINES.items():
    _REGISTRY.register(_name, _target)


def pipeline_names() -> list[str]:
    return _REGISTRY.names()


def get_pipeline(name: str) -> type[Pipeline]:
    module, cls = _REGISTRY.get(name).split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["PIPELINES", "Pipeline", "get_pipeline", "pipeline_names"]
