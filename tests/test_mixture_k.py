"""K-component mixtures (issue 20, docs: theory-k-components): a K = 2 Mixture is its TwoMode
bit for bit at every entry point; K >= 3 runs on the NumPy twin, whose estimates average to the
quadrature population gradient, which equals an independent dense-grid gradient; the flows
reach the forward-KL-with-replay optimum and the reverse-KL target; starvation frequencies
match their formulas; bad input is refused before any work."""

from __future__ import annotations

import numpy as np
import pytest

import mixforget as mf
from mixture_k_grid import grid_gradient
from test_golden import OBJECTIVES

TWO = mf.TwoMode(old_mean=[-2.0], new_mean=[2.5], old_weight=0.7, cov=1.0)
TWO_START = TWO.replace(new_mean=[0.3], old_weight=0.6)

K3 = mf.Mixture([0.5, 0.3, 0.2], [[-3.0], [0.0], [3.0]], 1.0)
K3_START = K3.replace(weights=[0.4, 0.3, 0.3], means=[[-2.5], [0.5], [1.0]])
K4 = mf.Mixture(
    [0.4, 0.3, 0.2, 0.1],
    [[-3.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, -2.5]],
    [[1.0, 0.2], [0.2, 0.8]],
)
K4_START = K4.replace(weights=[0.25] * 4, means=[[-2.5, 0.3], [0.5, 1.0], [1.0, 0.0], [0.3, -1.0]])


