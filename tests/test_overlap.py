"""Overlap accuracy, drop and gain (the metrics of arXiv 2510.18874) and the drop-vs-gain study.

The closed form is checked against adaptive quadrature split at the crossing points (found
independently, by bracketing sign changes of the log-density difference on a fine grid), in
d = 3 against Monte Carlo (5 standard errors, fixed seed).
"""

import dataclasses
import math

import numpy as np
import pytest

import mixforget as mf
from mixforget import studies, theory
from mixforget.studies import drop_gain

scipy_integrate = pytest.importorskip("scipy.integrate")
scipy_optimize = pytest.importorskip("scipy.optimize")
scipy_stats = pytest.importorskip("scipy.stats")


def quadrature_overlap(a, m1, s1, b, m2, s2):
    """∫ min(a φ(x; m1, s1²), b φ(x; m2, s2²)) dx by scipy quad on the pieces between the
    crossings (each piece's integrand is one smooth Gaussian)."""
    norm = scipy_stats.norm

    def log_ratio(x):
        return (math.log(a) + norm.logpdf(x, m1, s1)) - (math.log(b) + norm.logpdf(x, m2, s2))

    lo = min(m1 - 40 * s1, m2 - 40 * s2)
    hi = max(m1 + 40 * s1, m2 + 40 * s2)
    grid = np.linspace(lo, hi, 400_001)
    sign = np.sign(log_ratio(grid))
    cuts = np.flatnonzero(sign[:-1] * sign[1:] < 0)
    roots = [scipy_optimize.brentq(log_ratio, grid[i], grid[i + 1], xtol=1e-14) for i in cuts]
    edges = [lo, *roots, hi]

    def integrand(x):
        return min(a * norm.pdf(x, m1, s1), b * norm.pdf(x, m2, s2))

    return sum(
        scipy_integrate.quad(integrand, x0, x1, epsabs=1e-15, epsrel=1e-13, limit=400)[0]
        for x0, x1 in zip(edges[:-1], edges[1:])
        if x1 > x0
    )


# (a, m1, s1, b, m2, s2)
CASES_1D = [
    pytest.param(0.75, -3.0, 1.0, 0.75, -3.5, 1.0, id="equal-var-shifted"),
    pytest.param(0.25, 3.5, 0.7, 0.25, 0.5, 0.7, id="equal-var-reference-start"),
    pytest.param(0.5, 0.0, 1.0, 0.2, 0.0, 1.0, id="equal-var-same-mean"),
    pytest.param(0.3, 0.0, 1.0, 0.6, 0.5, 2.0, id="unequal-var-two-crossings"),
    pytest.param(0.4, 1.0, 0.5, 0.7, -2.0, 3.0, id="unequal-var-narrow-inside-wide"),
    pytest.param(0.6, 0.0, 1.0, 0.3, 8.0, 0.5, id="crossing-outside-the-bulk"),
    pytest.param(0.9, 0.0, 1.0, 0.01, 0.0, 0.01, id="narrow-spike"),
    pytest.param(0.4, 0.0, 1.0, 0.4, 0.3, 1.0 + 1e-6, id="nearly-equal-var"),
    pytest.param(0.25, 3.5, 0.7, 0.5, 1.9, 1.9, id="reference-like-wide-new"),
]


@pytest.mark.parametrize(("a", "m1", "s1", "b", "m2", "s2"), CASES_1D)
def test_closed_form_matches_quadrature_in_one_dimension(a, m1, s1, b, m2, s2):
    closed = float(theory.gaussian_overlap(a, m1, s1, b, m2, s2))
    assert closed == pytest.approx(quadrature_overlap(a, m1, s1, b, m2, s2), abs=1e-9)
    # symmetric in the two components
    assert float(theory.gaussian_overlap(b, m2, s2, a, m1, s1)) == pytest.approx(closed, abs=1e-15)
    assert 0.0 <= closed <= min(a, b)


