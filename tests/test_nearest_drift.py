"""The K = 3 drift-conjecture study (docs: theory-k-drift-measured, issue 20)."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

import mixforget as mf

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def study():
    return mf.studies.drift_vs_nearest_separation(
        [4.0, 5.0, 6.0], (8.0,), steps=1500, record_every=5, fit_points=3,
        replicates=100, batch_size=64, rng=3,
    )  # fmt: skip


def test_sup_drift_is_gated_by_the_moving_separation(study):
    """Population sup drift falls with Δ, with a slope in Δ² near the conjectured −1/8 (the
    far second old component barely moves)."""
    sup = study.column("sup_drift_population")
    assert np.all(np.diff(sup) < 0)
    assert abs(study.slopes[8.0] / study.theory_slope - 1.0) < 0.15
    assert np.all(study.column("sup_drift_other_population") < 1e-3)


def test_finite_batch_columns_hold_the_population_value_or_more(study):
    """Finite-batch mean sup drift has an interval around its mean and is not below the
    population flow's (sup of a noisy path ≥ sup of its mean, up to 5 standard errors)."""
    mean, lo, hi = (study.column(f"sup_drift_batch_{k}") for k in ("mean", "lo", "hi"))
    assert np.all(lo < mean) and np.all(mean < hi)
    se = (hi - lo) / 3.92
    assert np.all(mean + 5 * se >= study.column("sup_drift_population"))
    assert "B=64" in study.to_markdown() and "conjecture −1/8" in study.to_markdown()


def test_plot_draws_one_curve_per_other_separation_and_the_reference(study):
    ax = study.plot()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("other old component at −8" in t for t in labels)
    assert any("conjectured slope" in t for t in labels)
    assert ax.get_yscale() == "log"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"separations": []}, "separations"),
        ({"separations": [3.0, 2.0]}, "separations"),
        ({"other_separations": [-1.0]}, "separations"),
        ({"fit_points": 9}, "fit_points"),
        ({"start_offset": math.nan}, "start_offset"),
        ({"weights": (0.5, 0.5)}, "weights"),
        ({"weights": (0.5, 0.6, 0.2)}, "weights"),
        ({"replicates": -1}, "replicates"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    args = {"separations": [3.0, 4.0, 5.0, 6.0], **kwargs}
    with pytest.raises(ValueError, match=name):
        mf.studies.drift_vs_nearest_separation(**args)


def test_component_forgetting_figure_names_every_component_and_leaves_runaways_out():
    """plot_component_forgetting: one weight and one drift curve per component, the legend
    naming role and target weight; a TwoMode Trajectory is refused with a TypeError."""
    import mixforget.plot

    target = mf.Mixture([0.4, 0.3, 0.3], [[-5.0], [0.0], [4.0]], cov=1.0)
    start = target.replace(weights=[0.45, 0.35, 0.2], means=[[-5.0], [0.0], [2.0]])
    traj = mf.simulate(target, start, mf.ForwardKL(), steps=50, lr=0.05, batch_size=8,
                       replicates=20, record_every=10, rng=0)  # fmt: skip
    flow = mf.population_flow(target, start, mf.ForwardKL(), steps=50, lr=0.05, record_every=10)
    ax_w, ax_d = mixforget.plot.plot_component_forgetting(traj, population=flow)
    labels = [t.get_text() for t in ax_w.get_legend().get_texts()]
    assert "component 2 (new), target w = 0.3" in labels
    assert sum("population flow" in t for t in labels) == 3
    assert len(ax_d.get_lines()) == 6
    np.testing.assert_allclose(ax_w.get_lines()[0].get_ydata(), traj.weights[:, :, 0].mean(0))
    two = mf.TwoMode(old_mean=[-3.0], new_mean=[3.0], old_weight=0.7)
    plain = mf.simulate(two, two, mf.ForwardKL(), steps=10, replicates=2, record_every=5)
    with pytest.raises(TypeError, match="MixtureTrajectory"):
        mixforget.plot.plot_component_forgetting(plain)


@pytest.mark.parametrize("kwargs", [{"weight_param": "direct"}, {"train_scales": True}])
def test_k_component_gradient_estimates_refuse_what_the_engine_does_not_train(kwargs):
    """estimate_gradient at K = 3 refuses weight_param='direct' / train_scales=True like
    population_gradient does (it used to ignore them silently)."""
    target = mf.Mixture([0.4, 0.3, 0.3], [[-5.0], [0.0], [4.0]], cov=1.0)
    for call in (mf.estimate_gradient, mf.population_gradient):
        with pytest.raises(NotImplementedError, match="K >= 3"):
            call(target, target, mf.ReverseKL(), **kwargs)
