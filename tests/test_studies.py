"""Studies: theory next to measurement (docs: theory-pred-drift, theory-pred-starvation,
theory-pred-replay; issue 4).

Tolerances come from standard errors (5σ) or from the stated theory tolerance (20% on the
slope); fixed seeds; no timed asserts.
"""

import math

import numpy as np
import pytest

import mixforget as mf
from mixforget import studies, theory

SEPARATIONS = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


@pytest.fixture(scope="module")
def drift_population():
    """Prediction 3 grid, population flow only (exact, deterministic)."""
    return studies.drift_vs_separation(
        SEPARATIONS, mf.ReverseKL(baseline="none"), replicates=0, steps=3000, lr=0.1, fit_points=4
    )


# ---------------------------------------------------------------------------------------
# docs: theory-pred-drift: sup_t D_t ≤ C·BC, slope of log sup_t D_t on Δ² → −1/8
# ---------------------------------------------------------------------------------------
def test_prediction3_reverse_kl_converges_to_target(drift_population):
    # converges to p*, at least as fast as the asymptotic local rate of docs: theory-fisher predicts
    # (the initial error is start_offset = 2 in the new mean; Δ = 2 is the slowest,
    # rate^3000 ≈ 2e-3)
    steps, lr = drift_population.settings["steps"], drift_population.settings["lr"]
    for row in drift_population.rows:
        target = mf.TwoMode([0.0], [row["separation"]], 0.75, 1.0)
        bound = max(5.0 * 2.0 * theory.local_rate(target, lr) ** steps, 1e-9)
        assert not row["population_diverged"]
        assert row["final_new_error_population"] <= bound, row
        assert row["final_weight_error_population"] <= bound, row
        assert row["final_drift_population"] <= bound, row
        assert row["final_drift_population"] < 0.01 * row["sup_drift_population"], row


def test_prediction3_sup_drift_below_one_constant_times_bc(drift_population):
    # One constant C for the whole grid 2 ≤ Δ ≤ 8 (BC spans e^{-1/2} … e^{-8}, a factor 1100).
    # C = 1 is fixed in advance: the soft-misassignment gate of docs: theory-geometry is
    # ½ sqrt(α/(1−α))·BC ≈ 0.87·BC at α* = 0.75.
    c = 1.0
    bc = drift_population.column("bhattacharyya")
    sup = drift_population.column("sup_drift_population")
    assert np.allclose(bc, np.exp(-(np.asarray(SEPARATIONS) ** 2) / 8.0), rtol=1e-12)
    assert np.all(sup > 0.0)
    assert np.all(sup <= c * bc), sup / bc
    assert drift_population.constant_population <= c
    # and the ratio does not run away across the grid (it would grow like e^{+...} if the
    # drift were not overlap-gated): max/min well below the 1100 spanned by BC
    ratio = sup / bc
    assert ratio.max() / ratio.min() < 3.0, ratio


def test_prediction3_slope_of_log_drift_is_minus_one_eighth(drift_population):
    study = drift_population
    assert study.fit_separations == (5.0, 6.0, 7.0, 8.0)
    # recompute the fit independently of the study's own helper
    sep = np.array(study.fit_separations)
    sup = study.column("sup_drift_population")[-4:]
    slope = np.polyfit(sep**2, np.log(sup), 1)[0]
    assert slope == pytest.approx(study.slope_population, rel=1e-12)
    assert abs(slope - (-0.125)) <= 0.2 * 0.125, slope
    # after removing a fitted polynomial factor Δ^k the Δ² coefficient is closer still
    assert abs(study.slope_population_corrected - (-0.125)) <= 0.2 * 0.125
    assert math.isnan(study.slope_batch)


def test_prediction3_finite_batch_mean_path_tracks_population():
    """Finite batches (docs: theory-training-loop): the replicate-mean old mean tracks the
    population flow at every record (5 standard errors), also at Δ = 8 where each replicate's sup_t
    D_t sits on a noise floor far above C·BC (see drift_vs_separation's docstring)."""
    target = mf.TwoMode([0.0], [8.0], 0.75, 1.0)
    start = target.replace(new_mean=[10.0])
    obj = mf.ReverseKL(baseline="none")
    flow = mf.population_flow(target, start, obj, steps=1000, lr=0.1, record_every=5)
    traj = mf.simulate(
        target, start, obj, steps=1000, batch_size=64, lr=0.1, replicates=400, record_every=5, rng=2
    )
    assert not traj.diverged.any()
    for arr, ref in (
        (traj.old_mean[:, :, 0], flow.old_mean[0, :, 0]),
        (traj.old_weight, flow.old_weight[0]),
        (traj.new_mean[:, :, 0], flow.new_mean[0, :, 0]),
    ):
        mean = arr.mean(axis=0)
        se = arr.std(axis=0, ddof=1) / math.sqrt(arr.shape[0])
        assert np.all(np.abs(mean - ref) <= 5.0 * se + 1e-12)