def test_gaussian_overlap_is_vectorised_and_validates():
    params = [tuple(p.values) for p in CASES_1D]
    cols = [np.array(c) for c in zip(*params)]
    vec = theory.gaussian_overlap(*cols)
    assert vec.shape == (len(params),)
    for value, p in zip(vec, params):
        assert value == float(theory.gaussian_overlap(*p))
    # broadcasting: one target component against a (2, 3) grid of model components
    grid = theory.gaussian_overlap(0.25, 3.5, 0.7, 0.25, np.zeros((2, 3)), np.ones(3))
    assert grid.shape == (2, 3)
    assert theory.gaussian_overlap(0.0, 0.0, 1.0, 0.5, 0.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="sd_b"):
        theory.gaussian_overlap(0.5, 0.0, 1.0, 0.5, 0.0, 0.0)
    with pytest.raises(ValueError, match="weight_a"):
        theory.gaussian_overlap(-0.1, 0.0, 1.0, 0.5, 0.0, 1.0)


def test_overlap_accuracy_matches_quadrature_with_unequal_component_variances():
    target = mf.TwoMode([-3.0], [3.5], 0.75, old_cov=1.0, new_cov=0.49)
    model = mf.TwoMode([-3.4], [2.0], 0.6, old_cov=1.44, new_cov=3.0)
    acc_old, acc_new = theory.overlap_accuracy(target, model)
    assert acc_old == pytest.approx(
        quadrature_overlap(0.75, -3.0, 1.0, 0.6, -3.4, 1.2) / 0.75, abs=1e-9
    )
    assert acc_new == pytest.approx(
        quadrature_overlap(0.25, 3.5, 0.7, 0.4, 2.0, math.sqrt(3.0)) / 0.25, abs=1e-9
    )


@pytest.mark.parametrize("dim", [1, 3])
def test_limits_identical_is_one_and_far_apart_is_zero(dim):
    cov = np.diag([1.0, 2.0, 0.5][:dim]) if dim > 1 else 0.8
    target = mf.TwoMode(np.full(dim, -3.0), np.full(dim, 3.5), 0.75, cov)
    assert theory.overlap_accuracy(target, target) == (1.0, 1.0)
    far = target.replace(old_mean=np.full(dim, 200.0), new_mean=np.full(dim, -200.0))
    acc_old, acc_new = theory.overlap_accuracy(target, far)
    assert 0.0 <= acc_old < 1e-300 or acc_old == 0.0
    assert 0.0 <= acc_new < 1e-300 or acc_new == 0.0
    # 10 standard deviations apart with equal weights: the crossing is half-way, so
    # acc_old = 2·Φ̄(5) ≈ 5.7e-7, resolved to full relative precision (no 1 − 1 cancellation)
    sd0 = math.sqrt(target.cov_matrix("old")[0, 0])
    shifted = target.replace(old_mean=target.old_mean + 10.0 * sd0 * np.eye(dim)[0])
    acc_old, acc_new = theory.overlap_accuracy(target, shifted)
    assert acc_old == pytest.approx(2.0 * scipy_stats.norm.sf(5.0), rel=1e-12)
    assert acc_new == 1.0


def test_limits_unequal_variances_in_one_dimension():
    target = mf.TwoMode([-3.0], [3.5], 0.75, old_cov=1.0, new_cov=0.49)
    assert theory.overlap_accuracy(target, target) == (1.0, 1.0)
    far = mf.TwoMode([500.0], [-500.0], 0.75, old_cov=9.0, new_cov=0.01)
    acc_old, acc_new = theory.overlap_accuracy(target, far)
    assert acc_old < 1e-300 and acc_new < 1e-300
    # weight bound: the model's old component carries only α, so acc_old ≤ α/α*
    light = target.replace(old_weight=0.3)
    acc_old, acc_new = theory.overlap_accuracy(target, light)
    assert acc_old == pytest.approx(0.3 / 0.75, rel=1e-14)
    assert acc_new == pytest.approx(1.0, rel=1e-14)


