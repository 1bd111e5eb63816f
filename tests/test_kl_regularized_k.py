"""KLRegularizedRL on K-component mixtures (issue 22, K >= 3): the population flow reaches
the closed-form optima of both KL directions, the selection among equally rewarded components
(the natural gradient and the KL optimum keep w_2/w_3, the plain gradient is rich-get-richer),
the finite-batch twin averages to the population gradient, K = 2 Mixtures are the TwoMode's
bits, and bad input is refused before any work."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixforget as mf
from mixforget import theory

W_REF = np.array([0.5, 0.3, 0.2])
#: reward 1 on components 2 and 3 (indices 1, 2), 0 on the old component 1 (index 0)
LABELS = (0.0, 1.0, 1.0)
#: "plain policy gradient": β → 0 (a KL term at most 1e-9·|log w/w_ref| per unit time)
NO_KL = 1e-9


def _separated(weights=W_REF) -> mf.Mixture:
    """Three components 20 σ apart: misassignment Φ(−10) ≈ 1e-23, so rewards, KL and the
    logit flows are those of the weight vectors to machine precision."""
    return mf.Mixture(weights, np.array([[-20.0], [0.0], [20.0]]), 1.0)


def _overlapping(start: bool = False, d: int = 1) -> mf.Mixture:
    means = np.zeros((3, d))
    means[:, 0] = [-2.5, 0.0, 2.5]
    if d > 1:
        means[:, 1] = [0.5, -0.5, 0.5]
    if start:
        return mf.Mixture([0.4, 0.35, 0.25], means + 0.4, 1.0)
    return mf.Mixture(W_REF, means, 1.0)


@pytest.mark.parametrize("kl", ["reverse", "forward"])
@pytest.mark.parametrize("beta", [1.0, 0.5, 0.1])
def test_population_flow_reaches_the_closed_form_optimum(kl, beta):
    target = _separated()
    objective = mf.KLRegularizedRL(reward_labels=LABELS, beta=beta, kl=kl)
    run = mf.population_flow(
        target, target, objective, steps=600, lr=0.5, record_every=600, update="natural"
    )
    solve = (
        theory.reverse_kl_regularized_weights
        if kl == "reverse"
        else theory.forward_kl_regularized_weights
    )
    optimum = solve(W_REF, LABELS, beta)
    assert not run.diverged.any()
    np.testing.assert_allclose(run.weights[0, -1], optimum, rtol=0, atol=1e-6)
    # the optimum moved mass off the unrewarded component
    assert run.weights[0, -1, 0] < W_REF[0] - 0.2


def test_plain_gradient_flow_reaches_the_same_optimum():
    target = _separated()
    objective = mf.KLRegularizedRL(reward_labels=LABELS, beta=0.5)
    run = mf.population_flow(target, target, objective, steps=3000, lr=1.0, record_every=3000)
    optimum = theory.reverse_kl_regularized_weights(W_REF, LABELS, 0.5)
    np.testing.assert_allclose(run.weights[0, -1], optimum, rtol=0, atol=1e-6)


def _ratio(run) -> np.ndarray:
    return run.weights[0, :, 1] / run.weights[0, :, 2]


def test_selection_natural_keeps_the_ratio_and_plain_is_rich_get_richer():
    target = _separated()
    kw = dict(steps=400, lr=0.05, record_every=20)
    for beta in (NO_KL, 1.0):
        objective = mf.KLRegularizedRL(reward_labels=LABELS, beta=beta)
        natural = mf.population_flow(target, target, objective, update="natural", **kw)
        assert np.max(np.abs(_ratio(natural) - 1.5)) < 1e-9, beta
        assert natural.weights[0, -1, 0] < 0.5  # the old mass did move
    no_kl = mf.KLRegularizedRL(reward_labels=LABELS, beta=NO_KL)
    plain = mf.population_flow(target, target, no_kl, update="sgd_full_softmax", **kw)
    ratio = _ratio(plain)
    assert np.all(np.diff(ratio) > 0) and ratio[-1] > 2.5, ratio
    # the discrete flows follow the logit ODEs dη_k/dt = w_k (r_k − E r) (lr·steps = time 20),
    # on all K logits and on the K − 1 free ones (the last pinned at 0)
    for update, logits in (("sgd_full_softmax", "all"), ("sgd", "pinned")):
        run = mf.population_flow(target, target, no_kl, update=update, **kw)
        ode = theory.policy_gradient_logit_flow(W_REF, LABELS, time=20.0, logits=logits)
        np.testing.assert_allclose(run.weights[0, -1], ode, rtol=5e-3)


def test_plain_steps_on_pinned_logits_favour_the_free_component():
    """With the richer rewarded component pinned, 'sgd' moves w_2/w_3 up (the free one
    gains), 'sgd_full_softmax' down (the richer one gains), 'natural' not at all."""
    target = _separated(np.array([0.5, 0.2, 0.3]))
    no_kl = mf.KLRegularizedRL(reward_labels=LABELS, beta=NO_KL)
    kw = dict(steps=200, lr=0.05, record_every=200)
    final = {
        update: _ratio(mf.population_flow(target, target, no_kl, update=update, **kw))[-1]
        for update in ("sgd", "sgd_full_softmax", "natural")
    }
    assert final["sgd"] > 1.0 > 2 / 3 > final["sgd_full_softmax"], final
    assert abs(final["natural"] - 2 / 3) < 1e-9, final


def test_kl_regularised_plain_flow_returns_to_the_reference_ratio():
    target = _separated()
    objective = mf.KLRegularizedRL(reward_labels=LABELS, beta=1.0)
    run = mf.population_flow(
        target, target, objective, steps=4000, lr=0.2, record_every=10, update="sgd_full_softmax"
    )
    ratio = _ratio(run)
    assert ratio.max() > 1.55  # the plain steps leave the ratio on the way …
    assert abs(ratio[-1] - 1.5) < 1e-6  # … and the KL optimum brings it back


TWIN_CASES = [
    mf.KLRegularizedRL(reward_labels=(0.0, 1.0, 0.5), beta=0.5),
    mf.KLRegularizedRL(reward_labels=(1.0, 0.0, 2.0), beta=0.3, kl_estimator="k1", advantage="raw"),
    mf.KLRegularizedRL(beta=0.5, kl_estimator="k3", reference="target"),
    mf.KLRegularizedRL(beta=0.7, kl="forward", reference="target"),
    mf.KLRegularizedRL(reward="target_logpdf", beta=1.0, reference="flat"),
    mf.KLRegularizedRL(reward="new_logpdf", beta=0.5, reference="target", advantage="raw"),
    mf.KLRegularizedRL(reward="bump", reward_center=(1.0, 0.0), reward_width=1.5, beta=0.5),
]


@pytest.mark.parametrize("objective", TWIN_CASES, ids=lambda o: o.label[:60])
def test_finite_batch_twin_averages_to_the_population_gradient(objective):
    d = 2 if objective.reward == "bump" else 1
    target, model = _overlapping(d=d), _overlapping(start=True, d=d)
    est = mf.estimate_gradient(
        target, model, objective, batch_size=8, batches=4000, rng=11, backend="numpy"
    )
    exact = mf.population_gradient(target, model, objective)
    expected = np.concatenate([exact["logits"], np.ravel(exact["means"])])
    z = (est.mean - expected) / est.stderr
    assert np.max(np.abs(z)) < 5.0, z
    assert np.max(np.abs(expected)) > 0.01  # a gradient that is not trivially 0


def test_log_density_reward_and_flat_reference_is_reverse_kl():
    """r = log p*, β = 1, KL toward the flat measure: v = −(log q − log p*), ReverseKL's
    coefficient, for K = 3 as for K = 2."""
    target, model = _overlapping(), _overlapping(start=True)
    kl_rl = mf.KLRegularizedRL(reward="target_logpdf", beta=1.0, reference="flat")
    a = mf.population_gradient(target, model, kl_rl)
    b = mf.population_gradient(target, model, mf.ReverseKL())
    for key in ("logits", "means"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-13)


def _as_mixture(two: mf.TwoMode) -> mf.Mixture:
    return mf.Mixture(
        [two.old_weight, 1 - two.old_weight], np.stack([two.old_mean, two.new_mean]), 1.0
    )


@pytest.mark.parametrize(
    "objective",
    [
        mf.KLRegularizedRL(beta=0.5),
        mf.KLRegularizedRL(kl="forward", advantage="group"),
        mf.KLRegularizedRL(reward="target_logpdf", reference="flat", kl_estimator="k1"),
    ],
    ids=lambda o: o.label,
)
def test_two_component_mixture_is_the_two_mode_bit_for_bit(objective):
    target = mf.TwoMode(old_mean=[-2.0], new_mean=[2.5], old_weight=0.7)
    start = target.replace(new_mean=[0.3], old_weight=0.6)
    mt, ms = _as_mixture(target), _as_mixture(start)
    kw = dict(steps=20, batch_size=8, replicates=6, record_every=5, rng=3)
    two = mf.simulate(target, start, objective, **kw)
    mix = mf.simulate(mt, ms, objective, **kw)
    assert two.old_weight.tobytes() == mix.old_weight.tobytes()
    assert two.new_mean.tobytes() == mix.new_mean.tobytes()
    flow_two = mf.population_flow(target, start, objective, steps=30, record_every=10)
    flow_mix = mf.population_flow(mt, ms, objective, steps=30, record_every=10)
    assert flow_two.old_weight.tobytes() == flow_mix.old_weight.tobytes()
    g_two = mf.estimate_gradient(target, start, objective, batch_size=8, batches=50, rng=2)
    g_mix = mf.estimate_gradient(mt, ms, objective, batch_size=8, batches=50, rng=2)
    assert g_two.gradients.tobytes() == g_mix.gradients.tobytes()


KL = mf.KLRegularizedRL


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: KL(beta=0.0), "beta"),
        (lambda: KL(beta=math.nan), "beta"),
        (lambda: KL(beta=-1.0), "beta"),
        (lambda: KL(reward="ball", reward_center=(0.0,), reward_labels=(0, 1)), "reward_labels"),
        (lambda: KL(reward_labels=(0.0,)), "reward_labels"),
        (lambda: KL(reward_labels=(0.0, math.inf, 1.0)), r"reward_labels\[1\]"),
        (lambda: KL(reward_labels=(0, 1, 1), reward_new=2.0), "reward_old and reward_new"),
    ],
)
def test_bad_fields_are_refused_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("objective", "kwargs", "match"),
    [
        (KL(reward_labels=(0.0, 1.0)), {}, r"reward_labels.*\(K = 3\), got 2"),
        (KL(reward_labels=(0.0, 1.0, 1.0, 1.0)), {}, r"reward_labels.*\(K = 3\), got 4"),
        (KL(reward="halfspace", reward_direction=(1.0, 0.0)), {}, "reward_direction has 2"),
        (KL(advantage="group"), {"batch_size": 1}, "batch_size must be >= 2"),
    ],
)
def test_bad_k_component_settings_are_refused_before_any_work(objective, kwargs, match):
    target, start = _overlapping(), _overlapping(start=True)
    with pytest.raises(ValueError, match=match):
        mf.simulate(target, start, objective, steps=5, replicates=2, backend="numpy", **kwargs)
    if "batch_size" not in kwargs:
        with pytest.raises(ValueError, match=match):
            mf.population_flow(target, start, objective, steps=5)


def test_two_mode_runs_refuse_reward_labels():
    target = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.7)
    with pytest.raises(ValueError, match="reward_labels is for K-component runs"):
        mf.simulate(target, target, mf.KLRegularizedRL(reward_labels=(0.0, 1.0)), steps=2)


def test_two_mode_runs_refuse_the_full_softmax_update():
    target = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.7)
    with pytest.raises(ValueError, match=r"lr_scale=\{'weight': 2.0\}"):
        mf.population_flow(target, target, mf.KLRegularizedRL(), update="sgd_full_softmax")


def test_default_labels_follow_the_new_components():
    objective = mf.KLRegularizedRL(reward_old=-1.0, reward_new=2.0)
    assert objective.label_rewards(4, (1, 3)) == (-1.0, 2.0, -1.0, 2.0)
    assert mf.KLRegularizedRL(reward_labels=(3, 1, 2)).label_rewards(3, (2,)) == (3.0, 1.0, 2.0)
