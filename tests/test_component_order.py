"""studies.which_component_goes_first (issue 20): far from the new task the two old
components end at the same weight; close to it the near one keeps its mass and drifts instead;
bad arguments are refused before any work."""

from __future__ import annotations

import math

import pytest

import mixforget as mf

KW = dict(steps=1500, lr=0.05, record_every=10)


def test_far_components_tie_and_near_ones_drift_instead_of_losing_mass():
    study = mf.studies.which_component_goes_first(separations=[1.0, 8.0], near_weights=[0.2], **KW)
    near, far = study.rows
    # Δ = 8: equal weights, negligible overlap -> the same logit ODE for both old components
    assert abs(far["half_life_far"] - far["half_life_near"]) <= KW["record_every"]
    assert far["final_weight_far"] == pytest.approx(far["final_weight_near"], abs=1e-3)
    assert far["drift_near"] < 0.05
    # Δ = 1: new data is partly assigned to the near component: its mass never halves, the
    # far one's does, and the near mean moves toward the new task
    assert math.isnan(near["half_life_near"]) and not math.isnan(near["half_life_far"])
    assert near["first"] == "far"
    assert near["drift_near"] > 0.5


def test_larger_old_component_halves_first_when_both_are_far():
    """dη_j/dt = −lr·w_j without overlap: the heavier old component loses its logit faster."""
    (row,) = mf.studies.which_component_goes_first(separations=[8.0], near_weights=[0.1], **KW).rows
    assert row["far_weight"] > row["near_weight"]
    assert row["half_life_far"] < row["half_life_near"]
    assert row["first"] == "far"


def test_table_and_figure():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    study = mf.studies.which_component_goes_first(
        separations=[2.0], near_weights=[0.1, 0.2], steps=200, record_every=10
    )
    text = study.to_markdown()
    assert text.splitlines()[0].startswith("| separation | near_weight")
    assert len(text.splitlines()) == 2 + 2
    ax = study.plot()
    assert len(ax.get_lines()) == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(separations=[0.0]), "separations"),
        (dict(separations=[12.0]), "separations"),
        (dict(near_weights=[0.5]), "near_weights"),
        (dict(old_mass=1.0), "old_mass"),
        (dict(separations=[]), "separations"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mf.studies.which_component_goes_first(**kwargs)


def test_objective_must_be_a_k_component_one():
    with pytest.raises(TypeError, match="objective"):
        mf.studies.which_component_goes_first(objective=mf.SDFT())