def test_equal_covariance_three_dimensions_matches_monte_carlo():
    rng = np.random.default_rng(12)
    a_mat = np.array([[1.0, 0.4, -0.2], [0.4, 2.0, 0.3], [-0.2, 0.3, 0.7]])
    target = mf.TwoMode([0.0, 0.0, 0.0], [3.0, -1.0, 2.0], 0.7, a_mat)
    model = target.replace(old_mean=[0.8, -0.5, 0.4], new_mean=[2.0, 0.3, 1.5], old_weight=0.55)
    closed = theory.overlap_accuracy(target, model)
    n = 400_000
    chol = np.linalg.cholesky(a_mat)
    inv = np.linalg.inv(a_mat)
    for k, (wt, mt, wm, mm) in enumerate(
        [
            (0.7, target.old_mean, 0.55, model.old_mean),
            (0.3, target.new_mean, 0.45, model.new_mean),
        ]
    ):
        x = mt + rng.standard_normal((n, 3)) @ chol.T  # x ~ p*_k
        dt, dm = x - mt, x - mm
        log_ratio = (
            math.log(wm / wt)
            - 0.5 * np.einsum("ij,jk,ik->i", dm, inv, dm)
            + 0.5 * np.einsum("ij,jk,ik->i", dt, inv, dt)
        )
        # ∫ min(w* p*, w q) / w* = E_{p*}[min(1, w q / (w* p*))]
        samples = np.minimum(1.0, np.exp(log_ratio))
        mean, se = samples.mean(), samples.std(ddof=1) / math.sqrt(n)
        assert abs(closed[k] - mean) <= 5.0 * se, (k, closed[k], mean, se)


def test_d3_reduces_to_one_dimension_along_the_discriminant():
    cov = np.diag([4.0, 1.0, 0.25])
    target = mf.TwoMode([0.0, 0.0, 0.0], [6.0, 0.0, 0.0], 0.6, cov)
    model = target.replace(old_mean=[0.0, 1.0, 0.0], new_mean=[6.0, 0.0, 0.5], old_weight=0.7)
    # Mahalanobis distances 1 (old) and 1 (new)
    acc = theory.overlap_accuracy(target, model)
    assert acc[0] == pytest.approx(float(theory.gaussian_overlap(0.6, 0, 1, 0.7, 1, 1)) / 0.6)
    assert acc[1] == pytest.approx(float(theory.gaussian_overlap(0.4, 0, 1, 0.3, 1, 1)) / 0.4)


def test_unequal_covariance_in_more_dimensions_is_not_implemented():
    target = mf.TwoMode([0.0, 0.0], [3.0, 0.0], 0.7, 1.0)
    model = mf.TwoMode([0.0, 0.0], [3.0, 0.0], 0.7, old_cov=1.0, new_cov=2.0)
    with pytest.raises(NotImplementedError, match="d = 1 only"):
        theory.overlap_accuracy(target, model)
    with pytest.raises(TypeError, match="model"):
        theory.overlap_accuracy(target, "not a model")
    with pytest.raises(ValueError, match="dimension"):
        theory.overlap_accuracy(target, mf.TwoMode([0.0], [1.0], 0.5))


def test_records_helper_with_scales():
    target = mf.TwoMode([-3.0], [3.5], 0.75, old_cov=1.0, new_cov=0.49)
    weights = np.array([[0.75, 0.7], [0.6, 0.5]])
    old_mean = np.full((2, 2, 1), -3.2)
    new_mean = np.array([[[0.5], [1.5]], [[2.5], [3.4]]])
    plain = theory.overlap_accuracy_records(target, weights, old_mean, new_mean, 1.0, 0.49)
    assert plain.shape == (2, 2, 2)
    # scales equal to the standard deviations give the same numbers
    same = theory.overlap_accuracy_records(
        target, weights, old_mean, new_mean, 1.0, 0.49, np.ones((2, 2)), np.full((2, 2), 0.7)
    )
    np.testing.assert_allclose(same, plain, rtol=1e-14, atol=0)
    # in d = 1 the scale is the standard deviation whatever covariance it multiplies
    new_scale = np.array([[0.7, 1.0], [1.5, 1.9]])
    scaled = theory.overlap_accuracy_records(
        target, weights, old_mean, new_mean, 1.0, 0.49, None, new_scale
    )
    expected = theory.gaussian_overlap(0.25, 3.5, 0.7, 1 - weights, new_mean[..., 0], new_scale)
    np.testing.assert_allclose(scaled[..., 1], expected / 0.25, rtol=1e-14)
    np.testing.assert_array_equal(scaled[..., 0], plain[..., 0])
    # d = 3: σ = det(Σ)^{1/6} rebuilds Σ (equal up to rounding) and is accepted; another σ not
    cov = np.diag([4.0, 1.0, 0.5])
    t3 = mf.TwoMode(np.zeros(3), np.full(3, 2.0), 0.6, cov)
    sigma = np.linalg.det(cov) ** (1 / 6)
    args = (t3, [0.6], np.zeros((1, 3)), np.full((1, 3), 1.5), cov, cov)
    np.testing.assert_allclose(
        theory.overlap_accuracy_records(*args, [sigma], [sigma]),
        theory.overlap_accuracy_records(*args),
        rtol=1e-12,
    )
    with pytest.raises(NotImplementedError):
        theory.overlap_accuracy_records(*args, None, [1.1 * sigma])
    with pytest.raises(ValueError, match="new_mean"):
        theory.overlap_accuracy_records(target, weights, old_mean, new_mean[:, :1], 1.0, 0.49)
    with pytest.raises(ValueError, match="old_weight"):
        theory.overlap_accuracy_records(target, 1.5, [-3.0], [3.0], 1.0, 0.49)
    with pytest.raises(ValueError, match="new_scale"):
        theory.overlap_accuracy_records(target, weights, old_mean, new_mean, 1.0, 0.49, None, -1.0)


