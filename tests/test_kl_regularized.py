"""KL-regularised RL (issue 22, docs: theory-kl-regularized): the closed-form optima and logit
flows of mixforget.theory.kl_regularized, and the objective KLRegularizedRL against them —
population flows and finite batches reach the closed forms, the KL estimators are unbiased
where they should be (and k3's bias is the predicted one), Rust and the twin agree, reward
log p* with the flat reference is ReverseKL bit for bit, bad settings are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixforget as mf
from mixforget import config
from mixforget import reference as ref
from mixforget.theory import (
    forward_kl_regularized_weights,
    group_normalised_old_weight,
    kl_regularized_old_weight,
    natural_gradient_logit_flow,
    policy_gradient_logit_flow,
    reverse_kl_regularized_weights,
)

# the issue's check values: K = 2, α_ref = 0.75, r_old = 0, r_new = 1
CHECKS = {
    "reverse": {1.0: 0.52463, 0.5: 0.28877, 0.1: 1.3618e-4},
    "forward": {1.0: 0.5, 0.5: 0.31699, 0.1: 0.07303},
}
CASES = [(kl, beta) for kl, by_beta in CHECKS.items() for beta in by_beta]
# well separated (12 σ): the label reward is r_k on component k to e^{-18}
WORLD = mf.TwoMode(old_mean=[-6.0], new_mean=[6.0], old_weight=0.75)
# overlapping modes, model away from the target: the estimators' test bed
TARGET = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.6)
MODEL = TARGET.replace(old_mean=[-1.7], new_mean=[0.5], old_weight=0.5)


def _flat(g: dict) -> np.ndarray:
    return np.r_[g["weight"], g["old_mean"], g["new_mean"]]


# ---------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kl, beta", CASES)
def test_closed_forms_give_the_issue_check_values(kl, beta):
    expected = CHECKS[kl][beta]
    got = kl_regularized_old_weight(0.75, 1.0, beta, kl)
    assert got == pytest.approx(expected, rel=5e-5)


def test_closed_forms_solve_their_stationarity_conditions_for_any_k():
    rng = np.random.default_rng(4)
    for k in (1, 2, 3, 7):
        w_ref = rng.dirichlet(np.ones(k))
        r = rng.normal(size=k)
        for beta in (0.05, 1.0, 20.0):
            rev = reverse_kl_regularized_weights(w_ref, r, beta)
            fwd = forward_kl_regularized_weights(w_ref, r, beta)
            assert rev.sum() == pytest.approx(1.0, abs=1e-15)
            assert fwd.sum() == pytest.approx(1.0, abs=1e-15)
            # reverse: r_k − β log(w_k/w_ref,k) is the same for every k
            spread = r - beta * np.log(rev / w_ref)
            assert np.ptp(spread) < 1e-12 * max(1.0, np.abs(spread).max())
            # forward: r_k + β w_ref,k/w_k = ν, ν in (max r, max r + β]
            nu = r + beta * w_ref / fwd
            assert np.ptp(nu) < 1e-12 * max(1.0, np.abs(nu).max())
            assert r.max() < nu[0] <= r.max() + beta * (1 + 1e-12)


def test_closed_forms_limits_and_input_checks():
    w_ref, r = [0.5, 0.3, 0.2], [0.0, 1.0, 1.0]
    for solve in (reverse_kl_regularized_weights, forward_kl_regularized_weights):
        np.testing.assert_allclose(solve(w_ref, r, 1e9), w_ref, rtol=1e-8)  # β → ∞: w_ref
        w = solve(w_ref, r, 0.3)
        assert w[1] / w[2] == pytest.approx(1.5, rel=1e-12)  # equal rewards keep their ratio
        for beta in (0.0, -1.0, math.nan, math.inf):
            with pytest.raises(ValueError, match="beta"):
                solve(w_ref, r, beta)
        with pytest.raises(ValueError, match="same length"):
            solve(w_ref, [0.0, 1.0], 1.0)
        with pytest.raises(ValueError, match="reference_weights"):
            solve([0.5, 0.0, 0.5], r, 1.0)
    with pytest.raises(ValueError, match="kl"):
        kl_regularized_old_weight(0.75, 1.0, 1.0, "both")
    for alpha_ref in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError, match="alpha_ref"):
            kl_regularized_old_weight(alpha_ref, 1.0, 1.0, "reverse")
        with pytest.raises(ValueError, match="alpha_ref"):
            group_normalised_old_weight(alpha_ref, 1.0, 1.0)


def test_natural_gradient_keeps_the_ratio_and_plain_gradient_is_rich_get_richer():
    w_ref, r = [0.5, 0.3, 0.2], [0.0, 1.0, 1.0]
    natural = natural_gradient_logit_flow(w_ref, r, time=8.0, steps=800)
    plain = policy_gradient_logit_flow(w_ref, r, time=8.0, steps=800)
    assert natural[1] / natural[2] == pytest.approx(1.5, abs=1e-9)
    # the natural flow is w(t) ∝ w(0) e^{r t}: RK4 reproduces it
    exact = np.array(w_ref) * np.exp(np.array(r) * 8.0)
    np.testing.assert_allclose(natural, exact / exact.sum(), rtol=1e-10)
    # the plain flow moves each logit ∝ its weight: the larger correct mode runs away
    ratios = [
        (w := policy_gradient_logit_flow(w_ref, r, time=t, steps=800))[1] / w[2]
        for t in (2.0, 8.0, 32.0)
    ]
    assert ratios[0] > 1.5 + 1e-3 and ratios[0] < ratios[1] < ratios[2]
    # both drain the unrewarded mode; the plain flow slower (its logit moves ∝ w_1 → 0)
    later = policy_gradient_logit_flow(w_ref, r, time=32.0, steps=800)
    assert natural[0] < plain[0] < 0.5 and later[0] < plain[0]
    assert policy_gradient_logit_flow(w_ref, r, time=0.0)[1] / 0.2 == pytest.approx(1.5)


# ---------------------------------------------------------------------------------------
# the objective against the closed forms (well-separated K = 2)
# ---------------------------------------------------------------------------------------
def _steps_and_lr(kl: str, beta: float) -> tuple[int, float]:
    # reverse at β = 0.1: the logit's curvature at the optimum is β α*(1 − α*) ≈ 1.4e-5
    return (100_000, 4.0) if (kl, beta) == ("reverse", 0.1) else (4000, 1.0)


@pytest.mark.parametrize("kl, beta", CASES)
def test_population_flow_reaches_the_closed_form(kl, beta):
    steps, lr = _steps_and_lr(kl, beta)
    objective = mf.KLRegularizedRL(beta=beta, kl=kl)
    flow = mf.population_flow(WORLD, WORLD, objective, steps=steps, lr=lr, record_every=steps)
    alpha_star = kl_regularized_old_weight(0.75, 1.0, beta, kl)
    assert abs(flow.old_weight[0, -1] - alpha_star) < 1e-6
    # the means stay at the reference's (the label reward is flat on each component)
    assert abs(flow.old_mean[0, -1, 0] + 6.0) < 1e-5 and abs(flow.new_mean[0, -1, 0] - 6.0) < 1e-5


@pytest.mark.parametrize("kl, beta", CASES)
def test_finite_batches_reach_the_closed_form(kl, beta):
    """At the optimum the value v = r − β κ is the same on both components (that is the
    stationarity condition), so every sample's advantage vanishes: the finite-batch fixed
    point is α* itself, with no spread across replicates."""
    steps, lr = _steps_and_lr(kl, beta)
    objective = mf.KLRegularizedRL(beta=beta, kl=kl)
    run = mf.simulate(
        WORLD, WORLD, objective, steps=steps, batch_size=16, lr=lr, replicates=16,
        record_every=steps, rng=5,
    )  # fmt: skip
    final = run.old_weight[:, -1]
    alpha_star = kl_regularized_old_weight(0.75, 1.0, beta, kl)
    se = final.std(ddof=1) / math.sqrt(len(final))
    assert abs(final.mean() - alpha_star) <= 5 * se + 1e-6
    assert np.abs(final - alpha_star).max() < 1e-6
    assert not run.diverged.any()


# ---------------------------------------------------------------------------------------
# estimators: unbiased where they should be, k3's bias where it is not
# ---------------------------------------------------------------------------------------
def _estimate(objective, batch_size=32, batches=20_000, rng=11):
    return mf.estimate_gradient(
        TARGET, MODEL, objective, batch_size=batch_size, batches=batches, rng=rng
    )


def _within(est, exact, k: float = 5.0) -> None:
    z = (est.mean - exact) / est.stderr
    assert np.all(np.abs(z) < k), f"z = {z}"


@pytest.mark.parametrize(
    "objective",
    [
        mf.KLRegularizedRL(reference="target", kl_estimator="exact"),
        mf.KLRegularizedRL(reference="target", kl_estimator="k1", beta=0.5),
        mf.KLRegularizedRL(reference="target", kl_estimator="k1", advantage="raw"),
        mf.KLRegularizedRL(reference="target", kl="forward", beta=0.7),
        mf.KLRegularizedRL(reward="new_logpdf", reference="target", beta=0.3),
    ],
    ids=repr,
)
def test_exact_k1_and_forward_estimators_are_unbiased(objective):
    exact = _flat(mf.population_gradient(TARGET, MODEL, objective))
    _within(_estimate(objective), exact)


def test_exact_limit_in_three_dimensions_matches_finite_batches():
    """The span reduction (means in d = 3, reference = target) and the forward KL's node
    placement on the reference's components: finite-batch means within 5 SE."""
    target = mf.TwoMode(old_mean=[-2.0, 0.5, 0.0], new_mean=[2.0, 0.0, 1.0], old_weight=0.6)
    model = target.replace(old_mean=[-1.7, 0.0, 0.3], new_mean=[0.5, 0.4, 0.0], old_weight=0.5)
    for objective in (
        mf.KLRegularizedRL(kl="forward", reference="target", beta=0.7),
        mf.KLRegularizedRL(kl_estimator="k3", reference="target"),
        mf.KLRegularizedRL(reward="target_logpdf", reference="target", beta=0.5),
    ):
        exact = _flat(mf.population_gradient(target, model, objective))
        est = mf.estimate_gradient(target, model, objective, batch_size=32, batches=20_000, rng=3)
        _within(est, exact)