def _same_trajectory(a: mf.Trajectory, b: mf.Trajectory, same_objective: bool = True) -> None:
    for name in ("steps", "old_weight", "old_mean", "new_mean", "starved", "diverged"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.meta["start"] == b.meta["start"]
    if same_objective:
        assert a.meta["objective"] == b.meta["objective"]


# -- K = 2 is the TwoMode, bit for bit -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_k2_mixture_runs_as_its_two_mode_at_every_entry_point(name):
    objective = OBJECTIVES[name]
    pairs = [(TWO, TWO_START), (TWO.to_mixture(), TWO_START.to_mixture())]
    runs = [
        mf.simulate(t, s, objective, steps=30, batch_size=16, replicates=8, record_every=10)
        for t, s in pairs
    ]
    _same_trajectory(*runs)
    with_roles = mf.simulate(
        *pairs[1], objective, steps=30, batch_size=16, replicates=8, record_every=10,
        new_components=[1],
    )  # fmt: skip
    _same_trajectory(runs[0], with_roles)
    grads = [mf.estimate_gradient(t, s, objective, batch_size=16, batches=300) for t, s in pairs]
    assert np.array_equal(grads[0].gradients, grads[1].gradients)
    assert np.array_equal(grads[0].old_count, grads[1].old_count)
    flows = [mf.population_flow(t, s, objective, steps=20, record_every=5) for t, s in pairs]
    _same_trajectory(*flows)
    exact = [mf.population_gradient(t, s, objective) for t, s in pairs]
    assert all(np.array_equal(exact[0][k], exact[1][k]) for k in exact[0])


def test_k2_mixture_on_a_twin_backend_and_the_k_axis_views():
    objective = mf.ReverseKL(replay=0.2)
    runs = [
        mf.simulate(t, s, objective, steps=20, replicates=6, record_every=5, backend="numpy")
        for t, s in ((TWO, TWO_START), (TWO.to_mixture(), TWO_START.to_mixture()))
    ]
    _same_trajectory(*runs)
    traj = runs[0]
    assert traj.weights.shape == (6, 5, 2) and traj.means.shape == (6, 5, 2, 1)
    assert np.array_equal(traj.weights[..., 0], traj.old_weight)
    assert np.array_equal(traj.weights[..., 1], 1.0 - traj.old_weight)
    assert np.array_equal(traj.means[:, :, 1], traj.new_mean)


def test_k2_mixture_with_a_replay_mix_of_one_old_component_is_the_plain_run():
    plain = mf.simulate(TWO, TWO_START, mf.ForwardKL(replay=0.3), steps=20, replicates=4)
    mixed = mf.simulate(
        TWO.to_mixture(), TWO_START, mf.ForwardKL(replay=0.3, replay_mix=(1.0,)), steps=20,
        replicates=4,
    )  # fmt: skip
    _same_trajectory(plain, mixed, same_objective=False)


# -- the population gradient and flow -------------------------------------------------------


def _flat(g: dict) -> np.ndarray:
    return np.concatenate([g["logits"], np.ravel(g["means"])])


def _rho(objective, target, new):
    old = [j for j in range(target.n_components) if j not in new]
    if objective.replay_mix is not None:
        return np.array(objective.replay_mix)
    return target.weights[old] / target.weights[old].sum()


GRADIENT_CASES = [
    (K3, K3_START, mf.ForwardKL(replay=0.3), [2]),
    (K3, K3_START, mf.ForwardKL(replay=0.25), [1, 2]),
    (K3, K3_START, mf.ForwardKL(replay=0.25, replay_mix=(0.9, 0.1)), [1]),
    (K3, K3_START, mf.ReverseKL(), [2]),
    (K3, K3_START, mf.ReverseKL(replay=0.3, replay_mix=(0.2, 0.8), baseline="none"), [2]),
    (K4, K4_START, mf.ForwardKL(replay=0.3), [1]),
    (K4, K4_START, mf.ReverseKL(replay=0.3, replay_mix=(0.2, 0.3, 0.5)), [1]),
    (K4, K4_START, mf.ReverseKL(baseline="none"), [0, 3]),
]


@pytest.mark.parametrize(("target", "model", "objective", "new"), GRADIENT_CASES)
def test_population_gradient_equals_a_dense_grid(target, model, objective, new):
    exact = _flat(mf.population_gradient(target, model, objective, new_components=new))
    grid = grid_gradient(target, model, objective, new, _rho(objective, target, new))
    assert np.max(np.abs(grid)) > 1e-2  # a gradient that is not zero
    np.testing.assert_allclose(exact, grid, rtol=0, atol=1e-8)


def test_a_weight_cap_puts_a_kink_in_the_integrand():
    objective = mf.ReverseKL(replay=0.2, weight_cap=1.1, baseline="none")
    exact = _flat(mf.population_gradient(K3, K3_START, objective))
    grid = grid_gradient(K3, K3_START, objective, [2], _rho(objective, K3, [2]))
    np.testing.assert_allclose(exact, grid, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("target", "start", "new", "objective", "update", "lr", "steps"),
    [
        (K3, K3_START, [2], mf.ForwardKL(replay=0.3), "sgd", 0.5, 4000),
        (K3, K3_START, [1], mf.ForwardKL(replay=0.2, replay_mix=(0.3, 0.7)), "natural", 0.5, 200),
        (K4, K4_START, [1], mf.ForwardKL(0.4, replay_mix=(0.2, 0.3, 0.5)), "natural", 1.0, 40),
    ],
)
def test_forward_kl_with_replay_flows_to_its_optimum(
    target, start, new, objective, update, lr, steps
):
    flow = mf.population_flow(
        target, start, objective, steps=steps, lr=lr, record_every=steps, new_components=new,
        update=update,
    )  # fmt: skip
    optimum = mf.theory.forward_kl_replay_optimum(
        target, new, objective.replay, objective.replay_mix
    )
    np.testing.assert_allclose(flow.weights[0, -1], optimum, rtol=0, atol=1e-6)
    np.testing.assert_allclose(flow.means[0, -1], target.means, rtol=0, atol=1e-4)
    lam, rho = objective.replay, _rho(objective, target, new)
    old = [j for j in range(target.n_components) if j not in new]
    np.testing.assert_allclose(optimum[old], lam * rho, rtol=0, atol=1e-15)
    assert abs(optimum[new].sum() - (1 - lam)) < 1e-15


@pytest.mark.parametrize("update", ["sgd", "natural"])
def test_reverse_kl_flows_to_the_target(update):
    steps = 3000 if update == "sgd" else 300
    flow = mf.population_flow(
        K3, K3_START, mf.ReverseKL(), steps=steps, lr=0.2, record_every=100, update=update
    )
    np.testing.assert_allclose(flow.weights[0, -1], K3.weights, atol=1e-6)
    np.testing.assert_allclose(flow.means[0, -1], K3.means, atol=1e-5)
    assert flow.meta["update"] == update and flow.starved.max() == 0


def test_reverse_kl_is_stationary_at_the_target():
    for target, objective in ((K3, mf.ReverseKL(replay=0.3)), (K4, mf.ReverseKL())):
        g = _flat(mf.population_gradient(target, target, objective))
        assert np.max(np.abs(g)) < 1e-12


def test_natural_update_preconditions_with_the_complete_data_fisher():
    """One natural step is θ − lr·F⁻¹g with F_η = diag(w) − w wᵀ over the free logits and
    the mean blocks w_j Σ_j⁻¹."""
    objective, lr = mf.ReverseKL(), 0.1
    g = mf.population_gradient(K4, K4_START, objective, new_components=[1])
    flow = mf.population_flow(
        K4, K4_START, objective, steps=1, lr=lr, record_every=1, new_components=[1],
        update="natural",
    )  # fmt: skip
    w = K4_START.weights
    fisher = np.diag(w[:-1]) - np.outer(w[:-1], w[:-1])
    logw = np.log(w)
    eta = logw[:-1] - logw[-1] - lr * np.linalg.solve(fisher, g["logits"])
    cov = K4_START.cov_matrix(0)
    means = K4_START.means - lr * (g["means"] @ cov.T) / w[:, None]
    full = np.exp(np.append(eta, 0.0))
    np.testing.assert_allclose(flow.weights[0, 1], full / full.sum(), rtol=1e-12)
    np.testing.assert_allclose(flow.means[0, 1], means, rtol=1e-12)
    # K = 2: the logit's Fisher is α(1 − α)
    two = mf.Mixture([0.3, 0.7], [[0.0], [1.0]])
    from mixforget.reference.mixture_engine import Components, natural_step

    step, _ = natural_step(
        np.array([[0.42]]), np.zeros((1, 2, 1)), np.array([[0.3, 0.7]]), Components.of(two)
    )
    assert step[0, 0] == pytest.approx(0.42 / (0.3 * 0.7), rel=1e-14)
