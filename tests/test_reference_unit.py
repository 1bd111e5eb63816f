"""Self-consistency of the pure-NumPy twins in ``mixforget.reference`` (docs: theory-geometry,
theory-scores, theory-estimators, theory-training-loop).

Fixed seeds; statistical tolerances are 5 standard errors. Parity with the Rust kernels is
tested elsewhere; here the twins are checked against direct formulas, closed forms
(docs: theory-check-values) and against each other (finite-batch estimators vs the brute-force
population gradient).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import mixforget as mf
from mixforget import reference as ref
from mixforget._rng import seed_from_record
from mixforget.objectives import OAPL, SDFT, ForwardKL, ReverseKL, TTTDiscover
from mixforget.reference._averaging import BatchMean
from mixforget.reference._objective import Context, Params
from mixforget.reference._registry import TWINS, twin_for
from mixforget.reference.reverse_kl import replay_weight
from mixforget.reference.ttt_discover import adaptive_beta

TARGET = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.6, cov=1.0)
MODEL = TARGET.replace(old_mean=[-1.7], new_mean=[0.5], old_weight=0.5)


def _flat(g: dict) -> np.ndarray:
    return np.r_[g["weight"], g["old_mean"], g["new_mean"]]


def _within(est: np.ndarray, exact: np.ndarray, se: np.ndarray, k: float = 5.0) -> None:
    z = (np.asarray(est) - np.asarray(exact)) / np.asarray(se)
    assert np.all(np.abs(z) < k), f"z-scores {z} (estimate {est}, exact {exact}, se {se})"


# ---------------------------------------------------------------------------------------
# responsibilities / mixture_logpdf (docs: theory-geometry)
# ---------------------------------------------------------------------------------------
def _direct_logs(x, weights, means, full_covs):
    return np.stack(
        [
            math.log(w) + stats.multivariate_normal(m, c).logpdf(x)
            for w, m, c in zip(weights, means, full_covs)
        ],
        axis=1,
    )


def test_responsibilities_match_direct_formula_general_k():
    rng = np.random.default_rng(0)
    weights = np.array([0.2, 0.5, 0.3])
    means = rng.normal(size=(3, 2)) * 2.0
    covs = [
        np.array([0.5, 2.0]),
        np.array([[1.0, 0.3], [0.3, 0.8]]),
        np.array([[2.0, -0.5], [-0.5, 1.0]]),
    ]
    full = [np.diag(covs[0]), covs[1], covs[2]]
    x = rng.normal(size=(2000, 2)) * 3.0
    logs = _direct_logs(x, weights, means, full)
    r = ref.responsibilities(x, weights, means, covs)
    assert r.shape == (2000, 3) and r.dtype == np.float64
    np.testing.assert_allclose(
        r, np.exp(logs - logsumexp(logs, axis=1, keepdims=True)), rtol=1e-10, atol=1e-14
    )
    assert np.max(np.abs(r.sum(axis=1) - 1.0)) < 1e-12
    np.testing.assert_allclose(
        ref.mixture_logpdf(x, weights, means, covs), logsumexp(logs, axis=1), rtol=1e-12
    )
    # an array with leading axis K is the same as a list
    stacked = np.stack(full)
    np.testing.assert_allclose(
        ref.responsibilities(x, weights, means, stacked), r, rtol=1e-12, atol=1e-15
    )


def test_scalar_cov_shared_by_components_in_higher_dimension():
    x = np.array([[0.3, -1.0], [2.0, 2.0]])
    r = ref.responsibilities(x, [0.4, 0.6], [[0.0, 0.0], [1.0, 1.0]], 1.5)
    logs = _direct_logs(x, [0.4, 0.6], [[0.0, 0.0], [1.0, 1.0]], [1.5 * np.eye(2)] * 2)
    np.testing.assert_allclose(r, np.exp(logs - logsumexp(logs, axis=1, keepdims=True)), rtol=1e-12)


def test_responsibilities_stable_far_away_and_input_forms():
    w, m = [0.3, 0.7], [[-1.0], [1.0]]
    x = np.array([-1e3, -50.0, 0.0, 50.0, 1e3])  # 1-D x accepted for d = 1
    r = ref.responsibilities(x, w, m, [1.0, 2.0])
    assert np.all(np.isfinite(r)) and np.max(np.abs(r.sum(axis=1) - 1.0)) < 1e-12
    assert r[0, 1] == 1.0 and r[-1, 1] == 1.0  # the wider component owns both tails
    r_eq = ref.responsibilities(x, w, m, 1.0)
    assert r_eq[0, 0] == 1.0 and r_eq[-1, 1] == 1.0 and np.all(np.isfinite(r_eq))
    lp = ref.mixture_logpdf(x, w, m, [1.0, 2.0])
    assert np.all(np.isfinite(lp))
    # float32 and strided inputs give the float64 answer
    xs = np.linspace(-3, 3, 20).reshape(-1, 2)[:, :1]
    np.testing.assert_allclose(
        ref.responsibilities(xs.astype(np.float32), np.float32(w), m, 1.0),
        ref.responsibilities(
            np.ascontiguousarray(xs.astype(np.float32), dtype=np.float64), w, m, 1.0
        ),
    )
    # K = 1: weights [1.0], responsibilities all one
    one = ref.responsibilities(np.arange(5.0), [1.0], [[0.0]], 1.0)
    assert one.shape == (5, 1) and np.all(one == 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(weights=[0.5, 0.6]),
        dict(weights=[0.0, 1.0]),
        dict(weights=[0.9]),
        dict(means=[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]),
        dict(x=np.zeros((3, 2))),
        dict(covs=[1.0, -1.0]),
        dict(covs=[[[1.0]], [[1.0, 0.0]]]),
        dict(x=[[np.nan]]),
    ],
)
def test_responsibilities_reject_bad_input(kwargs):
    args = dict(x=np.zeros((3, 1)), weights=[0.5, 0.5], means=[[0.0], [1.0]], covs=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError):
        ref.responsibilities(**args)


def test_soft_misassignment_check_value():
    # docs: theory-check-values: alpha = 1/2, Delta = 4: E_{phi_o}[r_n] = 0.034299
    grid = np.linspace(-40.0, 40.0, 160001)
    r = ref.responsibilities(grid, [0.5, 0.5], [[0.0], [4.0]], 1.0)
    value = np.trapezoid(stats.norm.pdf(grid) * r[:, 1], grid)
    assert value == pytest.approx(0.034299, abs=5e-7)


# ---------------------------------------------------------------------------------------
# sample_mixture / starvation_counts (docs: theory-estimators, theory-starvation)
# ---------------------------------------------------------------------------------------
def test_sample_mixture_moments():
    n = 200_000
    weights = [0.3, 0.7]
    means = np.array([[0.0, 1.0], [4.0, -2.0]])
    covs = [np.array([[1.0, 0.5], [0.5, 2.0]]), np.array([0.5, 3.0])]
    x, labels = ref.sample_mixture(n, weights, means, covs, rng=1)
    assert x.shape == (n, 2) and x.dtype == np.float64 and labels.dtype == np.int64
    assert set(np.unique(labels)) == {0, 1}
    p0 = np.mean(labels == 0)
    _within(p0, 0.3, math.sqrt(0.3 * 0.7 / n))
    for k, full in enumerate([covs[0], np.diag(covs[1])]):
        xk = x[labels == k]
        nk = len(xk)
        _within(xk.mean(axis=0), means[k], np.sqrt(np.diag(full) / nk))
        _within(xk.var(axis=0, ddof=1), np.diag(full), np.sqrt(2.0 / nk) * np.diag(full))
    c0 = np.cov(x[labels == 0].T)
    assert c0[0, 1] == pytest.approx(
        0.5, abs=5 * math.sqrt((1.0 * 2.0 + 0.25) / np.sum(labels == 0))
    )
    # same seed, same draws; equal covariances take the shared path
    x2, l2 = ref.sample_mixture(n, weights, means, covs, rng=1)
    assert np.array_equal(x, x2) and np.array_equal(labels, l2)
    xe, le = ref.sample_mixture(
        10, [0.5, 0.5], [[0.0], [10.0]], 1e-6, rng=np.random.SeedSequence(3)
    )
    np.testing.assert_allclose(xe[:, 0], 10.0 * le, atol=0.01)


def test_starvation_zero_frequency_matches_theory():
    n = 400_000
    counts = ref.starvation_counts(0.05, 32, n, rng=0)
    assert counts.shape == (n,) and counts.dtype == np.int64
    p = 0.95**32  # docs: theory-check-values: 0.193711
    assert p == pytest.approx(0.193711, abs=1e-6)
    _within(np.mean(counts == 0), p, math.sqrt(p * (1 - p) / n))
    _within(counts.mean(), 32 * 0.05, math.sqrt(32 * 0.05 * 0.95 / n))
    # bernoulli replay: P = ((1 - λ)(1 - α))^B = 1.946e-5
    n = 2_000_000
    zeros = np.sum(ref.starvation_counts(0.05, 32, n, replay=0.25, rng=1) == 0)
    p = (0.75 * 0.95) ** 32
    assert abs(zeros - n * p) < 5 * math.sqrt(n * p)
    # stratified replay: round(λB) = 8 replay slots, never starved
    strat = ref.starvation_counts(0.05, 32, 100_000, replay=0.25, slots="stratified", rng=2)
    assert strat.min() >= 8
    _within(strat.mean(), 8 + 24 * 0.05, math.sqrt(24 * 0.05 * 0.95 / 100_000))
    # ties round away from zero, as Rust: λ = 0.25, B = 2 gives one replay slot
    assert ref.starvation_counts(0.5, 2, 1000, replay=0.25, slots="stratified", rng=3).min() >= 1
    with pytest.raises(ValueError):
        ref.starvation_counts(0.05, 32, 10, slots="sometimes")
    with pytest.raises(ValueError):
        ref.starvation_counts(1.0, 32, 10)


# ---------------------------------------------------------------------------------------
# estimate_gradient vs population_gradient (docs: theory-scores, theory-estimators,
# theory-population)
# ---------------------------------------------------------------------------------------
UNBIASED = [
    (ForwardKL(), "logit"),
    (ForwardKL(replay=0.3), "logit"),
    (ForwardKL(replay=0.25, replay_slots="stratified"), "direct"),  # λB integer: λ' = λ
    (ReverseKL(), "logit"),
    (ReverseKL(), "direct"),
    (ReverseKL(replay=0.3), "logit"),
    (ReverseKL(replay=0.3, replay_slots="stratified", baseline="none"), "logit"),
    (SDFT(), "logit"),
    (SDFT(direction="forward"), "direct"),
]


@pytest.mark.parametrize("objective,weight_param", UNBIASED, ids=lambda v: repr(v)[:48])
def test_unbiased_estimators_match_population_gradient(objective, weight_param):
    exact = _flat(ref.population_gradient(TARGET, MODEL, objective, weight_param=weight_param))
    est = ref.estimate_gradient(
        TARGET, MODEL, objective, batch_size=32, batches=20_000, rng=11, weight_param=weight_param
    )
    assert est.gradients.shape == (20_000, 3)
    _within(est.mean, exact, est.stderr)


def test_replay_population_equals_on_policy_and_weights_are_bounded():
    # docs: theory-reverse-kl, theory-pred-replay: uncapped replay leaves the population gradient
    # unchanged
    on = _flat(ref.population_gradient(TARGET, MODEL, ReverseKL()))
    for lam in (0.1, 0.5):
        off = _flat(ref.population_gradient(TARGET, MODEL, ReverseKL(replay=lam)))
        np.testing.assert_allclose(off, on, rtol=1e-9, atol=1e-12)
    capped = _flat(ref.population_gradient(TARGET, MODEL, ReverseKL(replay=0.5, weight_cap=1.2)))
    assert np.max(np.abs(capped - on)) > 1e-4  # truncation is biased
    ctx = Context.build(TARGET, MODEL, "logit")
    mix = Params.of_model(MODEL, "logit").mix("logit")
    x = np.linspace(-30, 30, 2001).reshape(1, -1, 1)
    w = replay_weight(ctx, x, ctx.mixture_logpdf(x, mix), 0.3, None)
    assert w.max() <= 1 / 0.7 * (1 + 1e-12) and w.min() > 0


@pytest.mark.parametrize(
    "objective",
    [TTTDiscover(beta=2.0), TTTDiscover(beta="adaptive"), OAPL(lag=1)],
    ids=lambda v: repr(v)[:40],
)
def test_ratio_estimators_consistent_as_group_grows(objective):
    # The LOO entropic weights (TTT-Discover) and V̂ (OAPL) are ratio estimators with an
    # O(1/G) bias (docs: theory-reverse-kl). Richardson extrapolation 2 ĝ(2G) − ĝ(G) removes the 1/G
    # term; the result must match the G → ∞ population gradient.
    exact = _flat(ref.population_gradient(TARGET, MODEL, objective))
    g = 256
    small = ref.estimate_gradient(TARGET, MODEL, objective, batch_size=g, batches=2000, rng=21)
    large = ref.estimate_gradient(TARGET, MODEL, objective, batch_size=2 * g, batches=2000, rng=22)
    combo = 2 * large.mean - small.mean
    se = np.sqrt(4 * large.stderr**2 + small.stderr**2)
    _within(combo, exact, se)


def test_tttdiscover_bias_is_visible_at_small_group():
    exact = _flat(ref.population_gradient(TARGET, MODEL, TTTDiscover(beta=2.0)))
    est = ref.estimate_gradient(
        TARGET, MODEL, TTTDiscover(beta=2.0), batch_size=16, batches=20_000, rng=5
    )
    z = (est.mean - exact) / est.stderr
    assert np.max(np.abs(z)) > 10  # the finite-G ratio bias is real and measurable


def test_sdft_without_anchor_is_stationary():
    # docs: theory-method-closed-forms: κ = 0 makes the teacher equal to the model: zero population
    # gradient
    for direction in ("reverse", "forward"):
        g = _flat(ref.population_gradient(TARGET, MODEL, SDFT(anchor=0.0, direction=direction)))
        np.testing.assert_allclose(g, 0.0, atol=1e-12)


def test_adaptive_beta_solves_kl_ln2():
    rng = np.random.default_rng(4)
    r = rng.normal(size=(50, 16)) * rng.uniform(0.01, 10.0, size=(50, 1))
    beta = adaptive_beta(r, BatchMean(16))
    p = np.exp(beta * r - logsumexp(beta * r, axis=1, keepdims=True))
    kl = np.sum(p * np.log(p * 16), axis=1)
    np.testing.assert_allclose(kl, math.log(2.0), atol=1e-10)
    # ln 2 out of reach (equal rewards): the search stops at the cap 1e8
    assert np.all(adaptive_beta(np.ones((2, 5)), BatchMean(5)) == 1e8)


def test_population_gradient_is_one_dimensional_only():
    t2 = mf.TwoMode(old_mean=[0.0, 0.0], new_mean=[3.0, 0.0], old_weight=0.5, cov=[1.0, 1.0])
    with pytest.raises(NotImplementedError):
        ref.population_gradient(t2, t2.replace(new_mean=[1.0, 0.0]), ReverseKL())


# ---------------------------------------------------------------------------------------
# simulate (docs: theory-training-loop)
# ---------------------------------------------------------------------------------------
def test_one_step_of_simulate_is_the_estimator():
    # mean of −(θ_1 − θ_0)/lr over replicates is the population gradient (uncapped replay)
    objective, lr = ReverseKL(replay=0.3), 1e-3
    tr = ref.simulate(
        TARGET,
        MODEL,
        objective,
        steps=1,
        batch_size=32,
        lr=lr,
        replicates=20_000,
        record_every=1,
        rng=7,
    )
    eta = np.log(tr.old_weight / (1 - tr.old_weight))
    g = (
        -np.stack(
            [
                eta[:, 1] - eta[:, 0],
                tr.old_mean[:, 1, 0] - tr.old_mean[:, 0, 0],
                tr.new_mean[:, 1, 0] - tr.new_mean[:, 0, 0],
            ],
            axis=1,
        )
        / lr
    )
    exact = _flat(ref.population_gradient(TARGET, MODEL, objective))
    _within(g.mean(axis=0), exact, g.std(axis=0, ddof=1) / math.sqrt(len(g)))


def test_forward_kl_without_replay_forgets_mass():
    target = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
    start = target.replace(new_mean=[0.5])
    tr = ref.simulate(
        target,
        start,
        ForwardKL(),
        steps=300,
        batch_size=32,
        lr=0.05,
        replicates=300,
        record_every=10,
        rng=0,
    )
    alpha = tr.old_weight.mean(axis=0)
    se = tr.old_weight.std(axis=0, ddof=1) / math.sqrt(tr.replicates)
    assert alpha[0] == 0.75
    assert np.all(np.diff(alpha) < 5 * np.maximum(se[1:], 1e-12))  # decreasing within noise
    assert alpha[-1] < 0.1
    assert np.all(tr.starved[:, -1] == 300)  # no old samples: every batch is starved
    assert not tr.diverged.any()


def test_trajectory_shapes_and_meta():
    t2 = mf.TwoMode(
        old_mean=[0.0, 0.0], new_mean=[4.0, 0.0], old_weight=0.5, cov=[[1.0, 0.2], [0.2, 1.5]]
    )
    s2 = t2.replace(new_mean=[1.0, 1.0])
    for objective in (
        ReverseKL(replay=0.2),
        SDFT(),
        TTTDiscover(beta=0.5, kl_penalty=0.5),
        OAPL(lag=3),
    ):
        tr = ref.simulate(
            t2, s2, objective, steps=12, batch_size=8, lr=0.02, replicates=5, record_every=4, rng=3
        )
        assert isinstance(tr, mf.Trajectory)
        assert np.array_equal(tr.steps, [0, 4, 8, 12])
        assert (
            tr.old_weight.shape == (5, 4)
            and tr.old_mean.shape == (5, 4, 2)
            and tr.new_mean.shape == (5, 4, 2)
        )
        assert (
            tr.starved.shape == (5, 4)
            and tr.starved.dtype == np.int64
            and tr.diverged.shape == (5,)
        )
        assert np.all(np.diff(tr.starved, axis=1) >= 0)
        assert np.all(tr.old_weight[:, 0] == 0.5) and np.all(tr.new_mean[:, 0] == [1.0, 1.0])
        assert tr.meta["implementation"] == "numpy" and tr.meta["objective"] == objective.as_dict()
        for key in (
            "batch_size",
            "lr",
            "steps",
            "record_every",
            "weight_param",
            "lr_scale",
            "seed",
            "wall_time",
            "threads",
        ):
            assert key in tr.meta
    again = ref.simulate(
        t2,
        s2,
        OAPL(lag=3),
        steps=12,
        batch_size=8,
        lr=0.02,
        replicates=5,
        record_every=4,
        rng=seed_from_record(tr.meta["seed"]),
    )
    assert np.array_equal(again.old_mean, tr.old_mean) and np.array_equal(
        again.old_weight, tr.old_weight
    )
    with pytest.raises(ValueError):
        ref.simulate(t2, s2, ReverseKL(), steps=10, batch_size=8, lr=0.1, record_every=3)
    with pytest.raises(ValueError):
        ref.simulate(
            t2,
            s2,
            ReverseKL(),
            steps=10,
            batch_size=8,
            lr=0.1,
            replicates=10**6,
            record_every=1,
            memory_limit=2**20,
        )


def test_lr_scale_direct_clipping_and_divergence():
    start = TARGET.replace(new_mean=[0.5])
    frozen = ref.simulate(
        TARGET,
        start,
        ReverseKL(),
        steps=20,
        batch_size=16,
        lr=0.1,
        replicates=20,
        record_every=10,
        lr_scale={"old_mean": 0.0},
        rng=1,
    )
    assert np.all(frozen.old_mean == TARGET.old_mean)
    clipped = ref.simulate(
        TARGET,
        start,
        ForwardKL(),
        steps=50,
        batch_size=16,
        lr=1.0,
        replicates=20,
        record_every=10,
        weight_param="direct",
        rng=2,
    )
    assert clipped.old_weight.min() >= 1e-3 and np.any(clipped.old_weight[:, -1] == 1e-3)
    wild = ref.simulate(
        TARGET,
        start,
        ReverseKL(baseline="none"),
        steps=10,
        batch_size=16,
        lr=1e307,
        replicates=20,
        record_every=5,
        rng=3,
    )
    assert wild.diverged.any()
    for arr in (wild.old_weight, wild.old_mean, wild.new_mean):
        assert np.all(np.isfinite(arr))
    first = wild.diverged & np.all(wild.old_weight == wild.old_weight[:, :1], axis=1)
    assert np.all(wild.new_mean[first] == 0.5)  # frozen at the last finite state (here the start)


def test_every_objective_has_exactly_one_twin_module():
    # the core dispatches through the registry only: each public objective maps to the twin
    # defined in the module of its name, and an unknown objective is refused by name
    modules = {
        "ForwardKL": "forward_kl",
        "ReverseKL": "reverse_kl",
        "SDFT": "sdft",
        "TTTDiscover": "ttt_discover",
        "OAPL": "oapl",
        "NewModeREINFORCE": "new_mode_reinforce",
        "KLRegularizedRL": "kl_regularized_rl",
    }
    assert set(TWINS) == set(modules)
    for kind, module in modules.items():
        assert TWINS[kind].__module__ == f"{ref.__name__}.{module}"

    class Unknown(mf.Objective):
        pass

    ctx = Context.build(TARGET, MODEL, "logit")
    with pytest.raises(TypeError, match="Unknown"):
        twin_for(Unknown(), ctx, 8)