def test_k3_estimates_the_reverse_minus_the_forward_kl_gradient():
    """Score function with k3 = ρ − 1 − log ρ as the reward: E_q[k3 s] = ∇KL(q ‖ q_ref) −
    ∇KL(q_ref ‖ q) (E_q[k3] is the KL, but k3 itself depends on θ). Zero label rewards isolate
    the KL term."""
    quiet = dict(reference="target", reward_old=0.0, reward_new=0.0)
    k3 = mf.KLRegularizedRL(kl_estimator="k3", **quiet)
    reverse = _flat(mf.population_gradient(TARGET, MODEL, mf.KLRegularizedRL(**quiet)))
    forward = _flat(
        mf.population_gradient(TARGET, MODEL, mf.KLRegularizedRL(kl="forward", **quiet))
    )
    k3_limit = _flat(mf.population_gradient(TARGET, MODEL, k3))
    np.testing.assert_allclose(k3_limit, reverse - forward, rtol=1e-9, atol=1e-12)
    est = _estimate(k3)
    _within(est, k3_limit)  # the finite-batch mean is the predicted (biased) limit
    bias_z = (est.mean - reverse) / est.stderr
    assert np.max(np.abs(bias_z)) > 20, f"k3's bias vs the reverse-KL gradient: z = {bias_z}"
    # the reverse KL with zero rewards is ReverseKL (the target is the reference)
    np.testing.assert_allclose(
        reverse,
        _flat(mf.population_gradient(TARGET, MODEL, mf.ReverseKL())),
        rtol=1e-12,
        atol=1e-14,
    )


