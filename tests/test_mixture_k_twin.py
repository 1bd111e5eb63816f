"""The K-component NumPy twin against the theory (issue 20): its one-step estimates average to
the quadrature population gradient (within 5 standard errors), vanish on average at the
forward-KL-with-replay optimum and at the reverse-KL target, and its per-component starved
batches occur at the rates of the formulas (binomial 5σ, >= 2000 batches); trained
replicates settle at the optimum."""

from __future__ import annotations

import numpy as np
import pytest

import mixforget as mf
from mixforget.theory import component_starvation_probability, forward_kl_replay_optimum
from test_mixture_k import K3, K3_START, K4, K4_START

BATCHES = 4000


def _flat(g: dict) -> np.ndarray:
    return np.concatenate([g["logits"], np.ravel(g["means"])])


def _within_5_se(est: mf.results.GradientEstimates, expected: np.ndarray) -> None:
    mean, se = est.mean, est.stderr
    assert np.all(se > 0)
    z = (mean - expected) / se
    assert np.max(np.abs(z)) < 5.0, z


def _at(model: mf.Mixture, weights) -> mf.Mixture:
    return model.replace(weights=np.asarray(weights) / np.sum(weights))


@pytest.mark.parametrize(
    ("target", "model", "objective", "new"),
    [
        (K3, K3_START, mf.ForwardKL(replay=0.3), [2]),
        (K3, K3_START, mf.ForwardKL(0.25, "stratified", (0.7, 0.3)), [2]),
        (K3, K3_START, mf.ReverseKL(), [2]),
        (K3, K3_START, mf.ReverseKL(replay=0.3, replay_mix=(0.2, 0.8), baseline="none"), [2]),
        (K3, K3_START, mf.ReverseKL(0.25, "stratified", None, "none"), [1]),
        (K4, K4_START, mf.ForwardKL(replay=0.2), [1, 3]),
        (K4, K4_START, mf.ReverseKL(replay=0.3, replay_mix=(0.2, 0.3, 0.5)), [1]),
    ],
)
def test_twin_estimates_average_to_the_population_gradient(target, model, objective, new):
    est = mf.estimate_gradient(
        target, model, objective, batch_size=16, batches=BATCHES, backend="numpy",
        new_components=new, rng=11,
    )  # fmt: skip
    exact = _flat(mf.population_gradient(target, model, objective, new_components=new))
    assert est.gradients.shape == (
        BATCHES,
        (target.n_components - 1) + target.n_components * target.dim,
    )
    _within_5_se(est, exact)


def test_twin_estimates_vanish_at_the_optima():
    """ForwardKL at its replay optimum: zero on average; ReverseKL at the target: zero."""
    lam = 0.3
    optimum = _at(K4, forward_kl_replay_optimum(K4, [1], lam))
    objective = mf.ForwardKL(replay=lam)
    est = mf.estimate_gradient(K4, optimum, objective, batch_size=8, batches=BATCHES,
                               backend="numpy", new_components=[1])  # fmt: skip
    _within_5_se(est, np.zeros(est.gradients.shape[1]))
    # at the target log q − log p* = 0 at every sample: every estimate is exactly 0
    est = mf.estimate_gradient(K3, K3, mf.ReverseKL(replay=0.2), batch_size=8, batches=BATCHES,
                               backend="numpy")  # fmt: skip
    assert np.all(est.gradients == 0.0)


def _binomial_check(starved: np.ndarray, p: np.ndarray) -> None:
    n = starved.shape[0]
    freq = starved.mean(axis=0)
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 5 * sigma + 1e-12), (freq, p)
    assert np.any((p > 0.01) & (p < 0.99))  # a check that could fail


@pytest.mark.parametrize(
    ("objective", "kind", "new"),
    [
        (mf.ReverseKL(), "on_policy", [2]),
        (mf.ReverseKL(replay=0.4, replay_mix=(0.25, 0.75)), "reverse_kl", [2]),
        (mf.ForwardKL(replay=0.3, replay_mix=(0.6, 0.4)), "forward_kl", [2]),
        (mf.ForwardKL(replay=0.2), "forward_kl", [0, 2]),
    ],
)
def test_per_component_starvation_matches_its_formula(objective, kind, new):
    batch = 6
    model = K3_START if kind != "forward_kl" else K3
    est = mf.estimate_gradient(K3, model, objective, batch_size=batch, batches=BATCHES,
                               backend="numpy", new_components=new, rng=5)  # fmt: skip
    weights = model.weights
    mix = objective.replay_mix
    if kind == "forward_kl" and mix is None:
        old = [j for j in range(3) if j not in new]
        mix = tuple(K3.weights[old] / K3.weights[old].sum())
    p = component_starvation_probability(
        weights, batch, objective.replay, mix, objective=kind, new_components=new
    )
    _binomial_check(est.starved, p)


def test_trained_starvation_counts_are_cumulative_per_component():
    steps, batch = 3, 5
    traj = mf.simulate(K3, K3_START, mf.ReverseKL(), steps=steps, batch_size=batch, lr=1e-9,
                       replicates=2000, record_every=1, backend="numpy", rng=3)  # fmt: skip
    assert traj.starved.shape == (2000, steps + 1, 3)
    assert np.all(np.diff(traj.starved, axis=1) >= 0) and np.all(traj.starved[:, 0] == 0)
    # lr ≈ 0: every step's batch starves component j with probability (1 − w_j)^B
    first = traj.starved[:, 1]
    _binomial_check(first, (1 - K3_START.weights) ** batch)
    np.testing.assert_array_equal(traj.starved_by_component, traj.starved[:, -1])


@pytest.mark.parametrize(
    ("target", "start", "objective", "new"),
    [
        (K3, K3_START, mf.ForwardKL(replay=0.3, replay_mix=(0.5, 0.5)), [2]),
        (K4, K4_START, mf.ForwardKL(replay=0.4), [1]),
    ],
)
def test_trained_replicates_settle_at_the_forward_kl_replay_optimum(target, start, objective, new):
    traj = mf.simulate(target, start, objective, steps=600, batch_size=64, lr=0.1, replicates=64,
                       record_every=300, backend="numpy", new_components=new, update="natural",
                       rng=2)  # fmt: skip
    optimum = forward_kl_replay_optimum(target, new, objective.replay, objective.replay_mix)
    final = traj.weights[:, -1]
    se = final.std(axis=0, ddof=1) / np.sqrt(final.shape[0])
    # SGD noise around the optimum: the mean within 5 SE plus a small O(lr) bias
    assert np.all(np.abs(final.mean(axis=0) - optimum) <= 5 * se + 5e-3), (final.mean(0), optimum)
    assert not traj.diverged.any()


def test_reverse_kl_replicates_stay_at_the_target():
    traj = mf.simulate(K3, K3, mf.ReverseKL(replay=0.2), steps=400, batch_size=64, lr=0.05,
                       replicates=64, record_every=200, backend="numpy", rng=4)  # fmt: skip
    final = traj.weights[:, -1]
    se = final.std(axis=0, ddof=1) / np.sqrt(final.shape[0])
    assert np.all(np.abs(final.mean(axis=0) - K3.weights) <= 5 * se + 5e-3)
    assert np.all(traj.drift[:, -1].mean(axis=0) < 0.2)