# ---------------------------------------------------------------------------------------
# Trajectory.overlap_accuracy / drop / gain
# ---------------------------------------------------------------------------------------
REFERENCE_TARGET = mf.TwoMode([-3.0], [3.5], 0.75, old_cov=1.0, new_cov=0.49)
REFERENCE_START = mf.TwoMode([-3.5], [0.5], 0.75, old_cov=1.0, new_cov=0.49)


@pytest.fixture(scope="module")
def forward_run():
    return mf.simulate(
        REFERENCE_TARGET,
        REFERENCE_START,
        mf.ForwardKL(),
        steps=40,
        batch_size=64,
        lr=0.15,
        replicates=6,
        record_every=2,
        rng=5,
        weight_param="direct",
        lr_scale={"weight": 0.005, "old_mean": 0.005},
    )


def test_trajectory_overlap_accuracy_agrees_with_theory_at_records(forward_run, tmp_path):
    acc = forward_run.overlap_accuracy()
    assert acc.shape == (6, 21, 2)
    for r, k in [(0, 0), (2, 7), (5, 20)]:
        model = REFERENCE_START.replace(
            old_weight=float(forward_run.old_weight[r, k]),
            old_mean=forward_run.old_mean[r, k],
            new_mean=forward_run.new_mean[r, k],
        )
        np.testing.assert_allclose(
            acc[r, k], theory.overlap_accuracy(REFERENCE_TARGET, model), rtol=1e-13, atol=1e-15
        )
    drop, gain = forward_run.drop(), forward_run.gain()
    assert drop.shape == gain.shape == (6, 21)
    assert np.all(drop[:, 0] == 0.0) and np.all(gain[:, 0] == 0.0)
    np.testing.assert_array_equal(drop, acc[:, :1, 0] - acc[:, :, 0])
    np.testing.assert_array_equal(gain, acc[:, :, 1] - acc[:, :1, 1])
    # forward KL at lr 0.15 moves the new mean onto the target's: the new task is learnt
    assert np.all(gain[:, -1] > 0.5)
    # the start model comes back from a saved file (meta["start"])
    loaded = mf.Trajectory.load(forward_run.save(tmp_path / "run.npz"))
    np.testing.assert_array_equal(loaded.overlap_accuracy(), acc)


def test_trajectory_in_three_dimensions():
    cov = np.diag([1.0, 2.0, 0.5])
    t3 = mf.TwoMode(np.zeros(3), [4.0, 0.0, 0.0], 0.75, cov)
    run = mf.simulate(
        t3,
        t3.replace(new_mean=[1.0, 0.0, 0.0]),
        mf.ReverseKL(),
        steps=10,
        batch_size=32,
        lr=0.05,
        replicates=3,
        record_every=5,
        rng=2,
    )
    acc = run.overlap_accuracy()
    assert acc.shape == (3, 3, 2)
    model = t3.replace(
        old_weight=float(run.old_weight[1, 2]),
        old_mean=run.old_mean[1, 2],
        new_mean=run.new_mean[1, 2],
    )
    np.testing.assert_allclose(acc[1, 2], theory.overlap_accuracy(t3, model), rtol=1e-13)