def test_group_normalisation_is_sign_like_at_the_optimum_and_moves_the_means():
    """GRPO's (v − mean)/sd: with label rewards the group's spread of v vanishes at the
    optimum, so the normalised weight gradient keeps a magnitude of order one on either side
    of α* (LOO's vanishes linearly), and the e^{-18} structure inside each component, divided
    by that spread, moves the means: the flow does not settle at α*."""
    alpha_star = kl_regularized_old_weight(0.75, 1.0, 0.5, "reverse")
    near = {}
    for advantage in ("group", "loo"):
        objective = mf.KLRegularizedRL(
            beta=0.5, reference="target", advantage=advantage, kl_estimator="k1"
        )
        near[advantage] = [
            mf.population_gradient(WORLD, WORLD.replace(old_weight=alpha_star + d), objective)[
                "weight"
            ]
            for d in (-1e-4, 1e-4)
        ]
    assert near["group"][0] < -0.4 and near["group"][1] > 0.4
    assert np.abs(near["loo"]).max() < 1e-4 and near["loo"][0] < 0 < near["loo"][1]
    flows = {
        advantage: mf.population_flow(
            WORLD,
            WORLD,
            mf.KLRegularizedRL(beta=0.5, advantage=advantage, kl_estimator="k1"),
            steps=3000,
            lr=1.0,
            record_every=3000,
        )
        for advantage in ("group", "loo")
    }
    assert abs(flows["loo"].old_weight[0, -1] - alpha_star) < 1e-6
    assert abs(flows["group"].new_mean[0, -1, 0] - 6.0) > 0.1  # measured: 5.58 (lr 1)
    assert abs(flows["group"].old_weight[0, -1] - alpha_star) > 1e-3  # measured: 0.3069


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_exact_kl_beside_a_group_normalised_reward_reaches_its_own_stationary_weight(beta):
    """GRPO's layout (reward advantages normalised, KL a separate loss term) optimises
    E[r]/sd(r) − β KL: its stationary weight is group_normalised_old_weight, far below the
    KL-regularised α*, and 0 for small β (old mass lost)."""
    objective = mf.KLRegularizedRL(beta=beta, advantage="group")
    flow = mf.population_flow(WORLD, WORLD, objective, steps=20_000, lr=0.5, record_every=20_000)
    predicted = group_normalised_old_weight(0.75, 1.0, beta)
    assert abs(flow.old_weight[0, -1] - predicted) < 1e-6
    assert predicted < kl_regularized_old_weight(0.75, 1.0, beta, "reverse") - 0.05
    assert (predicted == 0.0) == (beta == 0.5)


