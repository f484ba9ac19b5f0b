"""Task interface v2: names, registries (duplicates refused, unknown names listed), typed
family configs validated before training (one line naming family, key, value, allowed),
derived keys, task sets of families and fixed names/globs."""

from __future__ import annotations

import pytest

from conftest import run_tasklab
from taskset_lab.errors import ConfigError
from taskset_lab.registry import DuplicateNameError, Registry, UnknownNameError
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import (
    TASK_FAMILIES,
    FIXED_TASKS,
    TaskFamily,
    get_task_family,
    get_task,
    register_task_family,
    sample_task_config,
    sampled_name,
)
from taskset_lab.tasks.task_set import resolve_task_set


def test_registry_refuses_duplicates_and_lists_known_names():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    reg.register("a", 1)  # the same object again is harmless (a module imported twice)
    with pytest.raises(DuplicateNameError, match="widget 'a' is registered twice"):
        reg.register("a", 2)
    with pytest.raises(UnknownNameError) as err:
        reg.get("b")
    assert str(err.value) == "unknown widget 'b'; known: a"
    fam = get_task_family("lab_mlp")
    with pytest.raises(DuplicateNameError):
        register_task_family("lab_mlp", fam.sample, lambda c, **kw: None)
    with pytest.raises(UnknownNameError, match="unknown task family 'nope'.*quadratic"):
        get_task_family("nope")


def test_sampled_names_follow_taskset_and_overrides_change_the_name():
    assert sampled_name("mlp_family", 12) == "mlp_family_seed12"
    a, b = sampled_name("lab_mlp", 3, {"hidden": [8]}), sampled_name("lab_mlp", 3, {"hidden": [9]})
    assert a.startswith("lab_mlp_seed3_") and a != b
    task = get_task("lab_mlp_seed2")
    assert (task.name, task.family) == ("lab_mlp_seed2", "lab_mlp")
    assert task.config == sample_task_config("lab_mlp", 2)
    task = get_task("quadratic_family_seed2")
    assert (task.name, task.family) == ("quadratic_family_seed2", "quadratic_family")
    assert task.config == sample_task_config("quadratic_family", 2)


@pytest.mark.parametrize("override,needle", [
    ({"hiden": [8]}, "family lab_mlp: unknown key 'hiden'; the family's keys are activation, batch_size"),
    ({"hidden": [0]}, "family lab_mlp: hidden=[0] is not allowed; expected a list of positive layer widths"),
    ({"activation": "gelu"}, "activation='gelu' is not allowed; expected one of 'relu'"),
    ({"batch_size": 2.5}, "batch_size=2.5 is not allowed; expected a int in [1, 65536]"),
])
def test_bad_overrides_are_one_line_naming_family_key_value_and_allowed(override, needle):
    with pytest.raises(ConfigError) as err:
        resolve_task_set({"families": [{"family": "lab_mlp", "seeds": [0, 2], "overrides": override}]})
    message = str(err.value)
    assert "\n" not in message and needle in message
    assert err.value.field.startswith("task_set.families[0].overrides.")


def _conv_toy_derive(config: dict) -> dict:
    """``strides`` follow ``channels``: the sampled strides kept layer by layer, new layers 1."""
    channels, strides = config.get("channels"), config.get("strides")
    if isinstance(channels, list) and isinstance(strides, list) and len(strides) != len(channels):
        config = dict(config, strides=(strides + [1] * len(channels))[:len(channels)])
    return config


def test_derived_keys_are_recomputed_when_their_source_is_overridden(monkeypatch):
    """A family's ``derive`` hook runs after the overrides (no shipped family needs one: a
    convnet-like toy family, registered for this test only)."""
    fields = {"channels": Field("list", items="int", low=1, high=4096, allowed="channel counts"),
              "strides": Field("list", items="int", low=1, high=8, allowed="strides")}
    toy = TaskFamily("derive_toy", lambda seed: {"channels": [16, 16, 32, 32], "strides": [1, 2, 1, 2]},
                     lambda c, **kw: None, fields, _conv_toy_derive)
    monkeypatch.setitem(TASK_FAMILIES._items, "derive_toy", toy)
    base = sample_task_config("derive_toy", 1)
    two = sample_task_config("derive_toy", 1, {"channels": [8, 8]})
    assert len(base["channels"]) == 4 and two["strides"] == base["strides"][:2]
    six = sample_task_config("derive_toy", 1, {"channels": [8] * 6})
    assert six["strides"] == base["strides"] + [1, 1]


def test_task_sets_take_families_fixed_names_and_globs():
    specs = resolve_task_set({"families": [{"family": "quadratic_family", "seeds": [0, 2]}],
                              "fixed": ["TwoD_B*", "Copy_GRU128_BS128_Length20_Tokens10", "lab_mlp_seed4",
                                        "TwoD_Bowl1"]})
    names = [s.name for s in specs]
    assert names[:2] == ["quadratic_family_seed0", "quadratic_family_seed1"]
    assert {"TwoD_Beale", "TwoD_Bowl1", "TwoD_Bowl10", "TwoD_Bowl100", "TwoD_Bowl1000"} <= set(names)
    assert names.count("TwoD_Bowl1") == 1  # duplicates dropped
    fixed = {s.name: s for s in specs}
    assert fixed["Copy_GRU128_BS128_Length20_Tokens10"].family == "Copy"
    assert fixed["Copy_GRU128_BS128_Length20_Tokens10"].fixed and not fixed["lab_mlp_seed4"].fixed
    assert fixed["lab_mlp_seed4"].build().name == "lab_mlp_seed4"
    with pytest.raises(ConfigError, match="pattern 'Nope_\\*' matches no fixed task"):
        resolve_task_set({"fixed": ["Nope_*"]})
    with pytest.raises(ConfigError, match="unknown task 'TwoD_Bowl2'"):
        resolve_task_set({"fixed": ["TwoD_Bowl2"]})
    assert len(FIXED_TASKS.names("TwoD_*")) == 8 and "lab_mlp" in TASK_FAMILIES


def test_curves_refuses_a_bad_override_before_training(tmp_path):
    out = run_tasklab(["pipeline=CURVES", "index=curves_quickstart",
                       "++task_set.families=[{family: lab_mlp, seeds: [0, 2], overrides: {hiden: [8]}}]",
                       f"output_dir={tmp_path / 'o'}"], cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'hiden'" in lines[0] and "family lab_mlp" in lines[0]
    assert not (tmp_path / "o" / "curves").exists()  # nothing trained, nothing written
