"""Tests of mixforget.theory (docs: theory-geometry, theory-forward-kl, theory-starvation,
theory-fisher, theory-check-values, theory-method-closed-forms).

Closed forms are checked against the check values of docs: theory-check-values,
theory-method-closed-forms, against independent SciPy quadratures, and against Monte Carlo with the
Rust kernels (mixforget.kernels) within 5 standard errors (fixed seeds).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mixforget import theory as th
from mixforget.mixture import TwoMode
from mixforget.objectives import OAPL, ForwardKL, ReverseKL
from mixforget.results import Trajectory

ALPHAS = (0.1, 0.5, 0.75, 0.9)
DELTAS = (1.0, 2.0, 4.0, 6.0)
Z = 5.0  # tolerance in standard errors


def _model_1d(alpha: float, delta: float, **kw) -> TwoMode:
    return TwoMode(old_mean=[0.0], new_mean=[delta], old_weight=alpha, **kw)


def _kernel_args(model: TwoMode):
    weights = np.array([model.old_weight, 1.0 - model.old_weight])
    means = np.stack([model.old_mean, model.new_mean])
    return weights, means, [model.old_cov, model.new_cov]


def _sample(model: TwoMode, n: int, seed: int):
    from mixforget import kernels

    x, labels = kernels.sample_mixture(n, *_kernel_args(model), rng=seed)
    return np.asarray(x, dtype=np.float64).reshape(n, model.dim), np.asarray(labels)


def _resp_old(model: TwoMode, x: np.ndarray) -> np.ndarray:
    from mixforget import kernels

    return np.asarray(kernels.responsibilities(x, *_kernel_args(model)))[:, 0]


# ---------------------------------------------------------------------------------------
# check values (docs: theory-check-values, theory-method-closed-forms)
# ---------------------------------------------------------------------------------------
def test_check_values():
    m = _model_1d(0.5, 4.0)
    assert th.bhattacharyya([0.0], [4.0]) == pytest.approx(0.1353353, abs=5e-8)
    assert th.bhattacharyya(0.0, 4.0) == pytest.approx(math.exp(-2.0), rel=1e-14)
    assert th.bhattacharyya(m) == pytest.approx(0.1353353, abs=5e-8)
    hard = th.misassignment(m, "hard")
    assert hard["new_to_old"] == pytest.approx(0.022750, abs=5e-7)
    assert hard["old_to_new"] == pytest.approx(0.022750, abs=5e-7)
    soft = th.misassignment(m, "soft")
    assert soft["old_to_new"] == pytest.approx(0.034299, abs=5e-7)
    assert soft["new_to_old"] == pytest.approx(0.034299, abs=5e-7)
    assert soft["old_to_new_bound"] == pytest.approx(0.067668, abs=5e-7)
    assert soft["new_to_old_bound"] == pytest.approx(0.067668, abs=5e-7)
    assert th.starvation_probability(0.05, 32) == pytest.approx(0.193711, abs=5e-7)
    assert th.starvation_probability(0.05, 32, replay=0.25) == pytest.approx(1.946e-5, abs=5e-9)
    assert th.starvation_probability(0.05, 32, replay=0.25, slots="stratified") == 0.0
    assert th.oapl_period_weight(0.6, 1.0, 0.5) == pytest.approx(0.168747, abs=5e-7)
    assert th.tttdiscover_stationary_weight(0.6, 0.5, 0.0, 1.0, 1.0) == pytest.approx(
        0.4801, abs=5e-5
    )
    assert th.tttdiscover_stationary_weight(0.6, 0.5, 0.0, 1.0, 0.0) == 0.0
    assert th.replay_weight_bound(0.25) == pytest.approx(4.0 / 3.0)
    assert th.replay_weight_bound(0.0) == 1.0
    assert th.forward_kl_optimum(0.3) == 0.3
    assert th.forward_kl_optimum(0.0) == 0.0


def test_scalar_outputs_are_python_floats():
    assert type(th.starvation_probability(0.05, 32)) is float
    assert type(th.bhattacharyya([0.0], [1.0])) is float
    assert all(type(v) is float for v in th.misassignment(_model_1d(0.3, 2.0), "soft").values())
    assert type(th.local_rate(_model_1d(0.3, 2.0), 0.1)) is float


# ---------------------------------------------------------------------------------------
# Bhattacharyya (docs: theory-geometry)
# ---------------------------------------------------------------------------------------
def test_bhattacharyya_equal_cov_general_d():
    cov = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.7]])
    ma, mb = np.array([0.3, -1.0, 2.0]), np.array([1.0, 0.5, -0.5])
    d = ma - mb
    delta2 = d @ np.linalg.solve(cov, d)
    assert th.bhattacharyya(ma, mb, cov) == pytest.approx(math.exp(-delta2 / 8), rel=1e-13)
    model = TwoMode(ma, mb, 0.3, cov=cov)
    assert th.bhattacharyya(model) == pytest.approx(math.exp(-delta2 / 8), rel=1e-13)
    # scalar (isotropic) covariance in d = 3
    assert th.bhattacharyya(ma, mb, 2.0) == pytest.approx(math.exp(-(d @ d) / 16), rel=1e-13)
    assert th.bhattacharyya(ma, mb, 2.0, 2.0) == pytest.approx(math.exp(-(d @ d) / 16), rel=1e-13)
    # diagonal given as (d,) equals the matrix form
    diag = np.array([2.0, 1.0, 0.7])
    assert th.bhattacharyya(ma, mb, diag) == pytest.approx(
        th.bhattacharyya(ma, mb, np.diag(diag)), rel=1e-14
    )


@pytest.mark.parametrize(
    "ma,mb,va,vb", [(0.0, 3.0, 1.0, 2.0), (-1.0, 0.5, 0.3, 4.0), (0.0, 0.0, 1.0, 9.0)]
)
def test_bhattacharyya_unequal_cov_vs_quadrature(ma, mb, va, vb):
    def root_product(x):
        return math.sqrt(
            stats.norm.pdf(x, ma, math.sqrt(va)) * stats.norm.pdf(x, mb, math.sqrt(vb))
        )

    ref, _ = integrate.quad(root_product, -np.inf, np.inf, epsabs=0, epsrel=1e-12, limit=200)
    assert th.bhattacharyya(ma, mb, va, vb) == pytest.approx(ref, rel=1e-9)
    model = TwoMode([ma], [mb], 0.4, old_cov=va, new_cov=vb)
    assert th.bhattacharyya(model) == pytest.approx(ref, rel=1e-9)


# ---------------------------------------------------------------------------------------
# misassignment: closed forms / quadrature (docs: theory-geometry)
# ---------------------------------------------------------------------------------------
def _soft_reference(alpha: float, delta: float) -> tuple[float, float]:
    """Independent SciPy quadrature of E_{φ_n}[r_o] and E_{φ_o}[r_n] in x (d = 1, Σ = 1)."""
    lc = math.log(alpha / (1 - alpha))

    def r_o(x: float) -> float:
        ell = -delta * (x - delta / 2)  # μ_o = 0, μ_n = Δ: ℓ = (μ_o − μ_n)(x − Δ/2)
        return float(stats.logistic.cdf(lc + ell))

    def r_n(x: float) -> float:
        ell = -delta * (x - delta / 2)
        return float(stats.logistic.cdf(-lc - ell))

    pts = sorted({0.0, delta / 2, delta, -lc / delta + delta / 2})
    kw = dict(epsabs=0, epsrel=1e-13, limit=500, points=pts)
    lo, hi = -40.0 - delta, 40.0 + 2 * delta
    n2o, _ = integrate.quad(lambda x: stats.norm.pdf(x, delta) * r_o(x), lo, hi, **kw)
    o2n, _ = integrate.quad(lambda x: stats.norm.pdf(x, 0.0) * r_n(x), lo, hi, **kw)
    return n2o, o2n


@pytest.mark.parametrize("alpha", [0.02, 0.1, 0.5, 0.75, 0.9, 0.99])
@pytest.mark.parametrize("delta", [0.1, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0])
def test_soft_misassignment_vs_scipy(alpha, delta):
    got = th.misassignment(_model_1d(alpha, delta), "soft")
    n2o, o2n = _soft_reference(alpha, delta)
    assert got["new_to_old"] == pytest.approx(n2o, rel=1e-9, abs=1e-13)
    assert got["old_to_new"] == pytest.approx(o2n, rel=1e-9, abs=1e-13)


def test_soft_misassignment_far_tail_relative_accuracy():
    # Δ = 10: values ~1e-7; Δ = 20: ~1e-23 — checked against SciPy in log-space scale
    for delta in (10.0, 20.0):
        for alpha in (0.1, 0.5, 0.9):
            got = th.misassignment(_model_1d(alpha, delta), "soft")
            lc = math.log(alpha / (1 - alpha))
            a = lc - delta**2 / 2

            def soft_new_to_old(z, a=a, delta=delta):
                return math.exp(-math.log1p(math.exp(-(a + delta * z))) - z * z / 2) / math.sqrt(
                    2 * math.pi
                )

            ref, _ = integrate.quad(
                soft_new_to_old,
                -15,
                delta + 15,
                epsabs=0,
                epsrel=1e-13,
                limit=500,
                points=[0.0, delta / 2, -a / delta, delta],
            )
            assert got["new_to_old"] == pytest.approx(ref, rel=1e-9)


def test_hard_closed_form_direct():
    for alpha in ALPHAS:
        for delta in DELTAS:
            c = math.log(alpha / (1 - alpha))
            got = th.misassignment(_model_1d(alpha, delta), "hard")
            assert got["new_to_old"] == pytest.approx(
                stats.norm.cdf(c / delta - delta / 2), rel=1e-12
            )
            assert got["old_to_new"] == pytest.approx(
                stats.norm.cdf(-c / delta - delta / 2), rel=1e-12
            )


def test_misassignment_general_d_depends_only_on_separation():
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    mo, mn = np.array([1.0, -2.0]), np.array([-0.5, 1.0])
    model = TwoMode(mo, mn, 0.3, cov=cov)
    flat = _model_1d(0.3, model.separation)
    for kind in ("hard", "soft"):
        a, b = th.misassignment(model, kind), th.misassignment(flat, kind)
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-12)


def test_misassignment_zero_separation():
    m = TwoMode([1.0], [1.0], 0.3)
    soft = th.misassignment(m, "soft")
    assert soft["new_to_old"] == pytest.approx(0.3, rel=1e-12)
    assert soft["old_to_new"] == pytest.approx(0.7, rel=1e-12)
    hard = th.misassignment(m, "hard")
    assert (hard["new_to_old"], hard["old_to_new"]) == (0.0, 1.0)


UNEQUAL = [
    TwoMode([0.0], [3.0], 0.3, old_cov=1.0, new_cov=2.0),
    TwoMode([0.0], [1.0], 0.8, old_cov=0.5, new_cov=0.2),
    TwoMode([0.0], [5.0], 0.5, old_cov=4.0, new_cov=1.0),
    TwoMode([0.0], [0.0], 0.6, old_cov=4.0, new_cov=1.0),
]


@pytest.mark.parametrize("model", UNEQUAL)
def test_unequal_cov_1d_vs_scipy(model):
    a = model.old_weight
    so, sn = math.sqrt(model.cov_matrix("old")[0, 0]), math.sqrt(model.cov_matrix("new")[0, 0])
    mo, mn = float(model.old_mean[0]), float(model.new_mean[0])

    def r_o(x):
        lo = math.log(a) + stats.norm.logpdf(x, mo, so)
        ln = math.log(1 - a) + stats.norm.logpdf(x, mn, sn)
        return 1.0 / (1.0 + math.exp(ln - lo))

    kw = dict(epsabs=0, epsrel=1e-12, limit=500)
    rng = (min(mo - 30 * so, mn - 30 * sn), max(mo + 30 * so, mn + 30 * sn))
    n2o, _ = integrate.quad(
        lambda x: stats.norm.pdf(x, mn, sn) * r_o(x), *rng, points=[mo, mn], **kw
    )
    o2n, _ = integrate.quad(
        lambda x: stats.norm.pdf(x, mo, so) * (1 - r_o(x)), *rng, points=[mo, mn], **kw
    )
    soft = th.misassignment(model, "soft")
    assert soft["new_to_old"] == pytest.approx(n2o, rel=1e-9)
    assert soft["old_to_new"] == pytest.approx(o2n, rel=1e-9)
    # hard: fine Riemann sum of the indicator (error ~ step size)
    x = np.linspace(rng[0], rng[1], 2_000_001)
    dx = x[1] - x[0]
    lo = math.log(a) + stats.norm.logpdf(x, mo, so)
    ln = math.log(1 - a) + stats.norm.logpdf(x, mn, sn)
    hard = th.misassignment(model, "hard")
    assert hard["new_to_old"] == pytest.approx(
        np.sum(stats.norm.pdf(x, mn, sn) * (lo > ln)) * dx, abs=1e-4
    )
    assert hard["old_to_new"] == pytest.approx(
        np.sum(stats.norm.pdf(x, mo, so) * (lo < ln)) * dx, abs=1e-4
    )


def test_unequal_cov_given_in_different_forms_is_equal_cov():
    a = TwoMode([0.0], [2.0], 0.3, old_cov=1.5, new_cov=[1.5])
    b = TwoMode([0.0], [2.0], 0.3, cov=1.5)
    for kind in ("hard", "soft"):
        assert th.misassignment(a, kind) == pytest.approx(th.misassignment(b, kind), rel=1e-12)
    np.testing.assert_allclose(th.fisher(a), th.fisher(b), rtol=1e-12)


def test_unequal_cov_multidim_not_implemented():
    m = TwoMode([0.0, 0.0], [1.0, 1.0], 0.5, old_cov=[1.0, 1.0], new_cov=[2.0, 2.0])
    with pytest.raises(NotImplementedError):
        th.misassignment(m, "soft")
    with pytest.raises(NotImplementedError):
        th.misassignment(m, "hard")
    with pytest.raises(NotImplementedError):
        th.fisher(m)


def _grid_models():
    for alpha in ALPHAS:
        for delta in DELTAS:
            yield _model_1d(alpha, delta)
    yield from UNEQUAL


@pytest.mark.parametrize("kind", ["soft", "hard"])
def test_bounds_hold_on_grid(kind):
    for model in list(_grid_models()) + [
        _model_1d(a, d) for a in (0.01, 0.3, 0.99) for d in (0.5, 3.0, 10.0)
    ]:
        m = th.misassignment(model, kind)
        assert 0.0 <= m["new_to_old"] <= m["new_to_old_bound"] * (1 + 1e-12), (model, m)
        assert 0.0 <= m["old_to_new"] <= m["old_to_new_bound"] * (1 + 1e-12), (model, m)
        a = model.old_weight
        factor = 0.5 if kind == "soft" else 1.0
        assert m["new_to_old_bound"] == pytest.approx(
            factor * math.sqrt(a / (1 - a)) * model.bhattacharyya
        )
        assert m["old_to_new_bound"] == pytest.approx(
            factor * math.sqrt((1 - a) / a) * model.bhattacharyya
        )


def test_hard_equal_weights_below_half_bc():
    for delta in np.linspace(0.1, 12, 40):
        m = th.misassignment(_model_1d(0.5, float(delta)), "hard")
        assert m["new_to_old"] <= 0.5 * math.exp(-(delta**2) / 8)


def test_symmetry_identity():
    """α·E_{φ_o}[r_n] = (1−α)·E_{φ_n}[r_o] (docs: theory-check-values)."""
    models = list(_grid_models()) + [
        _model_1d(a, d) for a in (0.01, 0.99) for d in (0.3, 8.0, 10.0, 20.0)
    ]
    for model in models:
        m = th.misassignment(model, "soft")
        a = model.old_weight
        assert a * m["old_to_new"] == pytest.approx((1 - a) * m["new_to_old"], rel=1e-11), model


# ---------------------------------------------------------------------------------------
# misassignment vs Monte Carlo with the Rust kernels (docs: theory-pred-misassignment)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("delta", DELTAS)
def test_misassignment_vs_monte_carlo(alpha, delta):
    model = _model_1d(alpha, delta)
    n = 400_000
    x, labels = _sample(model, n, seed=int(1000 * alpha + 10 * delta))
    ro = _resp_old(model, x)
    new, old = labels == 1, labels == 0
    # labels: the sample frequencies follow α
    assert abs(old.mean() - alpha) <= Z * math.sqrt(alpha * (1 - alpha) / n)
    soft, hard = th.misassignment(model, "soft"), th.misassignment(model, "hard")

    for mask, vals, key in ((new, ro, "new_to_old"), (old, 1.0 - ro, "old_to_new")):
        v = vals[mask]
        se = v.std(ddof=1) / math.sqrt(v.size)
        assert abs(v.mean() - soft[key]) <= Z * se + 1e-15, (key, v.mean(), soft[key], se)

    for mask, hit, key in ((new, ro > 0.5, "new_to_old"), (old, ro < 0.5, "old_to_new")):
        p = hard[key]
        m = int(mask.sum())
        se = math.sqrt(p * (1 - p) / m)
        assert abs(hit[mask].mean() - p) <= Z * se + 1.0 / m, (key, hit[mask].mean(), p, se)


@pytest.mark.parametrize("model", UNEQUAL[:3])
def test_unequal_misassignment_vs_monte_carlo(model):
    n = 400_000
    x, labels = _sample(model, n, seed=7)
    ro = _resp_old(model, x)
    new, old = labels == 1, labels == 0
    soft, hard = th.misassignment(model, "soft"), th.misassignment(model, "hard")
    for mask, vals, key in ((new, ro, "new_to_old"), (old, 1.0 - ro, "old_to_new")):
        v = vals[mask]
        assert abs(v.mean() - soft[key]) <= Z * v.std(ddof=1) / math.sqrt(v.size)
    for mask, hit, key in ((new, ro > 0.5, "new_to_old"), (old, ro < 0.5, "old_to_new")):
        p, m = hard[key], int(mask.sum())
        assert abs(hit[mask].mean() - p) <= Z * math.sqrt(p * (1 - p) / m) + 1.0 / m


def test_misassignment_vs_monte_carlo_d3():
    cov = np.array([[1.5, 0.4, 0.1], [0.4, 1.0, -0.2], [0.1, -0.2, 0.6]])
    model = TwoMode([0.0, 0.0, 0.0], [1.0, -1.5, 0.5], 0.35, cov=cov)
    n = 400_000
    x, labels = _sample(model, n, seed=11)
    ro = _resp_old(model, x)
    soft = th.misassignment(model, "soft")
    v = ro[labels == 1]
    assert abs(v.mean() - soft["new_to_old"]) <= Z * v.std(ddof=1) / math.sqrt(v.size)
    v = 1.0 - ro[labels == 0]
    assert abs(v.mean() - soft["old_to_new"]) <= Z * v.std(ddof=1) / math.sqrt(v.size)


# ---------------------------------------------------------------------------------------
# starvation (docs: theory-starvation)
# ---------------------------------------------------------------------------------------
def test_starvation_formulas_and_vectorisation():
    alpha = np.array([0.0, 0.05, 0.3, 1.0])
    np.testing.assert_allclose(th.starvation_probability(alpha, 16), (1 - alpha) ** 16, rtol=1e-13)
    lam = np.array([[0.0], [0.1], [0.5]])
    got = th.starvation_probability(alpha, 16, lam)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, ((1 - lam) * (1 - alpha)) ** 16, rtol=1e-12)
    b = np.array([1, 4, 64])
    np.testing.assert_allclose(th.starvation_probability(0.2, b), 0.8**b, rtol=1e-13)
    # stratified: round(λB) ≥ 1 ⇒ 0, else on-policy; ties away from zero (λB = 0.5 → 1)
    assert th.starvation_probability(0.2, 4, 0.1, "stratified") == pytest.approx(0.8**4)  # λB = 0.4
    assert th.starvation_probability(0.2, 5, 0.1, "stratified") == 0.0  # λB = 0.5 → 1
    assert th.starvation_probability(0.2, 4, 0.0, "stratified") == pytest.approx(0.8**4)
    assert th.stratified_replay_count(0.25, 2) == 1
    assert th.stratified_replay_count(0.25, 32) == 8
    np.testing.assert_array_equal(
        th.stratified_replay_count(0.1, np.array([4, 5, 14, 15])), [0, 1, 1, 2]
    )


STARVATION_CASES = [
    (0.05, 32, 0.0, "bernoulli"),
    (0.05, 32, 0.25, "bernoulli"),
    (0.05, 32, 0.25, "stratified"),
    (0.3, 4, 0.1, "stratified"),  # round(0.4) = 0: on-policy formula
    (0.2, 5, 0.1, "stratified"),  # round(0.5) = 1 (ties away from zero): never starved
    (0.5, 3, 0.5, "bernoulli"),
    (0.01, 64, 0.0, "bernoulli"),
    (0.1, 16, 0.02, "bernoulli"),
]


@pytest.mark.parametrize("alpha,batch,replay,slots", STARVATION_CASES)
def test_starvation_vs_kernel(alpha, batch, replay, slots):
    from mixforget import kernels

    n = 2_000_000
    counts = np.asarray(
        kernels.starvation_counts(alpha, batch, n, replay=replay, slots=slots, rng=3)
    )
    assert counts.shape == (n,)
    freq = float(np.mean(counts == 0))
    p = th.starvation_probability(alpha, batch, replay, slots)
    if p == 0.0:
        assert freq == 0.0
    else:
        assert abs(freq - p) <= Z * math.sqrt(p * (1 - p) / n), (freq, p)
    k = th.stratified_replay_count(replay, batch) if slots == "stratified" else 0
    assert counts.min() >= k


def _hand_trajectory(old_weight, steps, objective, batch_size=8):
    old_weight = np.asarray(old_weight, dtype=float)
    r, n = old_weight.shape
    return Trajectory(
        steps=np.asarray(steps),
        old_weight=old_weight,
        old_mean=np.zeros((r, n, 1)),
        new_mean=np.ones((r, n, 1)),
        starved=np.zeros((r, n)),
        diverged=np.zeros(r, bool),
        target=_model_1d(0.5, 3.0),
        meta={
            "objective": objective.as_dict(),
            "batch_size": batch_size,
            "record_every": int(steps[1] - steps[0]),
        },
    )


def test_expected_starved_batches_array_and_trajectory():
    path = np.linspace(0.5, 0.01, 100)
    expect = np.sum((1 - path) ** 8)
    assert th.expected_starved_batches(path, batch_size=8) == pytest.approx(expect, rel=1e-13)
    two = np.stack([path, path[::-1]])
    np.testing.assert_allclose(
        th.expected_starved_batches(two, batch_size=8), [expect, expect], rtol=1e-13
    )
    np.testing.assert_allclose(
        th.expected_starved_batches(path, batch_size=8, cumulative=True),
        np.cumsum((1 - path) ** 8),
        rtol=1e-13,
    )
    bern = np.sum(((1 - 0.2) * (1 - path)) ** 8)
    assert th.expected_starved_batches(path, 8, replay=0.2) == pytest.approx(bern, rel=1e-13)
    with pytest.raises(ValueError, match="batch_size"):
        th.expected_starved_batches(path)

    # trajectory, record_every = 5: step-wise constant between records
    rec = np.array([[0.5, 0.4, 0.3, 0.2], [0.6, 0.6, 0.6, 0.6]])
    steps = np.array([0, 5, 10, 15])
    traj = _hand_trajectory(rec, steps, ReverseKL(replay=0.25))
    got = th.expected_starved_batches(traj)
    p = ((1 - 0.25) * (1 - rec[:, :3])) ** 8
    np.testing.assert_allclose(got, 5 * p.sum(axis=1), rtol=1e-13)
    cum = th.expected_starved_batches(traj, cumulative=True)
    assert cum.shape == rec.shape
    np.testing.assert_allclose(
        cum, np.concatenate([np.zeros((2, 1)), 5 * np.cumsum(p, axis=1)], axis=1), rtol=1e-13
    )
    # explicit overrides
    np.testing.assert_allclose(
        th.expected_starved_batches(traj, batch_size=4, replay=0.0),
        5 * ((1 - rec[:, :3]) ** 4).sum(axis=1),
        rtol=1e-13,
    )
    # stratified replay ≥ 1 slot: never starved
    traj = _hand_trajectory(rec, steps, ReverseKL(replay=0.25, replay_slots="stratified"))
    np.testing.assert_array_equal(th.expected_starved_batches(traj), [0.0, 0.0])
    # ForwardKL: non-replay samples are new-task data ⇒ P = (1 − λ)^B whatever α
    traj = _hand_trajectory(rec, steps, ForwardKL(replay=0.1))
    np.testing.assert_allclose(th.expected_starved_batches(traj), [15 * 0.9**8] * 2, rtol=1e-13)
    traj = _hand_trajectory(rec, steps, ForwardKL())
    np.testing.assert_allclose(th.expected_starved_batches(traj), [15.0, 15.0])
    # OAPL samples from the lagged model: α at L⌊t/L⌋
    traj = _hand_trajectory(rec, steps, OAPL(lag=10))
    p = (1 - rec) ** 8
    np.testing.assert_allclose(
        th.expected_starved_batches(traj), 10 * p[:, 0] + 5 * p[:, 2], rtol=1e-13
    )


def test_expected_starved_matches_simulation():
    """Σ_t P(α_t) along each simulated path is the conditional mean of the simulator's
    starved count (record_every = 1): their difference has mean 0 over replicates."""
    import mixforget as mf

    target = TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.2)
    start = target.replace(new_mean=[0.5])
    for objective in (ReverseKL(), ReverseKL(replay=0.1), ForwardKL(replay=0.1)):
        traj = mf.simulate(
            target,
            start,
            objective,
            steps=40,
            batch_size=8,
            lr=0.05,
            replicates=2000,
            record_every=1,
            rng=5,
        )
        keep = ~traj.diverged
        diff = traj.starved[keep, -1] - th.expected_starved_batches(traj)[keep]
        se = diff.std(ddof=1) / math.sqrt(diff.size)
        assert abs(diff.mean()) <= Z * se, (objective, diff.mean(), se)
        cum = th.expected_starved_batches(traj, cumulative=True)
        assert cum.shape == traj.starved.shape


# ---------------------------------------------------------------------------------------
# Fisher information and local rate (docs: theory-fisher)
# ---------------------------------------------------------------------------------------
def _scores(model: TwoMode, x: np.ndarray, ro: np.ndarray) -> np.ndarray:
    sio = np.linalg.inv(model.cov_matrix("old"))
    sin = np.linalg.inv(model.cov_matrix("new"))
    a = model.old_weight
    return np.concatenate(
        [
            (ro - a)[:, None],
            ro[:, None] * ((x - model.old_mean) @ sio),
            (1 - ro)[:, None] * ((x - model.new_mean) @ sin),
        ],
        axis=1,
    )


def _fisher_grid_2d(model: TwoMode) -> np.ndarray:
    """Independent reference: tensor trapezoid on a 2-D whitened grid around each mean."""
    sig = model.cov_matrix("old")
    chol = np.linalg.cholesky(sig)
    g = np.linspace(-11, 11, 881)
    h = g[1] - g[0]
    zz = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    w = np.exp(-0.5 * np.sum(zz * zz, axis=1)) / (2 * np.pi) * h * h
    a = model.old_weight
    sinv = np.linalg.inv(sig)
    out = np.zeros((5, 5))
    for mix, mu in ((a, model.old_mean), (1 - a, model.new_mean)):
        x = mu + zz @ chol.T
        lo = -0.5 * np.einsum("ni,ij,nj->n", x - model.old_mean, sinv, x - model.old_mean)
        ln = -0.5 * np.einsum("ni,ij,nj->n", x - model.new_mean, sinv, x - model.new_mean)
        ro = 1.0 / (1.0 + np.exp(-(math.log(a / (1 - a)) + lo - ln)))
        s = _scores(model, x, ro)
        out += mix * (s * w[:, None]).T @ s
    return out


FISHER_MODELS = [
    TwoMode([0.0, 1.0], [1.5, -0.5], 0.3, cov=[[1.0, 0.3], [0.3, 0.5]]),
    TwoMode([0.0, 0.0], [3.0, 1.0], 0.75, cov=[2.0, 0.5]),
    TwoMode([0.0, 0.0], [0.0, 0.0], 0.4, cov=[1.0, 1.0]),
]


@pytest.mark.parametrize("model", FISHER_MODELS)
def test_fisher_vs_grid_quadrature(model):
    f = th.fisher(model)
    np.testing.assert_allclose(f, _fisher_grid_2d(model), atol=1e-10)
    np.testing.assert_allclose(f, f.T, atol=0)
    assert np.linalg.eigvalsh(f).min() >= -1e-12


@pytest.mark.parametrize(
    "model",
    [
        *FISHER_MODELS[:2],
        TwoMode([0.0, 0.0, 0.0], [1.0, 2.0, -1.0], 0.6, cov=[1.3, 1.3, 1.3]),
        TwoMode([0.0], [3.0], 0.3, old_cov=1.0, new_cov=2.0),
        TwoMode([0.0], [1.5], 0.7, old_cov=0.5, new_cov=1.5),
    ],
)
def test_fisher_vs_monte_carlo(model):
    n = 400_000
    x, _ = _sample(model, n, seed=21)
    ro = _resp_old(model, x)
    s = _scores(model, x, ro)
    prod = s[:, :, None] * s[:, None, :]
    mean = prod.mean(axis=0)
    se = prod.std(axis=0, ddof=1) / math.sqrt(n)
    f = th.fisher(model)
    assert np.all(np.abs(mean - f) <= Z * se + 1e-12), np.max(np.abs(mean - f) / (se + 1e-300))
    # the score has mean zero under the model
    smean, sse = s.mean(axis=0), s.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(smean) <= Z * sse)


def test_fisher_unequal_1d_vs_scipy():
    model = TwoMode([0.0], [3.0], 0.3, old_cov=1.0, new_cov=2.0)
    a = model.old_weight

    def s_of(x):
        lo = math.log(a) + stats.norm.logpdf(x, 0.0, 1.0)
        ln = math.log(1 - a) + stats.norm.logpdf(x, 3.0, math.sqrt(2.0))
        ro = 1.0 / (1.0 + math.exp(ln - lo))
        return np.array([ro - a, ro * x, (1 - ro) * (x - 3.0) / 2.0]), math.exp(
            np.logaddexp(lo, ln)
        )

    f = th.fisher(model)
    for i in range(3):
        for j in range(3):
            ref, _ = integrate.quad(
                lambda x, i=i, j=j: (lambda sq: sq[0][i] * sq[0][j] * sq[1])(s_of(x)),
                -40,
                45,
                points=[0.0, 3.0],
                epsabs=1e-14,
                epsrel=1e-12,
                limit=400,
            )
            assert f[i, j] == pytest.approx(ref, rel=1e-9, abs=1e-13)


def test_fisher_well_separated_limit_and_direct():
    cov = np.array([[2.0, 0.3], [0.3, 1.0]])
    model = TwoMode([0.0, 0.0], [40.0, 0.0], 0.3, cov=cov)
    f = th.fisher(model)
    sinv = np.linalg.inv(cov)
    expect = np.zeros((5, 5))
    expect[0, 0] = 0.3 * 0.7
    expect[1:3, 1:3] = 0.3 * sinv
    expect[3:5, 3:5] = 0.7 * sinv
    np.testing.assert_allclose(f, expect, atol=1e-12)
    # direct parametrisation: score (r_o − α)/(α(1−α)), F_direct = J F J
    model = FISHER_MODELS[0]
    a = model.old_weight
    j = np.diag([1 / (a * (1 - a))] + [1.0] * 4)
    np.testing.assert_allclose(th.fisher(model, "direct"), j @ th.fisher(model) @ j, rtol=1e-13)


def test_fisher_orthogonal_block_is_not_alpha_sigma_inv_at_finite_separation():
    """Orthogonal to μ_o − μ_n the old-mean block is E_q[r_o²] Σ⁻¹ (→ α Σ⁻¹ only as Δ → ∞)."""
    model = TwoMode([0.0, 0.0], [1.0, 0.0], 0.5, cov=[1.0, 1.0])
    f = th.fisher(model)
    assert f[2, 2] < 0.5 - 0.05
    assert f[2, 4] > 0.05  # E_q[r_o r_n] coupling between the means
    x = np.linspace(-15, 16, 200_001)
    dx = x[1] - x[0]
    q = 0.5 * stats.norm.pdf(x) + 0.5 * stats.norm.pdf(x, 1.0)
    ro = 0.5 * stats.norm.pdf(x) / q
    assert f[2, 2] == pytest.approx(np.sum(q * ro * ro) * dx, rel=1e-9)


def test_local_rate():
    model = FISHER_MODELS[0]
    lam = np.linalg.eigvalsh(th.fisher(model))
    assert th.local_rate(model, 0.1) == pytest.approx(1 - 0.1 * lam.min(), rel=1e-13)
    # separated modes: λ_min = min(α(1−α), α/σ², (1−α)/σ²)
    sep = TwoMode([0.0], [40.0], 0.3, cov=2.0)
    assert th.local_rate(sep, 0.2) == pytest.approx(1 - 0.2 * 0.15, rel=1e-10)
    # frozen group: no contraction in that direction
    assert th.local_rate(sep, 0.2, lr_scale={"old_mean": 0.0}) == pytest.approx(1.0)
    scaled = th.local_rate(sep, 0.2, lr_scale={"weight": 0.5})
    assert scaled == pytest.approx(1 - 0.2 * min(0.5 * 0.21, 0.15, 0.35), rel=1e-10)
    # large steps: spectral radius, not 1 − lr λ_min
    assert th.local_rate(sep, 10.0) == pytest.approx(
        max(abs(1 - 10 * 0.21), abs(1 - 10 * 0.15), abs(1 - 10 * 0.35))
    )


# ---------------------------------------------------------------------------------------
# methods (docs: theory-method-closed-forms)
# ---------------------------------------------------------------------------------------
def test_oapl_periods():
    a = th.oapl_period_weight(0.6, 1.0, 0.5, periods=3)
    assert a == pytest.approx(1 / (1 + math.exp(-(math.log(1.5) - 6))), rel=1e-13)
    assert th.oapl_period_weight(0.6, 0.0, 0.5) == pytest.approx(0.6)
    assert th.oapl_period_weight(0.6, 1.0, 0.5, periods=0) == pytest.approx(0.6)
    step = th.oapl_period_weight(th.oapl_period_weight(0.6, 1.0, 0.5), 1.0, 0.5)
    assert step == pytest.approx(th.oapl_period_weight(0.6, 1.0, 0.5, periods=2), rel=1e-13)


def test_tttdiscover_fixed_point():
    for a0, beta, ro, rn, lam in [
        (0.6, 0.5, 0.0, 1.0, 1.0),
        (0.3, 2.0, 1.0, 0.0, 0.5),
        (0.5, 1.0, 100.0, 103.0, 2.0),
        (0.9, 4.0, 0.0, 5.0, 0.1),
    ]:
        a = th.tttdiscover_stationary_weight(a0, beta, ro, rn, lam)
        z = a * math.exp(beta * (ro - rn)) + (1 - a)
        rhs = math.log(a0 / (1 - a0)) + (math.exp(beta * (ro - rn)) - 1) / (lam * z)
        assert math.log(a / (1 - a)) == pytest.approx(rhs, abs=1e-9)
    # shift invariance of the rewards, monotone in λ, limits
    assert th.tttdiscover_stationary_weight(0.6, 0.5, 10.0, 11.0, 1.0) == pytest.approx(
        0.4801, abs=5e-5
    )
    ws = [
        th.tttdiscover_stationary_weight(0.6, 0.5, 0.0, 1.0, lam)
        for lam in (0.1, 1.0, 10.0, 1000.0)
    ]
    assert all(x < y for x, y in zip(ws, ws[1:])) and ws[-1] == pytest.approx(0.6, abs=1e-3)
    assert th.tttdiscover_stationary_weight(0.6, 0.5, 1.0, 0.0, 0.0) == 1.0
    assert th.tttdiscover_stationary_weight(0.6, 0.5, 1.0, 1.0, 0.0) == 0.6


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: th.starvation_probability(1.5, 8), "old_weight"),
        (lambda: th.starvation_probability(-0.1, 8), "old_weight"),
        (lambda: th.starvation_probability(0.1, 0), "batch_size"),
        (lambda: th.starvation_probability(0.1, 8, replay=1.0), "replay"),
        (lambda: th.starvation_probability(0.1, 8, slots="sometimes"), "slots"),
        (lambda: th.starvation_probability([0.1, 0.2], 8, [0.1, 0.2, 0.3]), "broadcast"),
        (lambda: th.starvation_probability(float("nan"), 8), "old_weight"),
        (lambda: th.replay_weight_bound(1.0), "replay"),
        (lambda: th.forward_kl_optimum(-0.1), "replay"),
        (lambda: th.misassignment(_model_1d(0.5, 1.0), "fuzzy"), "kind"),
        (lambda: th.fisher(_model_1d(0.5, 1.0), "probit"), "weight_param"),
        (lambda: th.local_rate(_model_1d(0.5, 1.0), 0.0), "lr"),
        (lambda: th.local_rate(_model_1d(0.5, 1.0), 0.1, lr_scale={"bias": 1.0}), "lr_scale"),
        (lambda: th.local_rate(_model_1d(0.5, 1.0), 0.1, lr_scale={"weight": -1.0}), "lr_scale"),
        (lambda: th.oapl_period_weight(1.0, 1.0, 0.5), "alpha_lag"),
        (lambda: th.oapl_period_weight(0.5, 1.0, 0.0), "beta"),
        (lambda: th.oapl_period_weight(0.5, 1.0, 1.0, periods=-1), "periods"),
        (lambda: th.tttdiscover_stationary_weight(0.0, 1.0, 0.0, 1.0, 1.0), "alpha0"),
        (lambda: th.tttdiscover_stationary_weight(0.5, 1.0, 0.0, 1.0, -1.0), "kl_penalty"),
        (lambda: th.tttdiscover_stationary_weight(0.5, 1.0, float("inf"), 1.0, 1.0), "r_old"),
        (lambda: th.bhattacharyya([0.0, 1.0], [1.0]), "dimension"),
        (lambda: th.bhattacharyya([0.0], [1.0], -1.0), "cov_a"),
        (lambda: th.bhattacharyya([0.0], [1.0], 1.0, 0.0), "cov_b"),
        (lambda: th.expected_starved_batches(np.full(5, 0.5), 8, slots="x"), "slots"),
        (lambda: th.expected_starved_batches(np.full(5, 2.0), 8), "path_or_trajectory"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: th.misassignment("not a model"),
        lambda: th.fisher(None),
        lambda: th.starvation_probability(0.1, 8.5),
        lambda: th.starvation_probability(0.1, True),
        lambda: th.bhattacharyya([0.0]),
    ],
)
def test_bad_input_raises_type_error(call):
    with pytest.raises(TypeError):
        call()
