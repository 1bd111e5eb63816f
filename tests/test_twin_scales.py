"""Issue 12 in the array-API twin (mixforget.reference): trainable component scales and the
NewModeREINFORCE objective, against the Rust engine and against the population losses of
tests/test_scales.py (whose worlds, objectives and independent quadrature this file reuses).

Statistical checks: fixed seeds, two-sample z-scores (Rust vs twin) within 5 standard errors.
Exact checks: the twin's 1-D population gradient against Rust's to 1e-8 (relative) and against
central finite differences of the population loss.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

import mixforget as mf
from mixforget import reference
from test_scales import OBJECTIVES, START_1D, TARGET_1D, Line, _fd_gradient, loss_for, two_mode

SCALE_PARAMS = ("direct", "log")

#: every objective of the estimator comparisons: those with a population limit, plus the
#: adaptive-β and indicator variants that exist for finite batches
ESTIMATED = [
    *OBJECTIVES,
    mf.TTTDiscover(beta="adaptive", kl_penalty=0.1),
    mf.OAPL(lag=3, reward="new_indicator", radius=1.5),
]


def _world(d: int) -> tuple[mf.TwoMode, mf.TwoMode]:
    """d = 1: the line world of test_scales; d = 3: unequal diagonal and full covariances,
    so that the unit-determinant shapes S_k are not multiples of the identity."""
    if d == 1:
        return two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    target = mf.TwoMode(
        old_mean=[-1.0, 0.5, 0.2],
        new_mean=[1.5, -0.3, 0.4],
        old_weight=0.7,
        old_cov=[1.0, 0.5, 2.0],
        new_cov=[[1.0, 0.3, 0.1], [0.3, 0.8, 0.0], [0.1, 0.0, 0.6]],
    )
    start = target.replace(
        old_mean=[-0.8, 0.2, 0.0],
        new_mean=[0.3, 0.0, 0.1],
        old_weight=0.6,
        old_cov=[1.3, 0.7, 1.5],
        new_cov=[[1.4, 0.2, 0.0], [0.2, 1.0, 0.1], [0.0, 0.1, 0.9]],
    )
    return target, start


def _z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-sample z-scores of the column means of x and y."""
    x, y = x.astype(float), y.astype(float)
    se = np.sqrt(x.var(axis=0, ddof=1) / len(x) + y.var(axis=0, ddof=1) / len(y))
    return (x.mean(axis=0) - y.mean(axis=0)) / np.maximum(se, 1e-300)


# -- one-step estimates ----------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("objective", ESTIMATED, ids=repr)
def test_estimate_gradient_with_scales_agrees_with_rust(objective, d):
    target, start = _world(d)
    for scale_param in SCALE_PARAMS:
        kw: dict[str, Any] = {"batch_size": 8, "batches": 20_000, "train_scales": True}
        kw["scale_param"] = scale_param
        fast = mf.estimate_gradient(target, start, objective, rng=1, **kw)
        twin = mf.estimate_gradient(target, start, objective, rng=2, backend="numpy", **kw)
        assert twin.gradients.shape == fast.gradients.shape == (20_000, 3 + 2 * d)
        z = _z(fast.gradients, twin.gradients)
        assert np.all(np.abs(z) < 5.0), (scale_param, z)
        assert np.all(np.abs(_z(fast.old_count, twin.old_count)) < 5.0)


def test_estimate_gradient_without_scales_keeps_its_columns_and_numbers():
    """train_scales=False is the old estimator: 1 + 2d columns, the same numbers as before
    (frozen scales draw the same points)."""
    target, start = _world(3)
    kw: dict[str, Any] = {"batch_size": 8, "batches": 500, "rng": 4}
    plain = reference.estimate_gradient(target, start, mf.ReverseKL(), **kw)
    scaled = reference.estimate_gradient(target, start, mf.ReverseKL(), train_scales=True, **kw)
    assert plain.gradients.shape == (500, 7) and scaled.gradients.shape == (500, 9)
    np.testing.assert_allclose(scaled.gradients[:, :7], plain.gradients, rtol=1e-9, atol=1e-10)


# -- population gradients (d = 1) -------------------------------------------------------------


@pytest.mark.parametrize("objective", OBJECTIVES, ids=repr)
def test_population_gradient_with_scales_agrees_with_rust(objective):
    target, start = two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    for weight_param in ("logit", "direct"):
        for scale_param in SCALE_PARAMS:
            kw: dict[str, Any] = {"train_scales": True, "scale_param": scale_param}
            fast = mf.population_gradient(target, start, objective, weight_param, **kw)
            twin = reference.population_gradient(target, start, objective, weight_param, **kw)
            assert set(twin) == set(fast)
            for name, value in fast.items():
                np.testing.assert_allclose(
                    twin[name], value, rtol=1e-8, atol=1e-12, err_msg=f"{name} {scale_param}"
                )


