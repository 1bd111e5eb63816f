"""Geometric rewards of KLRegularizedRL (issue 22, docs: theory-kl-rewards): the half-space,
ball and bump rewards as data. Rust and the twin agree (the population gradient to 1e-9,
finite batches in distribution), the population flow with frozen means reaches the
stationary weight of mixforget.theory (closed form with the component means of the reward),
and bad parameters or a reward/target dimension mismatch are refused before any work."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixforget as mf
from mixforget import config
from mixforget import reference as ref
from mixforget.theory import component_mean_rewards, geometric_reward_old_weight

WORLD = mf.TwoMode(old_mean=[-6.0], new_mean=[6.0], old_weight=0.75)
TARGET = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.6)
MODEL = TARGET.replace(old_mean=[-1.7], new_mean=[0.5], old_weight=0.5)
REWARDS = {
    "halfspace": dict(reward="halfspace", reward_direction=(1.0,), reward_offset=5.5),
    "halfspace_down": dict(reward="halfspace", reward_direction=(-2.0,), reward_offset=-11.0),
    "ball": dict(reward="ball", reward_center=(6.5,), reward_radius=1.0),
    "bump": dict(reward="bump", reward_center=(5.0,), reward_width=1.5, reward_old=0.2),
}
FROZEN_MEANS = {"old_mean": 0.0, "new_mean": 0.0}


def _flat(g: dict) -> np.ndarray:
    return np.r_[g["weight"], g["old_mean"], g["new_mean"]]


def test_component_means_are_the_gaussian_integrals():
    # the half-space x >= 5.5 under N(6, 1): Φ(0.5); the ball [5.5, 7.5]: Φ(1.5) − Φ(−0.5)
    phi = lambda z: 0.5 * math.erfc(-z / math.sqrt(2))  # noqa: E731
    half = mf.KLRegularizedRL(**REWARDS["halfspace"])
    assert component_mean_rewards(half, WORLD)[1] == pytest.approx(phi(0.5), rel=1e-14)
    # a·x >= b with a = −2, b = −11 is x <= 5.5
    down = mf.KLRegularizedRL(**REWARDS["halfspace_down"])
    assert component_mean_rewards(down, WORLD)[1] == pytest.approx(1 - phi(0.5), rel=1e-14)
    ball = mf.KLRegularizedRL(**REWARDS["ball"])
    assert component_mean_rewards(ball, WORLD)[1] == pytest.approx(phi(1.5) - phi(-0.5))
    # the bump against a quadrature of its definition
    bump = mf.KLRegularizedRL(**REWARDS["bump"])
    x = np.linspace(-4, 16, 200_001)
    dens = np.exp(-0.5 * (x - 6) ** 2) / math.sqrt(2 * math.pi)
    r = 0.2 + 0.8 * np.exp(-0.5 * (x - 5) ** 2 / 1.5**2)
    assert component_mean_rewards(bump, WORLD)[1] == pytest.approx(
        np.trapezoid(r * dens, x), rel=1e-10
    )
    # in 3-d the bump's closed form against Monte Carlo
    cov = np.diag([0.5, 1.0, 2.0])
    model3 = mf.TwoMode(old_mean=[0, 0, 0], new_mean=[1.0, -1.0, 0.5], old_weight=0.5, cov=cov)
    bump3 = mf.KLRegularizedRL(reward="bump", reward_center=(0.5, 0.0, 0.0), reward_width=0.8)
    draws = np.random.default_rng(0).multivariate_normal(model3.new_mean, cov, 400_000)
    mc = np.exp(-0.5 * np.sum((draws - [0.5, 0, 0]) ** 2, axis=1) / 0.64)
    assert component_mean_rewards(bump3, model3)[1] == pytest.approx(
        mc.mean(), abs=5 * mc.std() / 632
    )


@pytest.mark.parametrize("name", list(REWARDS))
@pytest.mark.parametrize("kl", ["reverse", "forward"])
def test_population_flow_reaches_the_stationary_weight(name, kl):
    objective = mf.KLRegularizedRL(beta=0.5, kl=kl, **REWARDS[name])
    flow = mf.population_flow(
        WORLD, WORLD, objective, steps=60, lr=1.0, record_every=60, update="natural",
        lr_scale=FROZEN_MEANS,
    )  # fmt: skip
    alpha_star = geometric_reward_old_weight(objective, WORLD)
    assert abs(flow.old_weight[0, -1] - alpha_star) < 1e-6
    # the reward moves the weight (the check can fail)
    assert abs(alpha_star - 0.75) > 0.05


@pytest.mark.parametrize("name", ["halfspace", "ball", "bump"])
def test_rust_and_twin_agree(name):
    geometry = dict(REWARDS[name])
    shift = {"halfspace": ("reward_offset", 0.3), "ball": ("reward_center", (0.8,))}
    shift.setdefault("bump", ("reward_center", (1.0,)))
    key, value = shift[name]
    geometry[key] = value
    objective = mf.KLRegularizedRL(reference="target", **geometry)
    exact = _flat(mf.population_gradient(TARGET, MODEL, objective))
    twin_exact = _flat(ref.population_gradient(TARGET, MODEL, objective))
    # the twin integrates the jump with a plain grid (~1e-4 relative): see its docstring
    tol = 1e-9 if name == "bump" else 2e-4
    np.testing.assert_allclose(twin_exact, exact, rtol=tol, atol=tol)
    est = mf.estimate_gradient(TARGET, MODEL, objective, batch_size=16, batches=20_000, rng=3)
    z = (est.mean - exact) / est.stderr
    assert np.all(np.abs(z) < 5.0), f"z = {z}"
    run = dict(steps=40, batch_size=8, lr=0.05, replicates=2000, record_every=40)
    rust = mf.simulate(TARGET, MODEL, objective, rng=1, **run)
    twin = mf.simulate(TARGET, MODEL, objective, rng=2, backend="numpy", **run)
    for attr in ("old_weight", "old_mean", "new_mean"):
        x, y = getattr(rust, attr)[:, -1].astype(float), getattr(twin, attr)[:, -1].astype(float)
        se = np.sqrt(x.var(axis=0, ddof=1) / len(x) + y.var(axis=0, ddof=1) / len(y))
        assert np.all(np.abs((x.mean(axis=0) - y.mean(axis=0)) / se) < 5.0), attr


def test_geometric_rewards_in_two_dimensions():
    target = mf.TwoMode(old_mean=[-2.0, 0.0], new_mean=[2.0, 1.0], old_weight=0.6)
    model = target.replace(new_mean=[0.5, 0.0])
    objective = mf.KLRegularizedRL(
        reward="halfspace", reward_direction=(1.0, 1.0), reward_offset=1.0, reference="target"
    )
    exact = _flat(mf.population_gradient(target, model, objective))
    est = mf.estimate_gradient(target, model, objective, batch_size=16, batches=20_000, rng=4)
    # the jump is not resolved by the 2-d grid: its error is far below these SE
    z = (est.mean - exact) / est.stderr
    assert np.all(np.abs(z) < 5.0), f"z = {z}"
    assert np.abs(exact[3:]).max() > 1e-3  # the new mean moves toward the half-space
    far = mf.TwoMode(old_mean=[0.0] * 4, new_mean=[1.0] * 4, old_weight=0.5)
    wide = mf.KLRegularizedRL(reward="bump", reward_center=(0.0,) * 4)
    with pytest.raises(NotImplementedError, match="geometry"):
        mf.population_gradient(far, far, wide)


@pytest.mark.parametrize(
    "fields, name",
    [
        ({"reward": "halfspace"}, "reward_direction"),
        ({"reward": "halfspace", "reward_direction": (0.0,)}, "reward_direction"),
        ({"reward": "halfspace", "reward_direction": "x"}, "reward_direction"),
        ({"reward": "halfspace", "reward_direction": (1.0, math.nan)}, "reward_direction"),
        ({"reward": "halfspace", "reward_direction": ()}, "reward_direction"),
        (
            {"reward": "halfspace", "reward_direction": (1.0,), "reward_offset": math.inf},
            "reward_offset",
        ),
        ({"reward": "ball"}, "reward_center"),
        ({"reward": "ball", "reward_center": (0.0,), "reward_radius": 0.0}, "reward_radius"),
        ({"reward": "bump", "reward_center": (0.0,), "reward_width": -1.0}, "reward_width"),
        ({"reward": "labels", "reward_center": (0.0,)}, "reward_center"),
        (
            {"reward": "ball", "reward_direction": (1.0,), "reward_center": (0.0,)},
            "reward_direction",
        ),
        ({"reward": "parabola"}, "reward"),
    ],
)
def test_bad_reward_parameters_name_the_field(fields, name):
    with pytest.raises(ValueError, match=name):
        mf.KLRegularizedRL(**fields)


def test_dimension_mismatch_is_refused_before_any_work():
    objective = mf.KLRegularizedRL(reward="ball", reward_center=(0.0, 1.0))
    calls = [
        lambda: mf.simulate(TARGET, MODEL, objective, steps=10, replicates=2),
        lambda: mf.simulate(TARGET, MODEL, objective, steps=10, replicates=2, backend="numpy"),
        lambda: mf.population_flow(TARGET, MODEL, objective, steps=10),
        lambda: mf.population_gradient(TARGET, MODEL, objective),
        lambda: mf.estimate_gradient(TARGET, MODEL, objective, batches=10),
        lambda: ref.population_gradient(TARGET, MODEL, objective),
    ]
    for call in calls:
        with pytest.raises(
            ValueError, match="reward_center has 2 entries but the target has dimension 1"
        ):
            call()


def test_geometric_rewards_from_toml_and_back():
    doc = {
        "target": {"old_mean": [-6.0], "new_mean": [6.0], "old_weight": 0.75},
        "start": {"old_mean": [-6.0], "new_mean": [6.0], "old_weight": 0.75},
        "objective": {"kind": "KLRegularizedRL", "reward": "ball", "reward_center": [6.5],
                      "reward_radius": 1.0},
        "run": {"steps": 10, "record_every": 5, "replicates": 2},
    }  # fmt: skip
    cfg = config.parse_config(doc)
    assert cfg.objective == mf.KLRegularizedRL(reward="ball", reward_center=(6.5,))
    traj = mf.simulate(**cfg.simulate_kwargs())
    assert mf.objectives.objective_from_dict(traj.meta["objective"]) == cfg.objective
    doc["objective"]["reward_center"] = "middle"
    with pytest.raises(config.ConfigError, match="reward_center"):
        config.parse_config(doc)


def test_the_binding_refuses_a_dimension_mismatch_too():
    from mixforget._problem import build_problem, check_lr_scale

    objective = mf.KLRegularizedRL(reward="bump", reward_center=(0.0, 1.0))
    with pytest.raises(ValueError, match="has 2 entries but the target has dimension 1"):
        build_problem(TARGET, MODEL, objective, "logit", 0.05, check_lr_scale(None))