def test_trajectory_uses_recorded_scales_when_present(forward_run):
    # Trajectories of runs with trainable scales (meta["train_scales"]) carry old_scale /
    # new_scale (R, n_rec); overlap_accuracy must use them.
    shape = forward_run.old_weight.shape
    new_scale = np.linspace(0.7, 1.9, shape[1])[None, :].repeat(shape[0], axis=0)
    scaled = dataclasses.replace(
        forward_run,
        meta={**forward_run.meta, "train_scales": True},
        old_scale=np.ones(shape),
        new_scale=new_scale,
    )
    acc = scaled.overlap_accuracy()
    expected = theory.overlap_accuracy_records(
        REFERENCE_TARGET,
        forward_run.old_weight,
        forward_run.old_mean,
        forward_run.new_mean,
        1.0,
        0.49,
        np.ones(shape),
        new_scale,
    )
    np.testing.assert_array_equal(acc, expected)
    assert not np.allclose(acc[:, 1:, 1], forward_run.overlap_accuracy()[:, 1:, 1])


def test_trajectory_without_start_record_says_so(forward_run):
    bare = dataclasses.replace(forward_run, meta={})
    with pytest.raises(ValueError, match="meta\\['start'\\]"):
        bare.overlap_accuracy()


# ---------------------------------------------------------------------------------------
# drop_vs_gain
# ---------------------------------------------------------------------------------------
STUDY_KW = dict(
    steps=30,
    batch_size=64,
    replicates=12,
    rng=3,
    weight_param="direct",
    lr_scale={"weight": 0.005, "old_mean": 0.005},
)


@pytest.fixture(scope="module")
def small_study():
    return studies.drop_vs_gain(
        REFERENCE_TARGET,
        REFERENCE_START,
        [mf.ForwardKL(), mf.ReverseKL(replay=0.25)],
        [[0.15, 0.01], [0.05]],
        [0.3, 0.9, 1.0],
        **STUDY_KW,
    )


def test_drop_vs_gain_shape_and_labels(small_study):
    rows = small_study.rows
    assert len(rows) == 3 * 3  # (2 + 1 learning rates) × 3 thresholds
    assert len(small_study.paths) == 3
    assert [p["objective"] for p in small_study.paths] == [
        "ForwardKL",
        "ForwardKL",
        "ReverseKL(replay=0.25)",
    ]
    assert {r["family"] for r in rows} == {"forward", "reverse"}
    for p in small_study.paths:
        assert p["steps"].shape == p["drop_mean"].shape == p["gain_mean"].shape == (31,)
        assert p["drop_mean"][0] == 0.0 and p["gain_mean"][0] == 0.0
    for r in rows:
        assert r["reached"] + r["never_reached"] == r["replicates"] == 12
    assert studies.objective_label(mf.ReverseKL(baseline="none")) == "ReverseKL(baseline='none')"


def test_drop_vs_gain_counts_and_monotone_in_threshold(small_study):
    for lr_rows in (
        small_study.select("ForwardKL", 0.15),
        small_study.select("ForwardKL", 0.01),
        small_study.select("ReverseKL(replay=0.25)", 0.05),
    ):
        reached = [r["reached"] for r in lr_rows]
        assert reached == sorted(reached, reverse=True)  # thresholds ascend
        # gain ≤ 1 − acc_new(0) < 1: a threshold of 1 is never reached
        assert lr_rows[-1]["never_reached"] == 12
        assert math.isnan(lr_rows[-1]["drop_at_threshold_mean"])
    fast = small_study.select("ForwardKL", 0.15, 0.9)[0]
    assert fast["reached"] == 12  # forward KL at lr 0.15 learns the new mode within 30 steps
    slow = small_study.select("ForwardKL", 0.01, 0.9)[0]
    assert slow["never_reached"] == 12  # at lr 0.01 it does not (it needs ~100 steps)
    # the lower threshold is reached first
    low = small_study.select("ForwardKL", 0.15, 0.3)[0]
    assert low["step_at_threshold_hi"] <= fast["step_at_threshold_lo"]