@pytest.mark.parametrize("objective", OBJECTIVES, ids=repr)
def test_twin_population_scale_gradient_is_the_derivative_of_the_population_loss(objective):
    """The twin's exact gradient against finite differences of the independent population
    loss of test_scales (its own quadrature), both scale parametrisations."""
    target, start = two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    loss = loss_for(objective, Line(1))
    for scale_param in SCALE_PARAMS:
        exact = reference.population_gradient(
            target, start, objective, "direct", train_scales=True, scale_param=scale_param
        )
        for name, value in _fd_gradient(loss, scale_param).items():
            assert exact[name] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, scale_param)


#: the setting of 2510.18874's simulation: σ_n of the model equals the target's σ_n*
REFERENCE_TARGET = mf.TwoMode(
    old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, old_cov=1.0, new_cov=0.49
)
REFERENCE_START = REFERENCE_TARGET.replace(old_mean=[-3.5], new_mean=[0.5])


def test_new_mode_reinforce_population_gradient_at_the_reference_setting():
    """With σ_n = σ_n* the reward r = log p*_new − log((1 − α)φ_n) − log β is linear in x, so
    the raw limit −E_{φ_n}[ρ r s] = −(1/(1 − α)) E_q[r s] has no σ_o component:
    E_{φ_o}[(M_o − 1) · linear] = 0 (and no σ_n component, E_{φ_n}[(M_n − 1) r] = 0)."""
    objective = mf.NewModeREINFORCE(beta=0.1)
    grad = reference.population_gradient(
        REFERENCE_TARGET, REFERENCE_START, objective, "direct", train_scales=True
    )
    assert abs(grad["old_scale"]) < 1e-10 and abs(grad["new_scale"]) < 1e-10
    assert np.isfinite(grad["weight"]) and grad["weight"] > 0


def test_rust_new_mode_reinforce_population_gradient_at_the_reference_setting():
    objective = mf.NewModeREINFORCE(beta=0.1)
    kw: dict[str, Any] = {"weight_param": "direct", "train_scales": True}
    fast = mf.population_gradient(REFERENCE_TARGET, REFERENCE_START, objective, **kw)
    twin = reference.population_gradient(REFERENCE_TARGET, REFERENCE_START, objective, **kw)
    for name, value in twin.items():
        np.testing.assert_allclose(fast[name], value, rtol=1e-8, atol=1e-10, err_msg=name)


#: the model's old component 8 σ_n below its new one (σ_o = 1 > σ_n = 0.6): its mass reaches
#: well beyond ±9.5 σ_n around μ_n, where NewModeREINFORCE's ρ φ_n = q/(1 − α) still lives;
#: σ_n ≠ σ_n* = 0.7 makes the reward quadratic in x
FAR_OLD_START = REFERENCE_TARGET.replace(old_mean=[0.5 - 8 * 0.6], new_mean=[0.5], new_cov=0.36)
ADVANTAGES = ("raw", "normalised")


@pytest.mark.parametrize("advantage", ADVANTAGES)
def test_rust_new_mode_reinforce_population_gradient_with_a_far_old_component(advantage):
    """Rust's quadrature places nodes on both model components (the integrand's mass), with
    weights of the expectation under φ_n, against the twin's brute-force grid; the normalised
    advantage's mean and sd of r stay those under φ_n."""
    # the old component's 3σ range starts beyond the new component's ±9.5σ_n
    assert FAR_OLD_START.old_mean[0] - 3.0 < 0.5 - 9.5 * 0.6
    objective = mf.NewModeREINFORCE(beta=0.1, advantage=advantage)
    for kw in (
        {},
        {"weight_param": "direct"},
        {"weight_param": "logit", "train_scales": True, "scale_param": "log"},
    ):
        fast = mf.population_gradient(REFERENCE_TARGET, FAR_OLD_START, objective, **kw)
        twin = reference.population_gradient(REFERENCE_TARGET, FAR_OLD_START, objective, **kw)
        assert set(fast) == set(twin)
        for name, value in twin.items():
            np.testing.assert_allclose(
                fast[name], value, rtol=1e-8, atol=1e-10, err_msg=f"{name} {kw}"
            )


