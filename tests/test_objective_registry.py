"""Every place that knows the objectives agrees with the one registry,
``mixforget.objectives.OBJECTIVES``: the package's exports, the twin's registry, the TOML
kinds and field validation, the Rust binding and the Rust module files. A new objective that
misses one of them fails here with the place named (CONTRIBUTING.md, "Adding an objective")."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget import _core, config, objectives
from mixforget._problem import build_problem, check_lr_scale
from mixforget.reference._registry import TWINS

ROOT = Path(__file__).resolve().parents[1]
KINDS = [cls.kind for cls in objectives.OBJECTIVES]


def _snake(name: str) -> str:
    """ForwardKL -> forward_kl, TTTDiscover -> ttt_discover, OAPL -> oapl (the module names)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def test_registry_kinds_are_the_class_names_and_unique():
    assert len(set(KINDS)) == len(KINDS) == len(objectives.OBJECTIVES)
    for cls in objectives.OBJECTIVES:
        assert cls.kind == cls.__name__
        assert issubclass(cls, mf.Objective) and dataclasses.is_dataclass(cls)


@pytest.mark.parametrize("cls", objectives.OBJECTIVES, ids=KINDS)
def test_every_place_knows_each_registered_objective(cls):
    kind = cls.kind
    # the package exports it under its kind
    assert getattr(mf, kind) is cls and kind in mf.__all__, "mixforget/__init__.py"
    assert kind in objectives.__all__, "objectives.__all__"
    # the twin has a stepper for it, implementing exactly this class
    assert TWINS[kind].implements is cls, "reference/_registry.py"
    assert (ROOT / "python/mixforget/reference" / f"{_snake(kind)}.py").is_file()
    # TOML reads it, and the plain-data round trip holds
    assert config.OBJECTIVE_CLASSES[kind] is cls
    default = cls()
    assert objectives.objective_from_dict(default.as_dict()) == default
    assert default.label == kind  # the default's label is the bare kind
    # the Rust binding accepts it and reads back the same fields
    target = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.7)
    problem = build_problem(target, target, default, "logit", 0.05, check_lr_scale(None))
    read_back = problem.objective_dict()
    assert read_back["kind"] == kind
    assert (ROOT / "rust/objectives" / f"{_snake(kind)}.rs").is_file(), "rust/objectives/"


def test_no_objective_is_known_outside_the_registry():
    exported = {
        name
        for name in mf.__all__
        if isinstance(getattr(mf, name), type)
        and issubclass(getattr(mf, name), mf.Objective)
        and getattr(mf, name) is not mf.Objective
    }
    assert exported == set(KINDS)
    assert set(TWINS) == set(KINDS)
    assert set(config.OBJECTIVE_CLASSES) == set(KINDS)
    modules = {p.stem for p in (ROOT / "rust/objectives").glob("*.rs")} - {"mod"}
    assert modules == {_snake(k) for k in KINDS}


@dataclasses.dataclass(frozen=True)
class Unregistered(mf.Objective):
    """An objective that no registry knows."""


def test_rust_knows_exactly_the_registered_kinds():
    """The kernels' list (``objective_list!``, exposed as ``_core.OBJECTIVE_KINDS``) holds
    exactly the registry's kinds (a Rust objective without a Python class, or the reverse,
    fails here); the binding refuses a kind it does not know and lists those."""
    assert len(set(_core.OBJECTIVE_KINDS)) == len(_core.OBJECTIVE_KINDS)
    assert sorted(_core.OBJECTIVE_KINDS) == sorted(KINDS)
    target = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.7)
    with pytest.raises(ValueError) as err:
        mf.estimate_gradient(target, target, Unregistered(), batch_size=8, batches=2)
    listed = re.findall(r"'(\w+)'", str(err.value).split("got")[0])
    assert sorted(listed) == sorted(KINDS), str(err.value)


def test_unknown_kind_is_refused_everywhere_with_the_registered_kinds_listed():
    with pytest.raises(ValueError, match="ForwardKL"):
        objectives.objective_class("Adam")
    with pytest.raises(config.ConfigError, match=r"objective\.kind"):
        config.parse_config(
            {
                "target": {"old_mean": 0.0, "new_mean": 1.0, "old_weight": 0.5},
                "objective": {"kind": "Adam"},
            }
        )


@pytest.mark.parametrize(
    "kind, field, bad",
    [
        ("ForwardKL", "replay", 1.0),
        ("ReverseKL", "baseline", "mean"),
        ("ReverseKL", "weight_cap", 0.0),
        ("SDFT", "ema", 1.5),
        ("TTTDiscover", "beta", "hot"),
        ("OAPL", "lag", 0),
        ("NewModeREINFORCE", "advantage", "scaled"),
    ],
)
def test_toml_validates_objective_fields_with_the_dataclass_itself(kind, field, bad):
    """One validation: the TOML message is the dataclass's, prefixed by the key."""
    cls = objectives.objective_class(kind)
    with pytest.raises((ValueError, TypeError)) as direct:
        cls(**{field: bad})
    doc = {
        "target": {"old_mean": 0.0, "new_mean": 1.0, "old_weight": 0.5},
        "objective": {"kind": kind, field: bad},
    }
    with pytest.raises(config.ConfigError) as via_toml:
        config.parse_config(doc)
    message = str(via_toml.value)
    assert f"objective.{field}" in message
    assert str(direct.value).split(" must ", 1)[-1] in message


def test_build_problem_reads_each_field_by_name():
    obj = mf.OAPL(beta1=0.5, beta2=2.0, lag=3)
    target = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.7)
    problem = build_problem(target, target, obj, "logit", 0.05, check_lr_scale(None))
    read_back = problem.objective_dict()
    for f in dataclasses.fields(obj):
        assert np.all(read_back[f.name] == getattr(obj, f.name)), f.name