def test_drop_vs_gain_numbers_match_a_direct_run(small_study):
    # the first run uses the first child stream of rng = 3
    child = np.random.SeedSequence(3).spawn(3)[0]
    kw = {k: v for k, v in STUDY_KW.items() if k not in ("rng",)}
    run = mf.simulate(
        REFERENCE_TARGET, REFERENCE_START, mf.ForwardKL(), lr=0.15, record_every=1, rng=child, **kw
    )
    drop, gain = run.drop(), run.gain()
    first = np.argmax(gain >= 0.9, axis=1)
    assert np.all(gain.max(axis=1) >= 0.9)
    values = drop[np.arange(12), first]
    row = small_study.select("ForwardKL", 0.15, 0.9)[0]
    assert row["drop_at_threshold_mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert row["step_at_threshold_mean"] == pytest.approx(run.steps[first].mean(), rel=1e-12)
    assert row["final_drop_mean"] == pytest.approx(drop[:, -1].mean(), rel=1e-12)
    assert row["final_gain_mean"] == pytest.approx(gain[:, -1].mean(), rel=1e-12)
    half = 1.959963984540054 * values.std(ddof=1) / math.sqrt(12)
    assert row["drop_at_threshold_hi"] - row["drop_at_threshold_mean"] == pytest.approx(
        half, rel=1e-9, abs=1e-15
    )


def test_first_reaching_is_monotone_per_replicate():
    gain = np.array([[0.0, 0.2, 0.5, 0.4, 0.95], [0.0, 0.1, 0.1, 0.1, 0.1]])
    assert drop_gain._first_reaching(gain, 0.2).tolist() == [1, -1]
    assert drop_gain._first_reaching(gain, 0.5).tolist() == [2, -1]
    assert drop_gain._first_reaching(gain, 0.9).tolist() == [4, -1]
    assert drop_gain._first_reaching(gain, 0.1).tolist() == [1, 1]


def test_drop_vs_gain_outputs(small_study):
    text = small_study.to_markdown()
    assert "ReverseKL(replay=0.25)" in text and "never reached" in text
    assert "12/12" in text
    pd = pytest.importorskip("pandas")
    df = small_study.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(small_study.rows)
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = small_study.plot()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ForwardKL" in labels and "ReverseKL(replay=0.25)" in labels
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["ForwardKL"] == "-" and styles["ReverseKL(replay=0.25)"] == "--"
    ax.figure.canvas.draw()
    plt.close(ax.figure)


def test_drop_vs_gain_validates_arguments():
    args = (REFERENCE_TARGET, REFERENCE_START)
    fkl = mf.ForwardKL()
    with pytest.raises(ValueError, match="thresholds"):
        studies.drop_vs_gain(*args, fkl, [0.1], [0.0], **STUDY_KW)
    with pytest.raises(ValueError, match="thresholds"):
        studies.drop_vs_gain(*args, fkl, [0.1], [1.5], **STUDY_KW)
    with pytest.raises(ValueError, match="lrs"):
        studies.drop_vs_gain(*args, fkl, [-0.1], 0.5, **STUDY_KW)
    with pytest.raises(ValueError, match="one list per objective"):
        studies.drop_vs_gain(*args, [fkl, mf.ReverseKL()], [[0.1]], 0.5, **STUDY_KW)
    with pytest.raises(ValueError, match="distinct"):
        studies.drop_vs_gain(*args, [fkl, mf.ForwardKL()], [0.1], 0.5, **STUDY_KW)
    with pytest.raises(TypeError, match="objectives"):
        studies.drop_vs_gain(*args, ["ForwardKL"], [0.1], 0.5, **STUDY_KW)
    with pytest.raises(ValueError, match="record_every"):
        studies.drop_vs_gain(*args, fkl, [0.1], 0.5, record_every=2, **STUDY_KW)
    with pytest.raises(TypeError, match="start"):
        studies.drop_vs_gain(REFERENCE_TARGET, None, fkl, [0.1], 0.5, **STUDY_KW)