def _log_normal(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return -0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


@pytest.mark.parametrize("advantage", ADVANTAGES)
def test_new_mode_reinforce_population_gradient_with_a_far_old_component_by_monte_carlo(
    advantage,
):
    """The exact gradient −E_{φ_n}[ρ A s] = −(1/(1 − α)) E_q[A s] (logit weight) against a Monte
    Carlo mean over draws from q itself (5 SE). Draws from φ_n (estimate_gradient) cannot
    check this setting: E_{φ_n}[ρ²] is infinite (σ_o² > 2σ_n²), and their mean misses the old
    component's share. The normalised advantage's mean and sd of r under φ_n come from a dense
    trapezoid rule."""
    alpha, var_o, var_n = 0.75, 1.0, 0.36
    mu_o, mu_n = FAR_OLD_START.old_mean[0], 0.5
    beta = 0.1

    def reward(x: np.ndarray) -> np.ndarray:
        log_new_part = np.log(1 - alpha) + _log_normal(x, mu_n, var_n)
        return _log_normal(x, 3.5, 0.49) - log_new_part - np.log(beta)

    rng = np.random.default_rng(12)
    n = 1_000_000
    old = rng.random(n) < alpha
    x = np.where(old, mu_o + np.sqrt(var_o) * rng.standard_normal(n), 0.0)
    x[~old] = mu_n + np.sqrt(var_n) * rng.standard_normal(int((~old).sum()))
    r = reward(x)
    if advantage == "normalised":
        grid = np.linspace(mu_n - 40 * np.sqrt(var_n), mu_n + 40 * np.sqrt(var_n), 400_001)
        density = np.exp(_log_normal(grid, mu_n, var_n))
        mean = np.trapezoid(density * reward(grid), grid)
        sd = np.sqrt(np.trapezoid(density * (reward(grid) - mean) ** 2, grid))
        advantages = (r - mean) / sd
    else:
        advantages = r
    log_old = np.log(alpha) + _log_normal(x, mu_o, var_o)
    log_new = np.log(1 - alpha) + _log_normal(x, mu_n, var_n)
    resp_old = 1.0 / (1.0 + np.exp(log_new - log_old))
    scores = np.stack(
        [resp_old - alpha, resp_old * (x - mu_o) / var_o, (1 - resp_old) * (x - mu_n) / var_n],
        axis=1,
    )
    samples = -advantages[:, None] * scores / (1 - alpha)
    mc_mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(n)
    objective = mf.NewModeREINFORCE(beta=beta, advantage=advantage)
    exact = mf.population_gradient(REFERENCE_TARGET, FAR_OLD_START, objective)
    flat = np.array([exact["weight"], exact["old_mean"][0], exact["new_mean"][0]])
    assert np.all(np.abs(flat - mc_mean) < 5 * se), (flat, mc_mean, se)


@pytest.mark.parametrize("advantage", ADVANTAGES)
def test_new_mode_reinforce_population_gradient_in_d3_agrees_with_monte_carlo(advantage):
    """d = 3, equal covariances: the exact gradient in the span of the four means (k = 3),
    lifted back, against the mean of Rust's finite-batch estimates (5 SE). The normalised
    advantage's batch mean and sd bias the estimate by O(1/B): B = 4096 keeps that below the
    standard error of 250 batches."""
    target = mf.TwoMode(
        old_mean=[-1.5, 0.3, 0.0],
        new_mean=[1.5, 0.0, 0.4],
        old_weight=0.7,
        old_cov=1.0,
        new_cov=1.0,
    )
    start = target.replace(old_mean=[-1.0, -0.2, 0.3], new_mean=[0.4, 0.5, -0.2], old_weight=0.6)
    objective = mf.NewModeREINFORCE(beta=0.1, advantage=advantage)
    exact = mf.population_gradient(target, start, objective)
    flat = np.concatenate([[exact["weight"]], exact["old_mean"], exact["new_mean"]])
    batch_size, batches = (32, 40_000) if advantage == "raw" else (4096, 250)
    est = mf.estimate_gradient(target, start, objective, batch_size, batches, rng=5)
    se = est.gradients.std(axis=0, ddof=1) / np.sqrt(batches)
    mc_mean = est.gradients.mean(axis=0)
    assert np.all(np.abs(flat - mc_mean) < 5 * se), (flat, mc_mean, se)


def test_twin_population_gradient_with_scales_refuses_d_above_1():
    target, start = _world(3)
    with pytest.raises(NotImplementedError, match="d = 1 only"):
        reference.population_gradient(target, start, mf.ForwardKL(), train_scales=True)
    with pytest.raises(ValueError, match="scale_param"):
        reference.population_gradient(
            two_mode(TARGET_1D, 1), two_mode(START_1D, 1), mf.ForwardKL(), scale_param="exp"
        )


# -- training runs ----------------------------------------------------------------------------

RUN: dict[str, Any] = {
    "steps": 20,
    "batch_size": 8,
    "lr": 0.02,
    "replicates": 2000,
    "record_every": 10,
    "train_scales": True,
}
#: Runs without divergence on either side (a diverged replicate freezes at a state that
#: depends on how each implementation overflows): bounded rewards for TTT-Discover and OAPL
#: (with log-density rewards σ explodes within 20 steps), and for NewModeREINFORCE the
#: reference's slow factor 0.005 on the old component (its σ_o score carries the unbounded
#: ratio ρ).
TRAINED = [
    mf.ForwardKL(replay=0.3),
    mf.ReverseKL(replay=0.3),
    mf.SDFT(ema=0.2, anchor=0.5),
    mf.TTTDiscover(beta=1.5, kl_penalty=0.3, reward="new_indicator", radius=1.5),
    mf.OAPL(lag=5, reward="new_indicator", radius=1.5),
    mf.NewModeREINFORCE(beta=0.1),
    mf.NewModeREINFORCE(beta=0.5, advantage="normalised"),
]
_SLOW_OLD = {"weight": 0.005, "old_mean": 0.005, "old_scale": 0.005}
_RUST: dict[str, mf.Trajectory] = {}


def _run_world() -> tuple[mf.TwoMode, mf.TwoMode]:
    """The line world with a new component wider than the old one (ρ bounded at the start)."""
    return two_mode(TARGET_1D, 1), two_mode(START_1D, 1).replace(new_cov=1.44)


def _run_kw(objective: mf.objectives.Objective, scale_param: str) -> dict[str, Any]:
    kw = dict(RUN, scale_param=scale_param)
    if isinstance(objective, mf.NewModeREINFORCE):
        kw["lr_scale"] = _SLOW_OLD
    return kw


def _rust_run(objective: mf.objectives.Objective, scale_param: str) -> mf.Trajectory:
    key = f"{objective!r} {scale_param}"
    if key not in _RUST:
        target, start = _run_world()
        _RUST[key] = mf.simulate(target, start, objective, rng=1, **_run_kw(objective, scale_param))
    return _RUST[key]


def _assert_same_distribution(a: mf.Trajectory, b: mf.Trajectory) -> None:
    """Final old weight, means, σ's and starved counts: replicate means within 5 SE."""
    for name in ("old_weight", "old_mean", "new_mean", "old_scale", "new_scale", "starved"):
        z = _z(getattr(a, name)[:, -1], getattr(b, name)[:, -1])
        assert np.all(np.abs(z) < 5.0), f"{name}: z = {z}"
    assert not a.diverged.any() and not b.diverged.any()


def _backend(name: str) -> Any:
    marks = []
    if name == "jax" and importlib.util.find_spec("jax") is None:
        marks.append(pytest.mark.skip(reason="jax not installed"))
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("scale_param", SCALE_PARAMS)
@pytest.mark.parametrize("objective", TRAINED, ids=repr)
@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_simulate_with_scales_agrees_with_rust_in_distribution(backend, objective, scale_param):
    target, start = _run_world()
    kw = _run_kw(objective, scale_param)
    twin = mf.simulate(target, start, objective, rng=2, backend=backend, **kw)
    assert twin.trains_scales and twin.meta["scale_param"] == scale_param
    assert twin.meta["backend"] == backend
    assert twin.old_scale.shape == twin.old_weight.shape == (2000, 3)
    assert np.all(twin.new_scale[:, 0] == 1.2)
    assert np.std(twin.new_scale[:, -1]) > 0  # the scales moved, differently per replicate
    _assert_same_distribution(_rust_run(objective, scale_param), twin)


@pytest.mark.parametrize("backend", [_backend("jax")])
def test_simulate_with_scales_on_jax_agrees_with_rust(backend):
    """The extra states (SDFT's teacher EMA) carry the scales through jit and scan."""
    target, start = _run_world()
    objective = mf.SDFT(ema=0.2, anchor=0.5)
    twin = mf.simulate(
        target, start, objective, rng=2, backend=backend, **_run_kw(objective, "log")
    )
    _assert_same_distribution(_rust_run(objective, "log"), twin)


def test_frozen_scales_follow_the_untrained_path():
    """lr_scale 0 on the scales: the same random path as an untrained run (the covariance
    σ²S equals Σ), the σ's recorded constant; untrained runs record the start σ's."""
    target, start = _world(3)
    kw: dict[str, Any] = {"steps": 20, "batch_size": 8, "replicates": 5, "record_every": 5}
    plain = reference.simulate(target, start, mf.SDFT(ema=0.3), **kw)
    frozen = reference.simulate(target, start, mf.SDFT(ema=0.3), train_scales=True,
                                lr_scale={"old_scale": 0.0, "new_scale": 0.0}, **kw)  # fmt: skip
    for name in ("old_weight", "old_mean", "new_mean"):
        np.testing.assert_allclose(
            getattr(frozen, name), getattr(plain, name), rtol=1e-9, atol=1e-10
        )
    sigma = mf.mixture.component_scales(start)
    for traj in (plain, frozen):
        np.testing.assert_allclose(traj.old_scale, sigma[0], rtol=1e-14)
        np.testing.assert_allclose(traj.new_scale, sigma[1], rtol=1e-14)
    assert not plain.trains_scales and frozen.trains_scales


def test_direct_scales_are_floored_and_log_scales_are_not():
    """A model new component wider than the data shrinks; a huge step would make σ_n negative
    and is floored at 1e-3 (the reference's rule), log σ needs no floor (as Rust's flow)."""
    target = two_mode(TARGET_1D, 1)
    start = target.replace(new_cov=4.0)
    frozen = {"weight": 0.0, "old_mean": 0.0, "new_mean": 0.0}
    kw: dict[str, Any] = {"steps": 1, "lr": 50.0, "record_every": 1, "lr_scale": frozen}
    kw.update(batch_size=256, replicates=4, train_scales=True)
    direct = reference.simulate(target, start, mf.ForwardKL(), **kw)
    assert np.all(direct.new_scale[:, 1] == 1e-3) and not direct.diverged.any()
    log = reference.simulate(target, start, mf.ForwardKL(), scale_param="log", **kw)
    assert np.all((log.new_scale[:, 1] > 0) & (log.new_scale[:, 1] < 2.0))


def test_one_step_is_the_estimate_with_scales():
    """One simulate step from the start is θ − lr·ĝ with the scale entries of ĝ (same seed,
    same draws: the first batch of the run is the first estimate), on σ or on log σ."""
    target, start = _world(1)
    objective = mf.ReverseKL()
    lr = 0.05
    for scale_param in SCALE_PARAMS:
        kw: dict[str, Any] = {"train_scales": True, "scale_param": scale_param, "rng": 9}
        run = reference.simulate(target, start, objective, steps=1, batch_size=16, lr=lr,
                                 replicates=1, record_every=1, **kw)  # fmt: skip
        g = reference.estimate_gradient(target, start, objective, batch_size=16, batches=1, **kw)
        for k, name in ((3, "old_scale"), (4, "new_scale")):
            sd = mf.mixture.component_scales(start)[k - 3]
            step = lr * g.gradients[0, k]
            expected = sd - step if scale_param == "direct" else sd * np.exp(-step)
            assert getattr(run, name)[0, 1] == pytest.approx(expected, rel=1e-12)


def test_array_backends_forward_the_scale_arguments():
    target, start = _world(1)
    kw: dict[str, Any] = {"steps": 4, "batch_size": 8, "replicates": 3, "record_every": 2}
    with pytest.raises(TypeError, match="train_scales must be a bool"):
        mf.simulate(target, start, mf.ForwardKL(), train_scales="yes", backend="numpy", **kw)
    with pytest.raises(ValueError, match="scale_param must be one of"):
        mf.estimate_gradient(target, start, mf.ForwardKL(), batches=2, scale_param="exp",
                             backend="numpy")  # fmt: skip
    with pytest.raises(ValueError, match=r"lr_scale\['new_scale'\] .* needs train_scales=True"):
        mf.simulate(target, start, mf.ForwardKL(), lr_scale={"new_scale": 0.5},
                    backend="numpy", **kw)  # fmt: skip
    traj = mf.simulate(target, start, mf.NewModeREINFORCE(), train_scales=True,
                       scale_param="log", backend="numpy", **kw)  # fmt: skip
    assert traj.meta["train_scales"] and traj.meta["scale_param"] == "log"
    assert np.all(traj.new_scale[:, -1] != traj.new_scale[:, 0])
    assert traj.overlap_accuracy().shape == (3, 3, 2)
    est = mf.estimate_gradient(target, start, mf.ForwardKL(), batches=4, train_scales=True,
                               backend="numpy")  # fmt: skip
    assert est.gradients.shape == (4, 5) and set(est.as_dict(1)) >= {"old_scale", "new_scale"}