def test_drift_study_rows_markdown_and_finite_batch_columns():
    study = studies.drift_vs_separation(
        [2.0, 4.0, 6.0],
        steps=300,
        lr=0.1,
        replicates=20,
        batch_size=32,
        record_every=5,
        fit_points=3,
        rng=5,
    )
    assert isinstance(study, studies.DriftSeparationStudy)
    assert len(study.rows) == 3
    keys = {
        "separation",
        "bhattacharyya",
        "sup_drift_population",
        "ratio_population",
        "sup_drift_batch_mean",
        "sup_drift_batch_lo",
        "sup_drift_batch_hi",
        "sup_mean_path_drift",
        "replicates",
        "diverged",
    }
    for row in study.rows:
        assert keys <= set(row)
        assert row["sup_drift_batch_lo"] <= row["sup_drift_batch_mean"] <= row["sup_drift_batch_hi"]
        assert row["replicates"] + row["diverged"] == 20
    assert np.isfinite(study.slope_batch)
    md = study.to_markdown()
    lines = md.splitlines()
    assert lines[0].startswith("| Δ |") and lines[1].startswith("|---")
    assert sum(1 for line in lines if line.startswith("| ")) == 1 + 3
    assert "−1/8" in md
    assert study.settings["seed"]["entropy"] == "5"
    with pytest.raises(dataclasses_frozen_error()):
        study.slope_population = 0.0  # type: ignore[misc]
    # same seed, same numbers
    again = studies.drift_vs_separation(
        [2.0, 4.0, 6.0],
        steps=300,
        lr=0.1,
        replicates=20,
        batch_size=32,
        record_every=5,
        fit_points=3,
        rng=5,
    )
    assert again.rows == study.rows


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_drift_study_in_d_dimensions_matches_one_dimension():
    """Δ is Mahalanobis and the flow is rotation invariant with Σ = I: a 3-D problem along an
    oblique direction gives the same population drift as 1-D (docs: theory-geometry,
    theory-population). (A general Σ is not equivalent: gradient descent on μ is not invariant under
    whitening.)"""
    kw = dict(replicates=0, steps=600, lr=0.1, record_every=2)
    one = studies.drift_vs_separation([3.0, 5.0], **kw)
    three = studies.drift_vs_separation(
        [3.0, 5.0], dim=3, cov=1.0, direction=[1.0, -1.0, 2.0], **kw
    )
    np.testing.assert_allclose(
        three.column("sup_drift_population"), one.column("sup_drift_population"), rtol=1e-8
    )
    assert three.settings["direction"] == pytest.approx(
        list(np.array([1.0, -1.0, 2.0]) / math.sqrt(6.0))
    )


def test_drift_study_validates_arguments():
    with pytest.raises(ValueError):
        studies.drift_vs_separation([3.0, 2.0], replicates=0)
    with pytest.raises(ValueError):
        studies.drift_vs_separation([0.0, 2.0], replicates=0)
    with pytest.raises(ValueError):
        studies.drift_vs_separation([2.0], replicates=-1)
    with pytest.raises(ValueError):
        studies.drift_vs_separation([2.0], replicates=0, start_offset=-2.0)
    with pytest.raises(TypeError):
        studies.drift_vs_separation([2.0], objective="reverse", replicates=0)


# ---------------------------------------------------------------------------------------
# docs: theory-pred-starvation: starvation frequencies match docs: theory-starvation within binomial
# error ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def starvation_study():
    return studies.starvation(
        [0.02, 0.05, 0.1, 0.25], [4, 8, 16, 32], [0.1, 0.25], batches=50_000, rng=11
    )


def test_prediction4_starvation_measured_matches_predicted(starvation_study):
    rows = starvation_study.rows
    assert len(rows) == 4 * 4 * 2
    for r in rows:
        assert r["predicted_onpolicy"] == pytest.approx(
            (1 - r["old_weight"]) ** r["batch_size"], rel=1e-12
        )
        assert r["predicted_replay"] == pytest.approx(
            ((1 - r["replay"]) * (1 - r["old_weight"])) ** r["batch_size"], rel=1e-12
        )
        for which in ("onpolicy", "replay"):
            p, n = r[f"predicted_{which}"], r["batches"]
            se = math.sqrt(p * (1 - p) / n)
            assert abs(r[f"measured_{which}"] - p) <= 5.0 * se + 1.0 / n, (which, r)
            assert r[f"{which}_lo"] <= r[f"measured_{which}"] <= r[f"{which}_hi"]
    # docs: theory-check-values check values
    row = next(
        r for r in rows if r["old_weight"] == 0.05 and r["batch_size"] == 32 and r["replay"] == 0.25
    )
    assert row["predicted_onpolicy"] == pytest.approx(0.193711, abs=5e-7)
    assert row["predicted_replay"] == pytest.approx(1.946e-5, rel=1e-3)