# ---------------------------------------------------------------------------------------
# Rust and the twin; ReverseKL as a special case
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "objective",
    [
        mf.KLRegularizedRL(beta=0.5),
        mf.KLRegularizedRL(beta=0.5, kl="forward", advantage="group"),
        mf.KLRegularizedRL(kl_estimator="k3", advantage="group", reward="target_logpdf"),
        mf.KLRegularizedRL(reference="target", beta=0.3, advantage="raw"),
    ],
    ids=repr,
)
def test_rust_and_twin_agree(objective):
    start = TARGET.replace(old_weight=0.7)
    exact = _flat(mf.population_gradient(TARGET, MODEL, objective))
    np.testing.assert_allclose(
        _flat(ref.population_gradient(TARGET, MODEL, objective)), exact, rtol=1e-9, atol=1e-10
    )
    run = dict(steps=40, batch_size=8, lr=0.05, replicates=2000, record_every=40)
    rust = mf.simulate(TARGET, start, objective, rng=1, **run)
    twin = mf.simulate(TARGET, start, objective, rng=2, backend="numpy", **run)
    for name in ("old_weight", "old_mean", "new_mean"):
        x, y = getattr(rust, name)[:, -1].astype(float), getattr(twin, name)[:, -1].astype(float)
        se = np.sqrt(x.var(axis=0, ddof=1) / len(x) + y.var(axis=0, ddof=1) / len(y))
        z = (x.mean(axis=0) - y.mean(axis=0)) / se
        assert np.all(np.abs(z) < 5.0), f"{name}: z = {z}"
        assert np.all(se > 0)


def test_reward_log_target_with_flat_reference_is_reverse_kl_bit_for_bit():
    special = mf.KLRegularizedRL(reward="target_logpdf", reference="flat")
    kw = dict(steps=200, batch_size=16, replicates=8, record_every=10, rng=3)
    a, b = (
        mf.simulate(TARGET, MODEL, mf.ReverseKL(), **kw),
        mf.simulate(TARGET, MODEL, special, **kw),
    )
    c, d = (mf.population_flow(TARGET, MODEL, o, steps=300) for o in (mf.ReverseKL(), special))
    for name in ("old_weight", "old_mean", "new_mean"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        np.testing.assert_array_equal(getattr(c, name), getattr(d, name))
    assert a.old_weight[:, -1].std() > 0 and c.old_weight[0, -1] != c.old_weight[0, 0]


# ---------------------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, bad",
    [
        ("beta", 0.0),
        ("beta", -1.0),
        ("beta", math.nan),
        ("beta", math.inf),
        ("reward", "accuracy"),
        ("reward_old", math.nan),
        ("reference", "model"),
        ("kl", "both"),
        ("kl_estimator", "k2"),
        ("advantage", "normalised"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(field, bad):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        mf.KLRegularizedRL(**{field: bad})
    doc = {"target": {"old_mean": 0.0, "new_mean": 1.0, "old_weight": 0.5},
           "objective": {"kind": "KLRegularizedRL", field: bad}}  # fmt: skip
    with pytest.raises(config.ConfigError, match=rf"objective\.{field}"):
        config.parse_config(doc)


def test_inconsistent_settings_are_refused():
    with pytest.raises(ValueError, match=r"^kl_estimator must be 'exact' with kl='forward'"):
        mf.KLRegularizedRL(kl="forward", kl_estimator="k1")
    for kw in ({"kl": "forward"}, {"kl_estimator": "k3"}):
        with pytest.raises(ValueError, match=r"^reference must be 'start'"):
            mf.KLRegularizedRL(reference="flat", **kw)


def test_group_of_one_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"^batch_size must be >= 2 with KLRegularizedRL"):
        mf.simulate(WORLD, WORLD, mf.KLRegularizedRL(advantage="group"), batch_size=1)