def test_prediction4_starvation_stratified_slots():
    # round(0.25·B) ≥ 1 replay samples in every batch: never starved (P = 0 exactly);
    # round(0.05·8) = 0: no replay slot, on-policy (1 − α)^B.
    study = studies.starvation(
        [0.05],
        [8, 32],
        [0.05, 0.25],
        slots="stratified",
        objective=mf.ReverseKL(baseline="none"),
        batches=40_000,
        rng=3,
    )
    for r in study.rows:
        k = round(r["replay"] * r["batch_size"] + 1e-12)
        if k >= 1:
            assert r["predicted_replay"] == 0.0
            assert r["measured_replay"] == 0.0
        else:
            p = (1 - r["old_weight"]) ** r["batch_size"]
            assert r["predicted_replay"] == pytest.approx(p, rel=1e-12)
            assert abs(r["measured_replay"] - p) <= 5.0 * math.sqrt(p * (1 - p) / r["batches"])


# ---------------------------------------------------------------------------------------
# docs: theory-pred-replay: replay keeps the population gradient, lowers the estimator variance
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", ["loo", "none"])
def test_prediction5_replay_same_population_gradient_lower_variance(baseline):
    # starvation-prone: small α, small B (P starved from 0.66 to 0.92 on-policy)
    study = studies.starvation(
        [0.02, 0.05],
        [4, 8],
        [0.25],
        objective=mf.ReverseKL(baseline=baseline),
        separation=4.0,
        old_mean_offset=0.3,
        batches=100_000,
        rng=7,
    )
    for r in study.rows:
        assert r["predicted_onpolicy"] > 0.6
        # uncapped weights: the population gradient is unchanged by replay (all parameters)
        assert r["population_max_abs_diff"] <= 1e-10
        assert r["population_onpolicy"] > 1e-3  # the model is off the target: non-zero gradient
        # both estimators are unbiased for it (so the variance drop is not bought with bias)
        for which in ("onpolicy", "replay"):
            assert (
                abs(r[f"mean_{which}"] - r["population_onpolicy"]) <= 5.0 * r[f"mean_{which}_se"]
            ), (which, r)
        # the old-mean gradient variance drops, by more than 5 standard errors of the log ratio
        log_ratio = math.log(r["variance_ratio"])
        se = math.hypot(
            r["var_onpolicy_se"] / r["var_onpolicy"], r["var_replay_se"] / r["var_replay"]
        )
        assert log_ratio > 5.0 * se, (log_ratio, se, r)
        assert r["log_variance_ratio_z"] == pytest.approx(log_ratio / se)
        assert r["variance_ratio"] > 2.0


def test_prediction5_population_gradient_unchanged_by_replay_direct():
    target = mf.TwoMode([0.0, 0.0], [3.0, 1.0], 0.1, [1.0, 2.0])
    model = target.replace(old_mean=[0.4, -0.2], new_mean=[2.0, 1.5], old_weight=0.2)
    for slots in ("bernoulli", "stratified"):
        base = mf.population_gradient(target, model, mf.ReverseKL())
        rep = mf.population_gradient(target, model, mf.ReverseKL(replay=0.3, replay_slots=slots))
        assert abs(base["weight"] - rep["weight"]) <= 1e-10
        np.testing.assert_allclose(rep["old_mean"], base["old_mean"], atol=1e-10, rtol=0)
        np.testing.assert_allclose(rep["new_mean"], base["new_mean"], atol=1e-10, rtol=0)


def test_starvation_study_shapes_and_markdown(starvation_study):
    md = starvation_study.to_markdown()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(starvation_study.rows)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert starvation_study.column("variance_ratio").shape == (32,)
    with pytest.raises(ValueError):
        studies.starvation([0.1], [0], 0.25, batches=10)
    with pytest.raises(ValueError):
        studies.starvation([0.1], [4], 1.0, batches=10)
    with pytest.raises(TypeError):
        studies.starvation([0.1], [4], 0.2, objective=mf.ForwardKL(), batches=10)


def test_helpers_binomial_interval_and_variance():
    lo, hi = studies.binomial_interval(0, 100)
    assert lo == 0.0 and 0.0 < hi < 0.05
    lo, hi = studies.binomial_interval(50, 100)
    assert lo < 0.5 < hi
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200_000)
    v, se = studies.variance_with_stderr(x)
    assert abs(v - 1.0) <= 5 * se
    assert se == pytest.approx(math.sqrt(2.0 / x.size), rel=0.05)  # normal: Var(s²) = 2σ⁴/n


def test_to_pandas(drift_population, starvation_study):
    pd = pytest.importorskip("pandas")
    df = drift_population.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(SEPARATIONS)
    assert len(starvation_study.to_pandas()) == len(starvation_study.rows)


# ---------------------------------------------------------------------------------------
# plots (optional matplotlib, Agg)
# ---------------------------------------------------------------------------------------
def test_plots_with_agg(drift_population, starvation_study):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = studies.drift_vs_separation(
        [2.0, 4.0], steps=200, lr=0.1, replicates=10, record_every=5, rng=1
    )
    for obj in (drift_population, study, starvation_study):
        ax = obj.plot()
        assert ax.figure is not None
        assert len(ax.get_lines()) >= 2
        assert ax.get_yscale() == "log"
        ax.figure.canvas.draw()
        plt.close(ax.figure)
    fig, ax = plt.subplots()
    assert drift_population.plot(ax=ax) is ax
    plt.close(fig)
