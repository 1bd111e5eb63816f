"""Issue 12: trainable component scales and the NewModeREINFORCE objective.

The exact (population) gradients with ``train_scales=True`` are checked against central
finite differences of each objective's population loss, written out here independently of
the package by quadrature: every test world has isotropic covariances and means on one line
through the origin, so a density depends on a point only through its coordinate t along the
line and its squared distance 2u from it, and an expectation is a 2-D Gauss–Legendre
quadrature in (t, u) (the perpendicular (d − 1)-space integrated in polar form; d = 1 needs
t only). The finite-batch estimators are checked against the exact gradients (5 standard
errors).

The array-API twin (mixforget.reference) is compared with the Rust engine, and checked against
the population losses below, in tests/test_twin_scales.py, which imports these tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pytest

import mixforget as mf

# -- the worlds: means m·e on the line e, isotropic variances -----------------------------

#: (old weight, old mean, old variance, new mean, new variance) along the line.
TARGET_1D = (0.7, -1.5, 1.0, 1.8, 0.64)
START_1D = (0.6, -1.2, 1.21, 0.3, 0.81)


def _direction(d: int) -> np.ndarray:
    e = np.array([1.0, 0.5, -0.3][:d]) if d <= 3 else np.ones(d)
    return e / np.linalg.norm(e)


def two_mode(spec: tuple[float, float, float, float, float], d: int) -> mf.TwoMode:
    alpha, mo, vo, mn, vn = spec
    e = _direction(d)
    return mf.TwoMode(old_mean=mo * e, new_mean=mn * e, old_weight=alpha, old_cov=vo, new_cov=vn)


class Line:
    """Quadrature nodes (t, u = ρ²/2) and weights for ∫ f(x) dx over R^d."""

    def __init__(self, d: int, t_nodes: int = 600, u_nodes: int = 160) -> None:
        t, wt = np.polynomial.legendre.leggauss(t_nodes)
        half = 14.0
        t, wt = half * t, half * wt
        if d == 1:
            self.t, self.u, self.w = t, np.zeros_like(t), wt
        else:
            # ∫_{R^{d−1}} g(ρ²) dρ = |S^{d−2}| ∫ g(ρ²) ρ^{d−2} dρ; with u = ρ²/2 and d = 3:
            # 2π ∫ g(2u) du, the integrand analytic in u (Gauss–Legendre on [0, U]).
            assert d == 3
            upper = 60.0
            u, wu = np.polynomial.legendre.leggauss(u_nodes)
            u, wu = upper * (u + 1) / 2, upper * wu / 2
            self.t = np.repeat(t, u.size)
            self.u = np.tile(u, t.size)
            self.w = np.repeat(wt, u.size) * np.tile(wu, t.size) * 2 * np.pi
        self.d = d

    def log_phi(self, mean: float, var: float) -> np.ndarray:
        sq = (self.t - mean) ** 2 + 2 * self.u
        return -0.5 * self.d * np.log(2 * np.pi * var) - sq / (2 * var)

    def log_mix(self, alpha: float, mo: float, vo: float, mn: float, vn: float) -> np.ndarray:
        return np.logaddexp(
            np.log(alpha) + self.log_phi(mo, vo), np.log1p(-alpha) + self.log_phi(mn, vn)
        )

    def expect(self, log_density: np.ndarray, f: np.ndarray) -> float:
        return float(np.sum(self.w * np.exp(log_density) * f))


# -- population losses whose gradients the objectives' exact limits are ------------------


def loss_for(objective: mf.objectives.Objective, line: Line) -> Callable[..., float]:
    """L(α, σ_o, σ_n) at the start means, extra states (teacher, q_0, lag) frozen at the
    start model: the loss whose gradient at the start is the objective's exact gradient."""
    a_t, mo_t, vo_t, mn_t, vn_t = TARGET_1D
    a0, mo, vo0, mn, vn0 = START_1D
    log_target = line.log_mix(a_t, mo_t, vo_t, mn_t, vn_t)
    log_target_new = line.log_phi(mn_t, vn_t)
    log_start = line.log_mix(a0, mo, vo0, mn, vn0)

    def log_q(alpha: float, so: float, sn: float) -> np.ndarray:
        return line.log_mix(alpha, mo, so**2, mn, sn**2)

    if isinstance(objective, mf.ForwardKL):
        lam = objective.replay
        log_train = np.logaddexp(
            np.log1p(-lam) + log_target_new,
            np.log(lam) + line.log_phi(mo_t, vo_t) if lam > 0 else -np.inf,
        )
        return lambda *p: -line.expect(log_train, log_q(*p))
    if isinstance(objective, mf.ReverseKL):
        return lambda *p: line.expect(log_q(*p), log_q(*p) - log_target)
    if isinstance(objective, mf.SDFT):
        kappa = objective.anchor
        log_teacher = line.log_mix(a0, mo, vo0, (1 - kappa) * mn + kappa * mn_t, vn0)
        if objective.direction == "reverse":
            return lambda *p: line.expect(log_q(*p), log_q(*p) - log_teacher)
        return lambda *p: -line.expect(log_teacher, log_q(*p))
    if isinstance(objective, mf.TTTDiscover):
        beta, lam = float(objective.beta), objective.kl_penalty
        assert objective.reward == "new_logpdf"

        def ttt(*p: float) -> float:
            lq = log_q(*p)
            tilt = line.expect(lq, np.exp(beta * log_target_new))
            return -np.log(tilt) + lam * line.expect(lq, lq - log_start)

        return ttt
    if isinstance(objective, mf.OAPL):
        b1, b2 = objective.beta1, objective.beta2
        assert objective.reward == "new_logpdf"
        v_hat = b1 * np.log(line.expect(log_start, np.exp(log_target_new / b1)))
        return lambda *p: line.expect(
            log_start, (b2 * (log_q(*p) - log_start) - (log_target_new - v_hat)) ** 2
        )
    if isinstance(objective, mf.NewModeREINFORCE):
        # reward frozen at the start: r0 = log p*_new − log((1−α0) φ_n0) − log β; the
        # estimator's limit is −E_{φ_n0}[ρ A s] = −(1/(1−α0)) ∇ E_{q_θ}[A0]
        r0 = log_target_new - (np.log1p(-a0) + line.log_phi(mn, vn0)) - np.log(objective.beta)
        if objective.advantage == "normalised":
            log_new0 = line.log_phi(mn, vn0)
            mean = line.expect(log_new0, r0)
            sd = np.sqrt(line.expect(log_new0, (r0 - mean) ** 2))
            r0 = (r0 - mean) / sd
        return lambda *p: -line.expect(log_q(*p), r0) / (1 - a0)
    raise AssertionError(f"no loss for {objective!r}")


#: Every objective with a population limit, with non-default options where they matter.
OBJECTIVES = [
    mf.ForwardKL(),
    mf.ForwardKL(replay=0.3),
    mf.ReverseKL(),
    mf.ReverseKL(replay=0.3, baseline="none"),
    mf.SDFT(direction="reverse", anchor=0.5),
    mf.SDFT(direction="forward", anchor=0.5),
    mf.TTTDiscover(beta=1.5, kl_penalty=0.3),
    mf.OAPL(beta1=0.8, beta2=1.3),
    mf.NewModeREINFORCE(beta=0.1),
    mf.NewModeREINFORCE(beta=0.5, advantage="normalised"),
]


def _fd_gradient(loss: Callable[..., float], scale_param: str) -> dict[str, float]:
    """Central differences in (α, σ_o, σ_n) (or log σ) at the start."""
    a0, _, vo0, _, vn0 = START_1D
    base = [a0, np.sqrt(vo0), np.sqrt(vn0)]
    h = 1e-4
    out = {}
    for i, name in enumerate(["weight", "old_scale", "new_scale"]):
        plus, minus = list(base), list(base)
        if scale_param == "log" and i > 0:
            plus[i], minus[i] = base[i] * np.exp(h), base[i] * np.exp(-h)
        else:
            plus[i], minus[i] = base[i] + h, base[i] - h
        out[name] = (loss(*plus) - loss(*minus)) / (2 * h)
    return out


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("objective", OBJECTIVES, ids=repr)
def test_exact_scale_gradient_is_the_derivative_of_the_population_loss(objective, d):
    target, start = two_mode(TARGET_1D, d), two_mode(START_1D, d)
    scale_params = ["direct", "log"] if d == 1 else ["direct"]
    line = Line(d)
    loss = loss_for(objective, line)
    for scale_param in scale_params:
        exact = mf.population_gradient(
            target, start, objective, "direct", train_scales=True, scale_param=scale_param
        )
        fd = _fd_gradient(loss, scale_param)
        for name, value in fd.items():
            assert exact[name] == pytest.approx(value, rel=1e-5, abs=1e-6), (
                name,
                scale_param,
                exact[name],
                value,
            )


def test_exact_mean_gradient_does_not_depend_on_training_the_scales():
    """With train_scales the mean and weight entries are the same expectations, computed on
    the full grid instead of the span (d = 3)."""
    (a_t, mo_t, _, mn_t, _), (a0, mo, _, mn, _) = TARGET_1D, START_1D
    target = two_mode((a_t, mo_t, 1.0, mn_t, 1.0), 3)
    start = two_mode((a0, mo, 1.0, mn, 1.0), 3)
    for objective in (mf.ReverseKL(), mf.ForwardKL(replay=0.2), mf.NewModeREINFORCE()):
        fixed = mf.population_gradient(target, start, objective, "direct")
        trained = mf.population_gradient(target, start, objective, "direct", train_scales=True)
        assert trained["weight"] == pytest.approx(fixed["weight"], rel=1e-7, abs=1e-9)
        for key in ("old_mean", "new_mean"):
            np.testing.assert_allclose(trained[key], fixed[key], rtol=1e-6, atol=1e-8)


# -- finite batches against the exact limits -----------------------------------------------


def _assert_within_5se(est: mf.GradientEstimates, exact: dict[str, Any], d: int) -> None:
    expected = np.concatenate(
        [
            [exact["weight"]],
            exact["old_mean"],
            exact["new_mean"],
            [exact["old_scale"], exact["new_scale"]],
        ]
    )
    assert est.gradients.shape[1] == 3 + 2 * d
    np.testing.assert_array_less(np.abs(est.mean - expected), 5 * est.stderr + 1e-12)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize(
    "objective",
    [mf.ForwardKL(replay=0.25), mf.ReverseKL(), mf.NewModeREINFORCE(beta=0.1)],
    ids=repr,
)
def test_estimator_mean_matches_the_exact_scale_gradient(objective, d):
    target, start = two_mode(TARGET_1D, d), two_mode(START_1D, d)
    for scale_param in ("direct", "log"):
        kw = {"train_scales": True, "scale_param": scale_param}
        est = mf.estimate_gradient(
            target, start, objective, batch_size=16, batches=40_000, rng=7, **kw
        )
        exact = mf.population_gradient(target, start, objective, **kw)
        _assert_within_5se(est, exact, d)


def test_new_mode_reinforce_estimator_mean_equals_its_population_gradient():
    """Raw advantages: the batch mean is unbiased for its exact limit (d = 1 and 2, with and
    without trained scales). The worlds keep σ_o² < 2σ_n², where the importance ratio
    ρ = q/((1−α)φ_n) has a finite variance; at the reference's start (σ_o = 1, σ_n = 0.7)
    E[ρ²] diverges (heavy tails: no standard-error test is meaningful there)."""
    objective = mf.NewModeREINFORCE(beta=0.1)
    # unequal covariances: the untrained exact limit exists for d = 1 only
    for d, train in [(1, False), (1, True), (2, True)]:
        target, start = two_mode(TARGET_1D, d), two_mode(START_1D, d)
        est = mf.estimate_gradient(
            target, start, objective, batch_size=32, batches=40_000, rng=3,
            weight_param="direct", train_scales=train,
        )  # fmt: skip
        exact = mf.population_gradient(
            target, start, objective, weight_param="direct", train_scales=train
        )
        parts = [[exact["weight"]], exact["old_mean"], exact["new_mean"]]
        if train:
            parts.append([exact["old_scale"], exact["new_scale"]])
        expected = np.concatenate(parts)
        np.testing.assert_array_less(np.abs(est.mean - expected), 5 * est.stderr + 1e-12)


def test_normalised_advantage_approaches_its_exact_limit_with_large_batches():
    """'normalised' divides by batch statistics (biased by O(1/B)); at B = 4096 the bias is
    below the Monte Carlo error of 2000 batches."""
    target, start = two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    objective = mf.NewModeREINFORCE(beta=0.5, advantage="normalised")
    est = mf.estimate_gradient(target, start, objective, batch_size=4096, batches=2000, rng=5,
                               train_scales=True)  # fmt: skip
    exact = mf.population_gradient(target, start, objective, train_scales=True)
    _assert_within_5se(est, exact, 1)


# -- recording, the flow and the extra states ----------------------------------------------


def test_untrained_runs_record_constant_start_scales_and_keep_their_numbers():
    target, start = two_mode(TARGET_1D, 3), two_mode(START_1D, 3)
    kw: dict[str, Any] = {"steps": 20, "batch_size": 8, "replicates": 3, "record_every": 5}
    plain = mf.simulate(target, start, mf.ReverseKL(), **kw)
    np.testing.assert_allclose(plain.old_scale, np.sqrt(START_1D[2]), rtol=1e-14)
    np.testing.assert_allclose(plain.new_scale, np.sqrt(START_1D[4]), rtol=1e-14)
    assert plain.old_scale.shape == plain.old_weight.shape
    # frozen scales (lr_scale 0) follow the same random path as untrained ones
    frozen = mf.simulate(target, start, mf.ReverseKL(), train_scales=True,
                         lr_scale={"old_scale": 0.0, "new_scale": 0.0}, **kw)  # fmt: skip
    np.testing.assert_allclose(frozen.new_mean, plain.new_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(frozen.new_scale, np.sqrt(START_1D[4]), rtol=1e-14)


@pytest.mark.parametrize("scale_param", ["direct", "log"])
def test_population_flow_with_trained_scales_follows_the_exact_gradient(scale_param):
    """d = 1: the flow's first step is θ − lr·∇L with the exact scale gradient."""
    target, start = two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    objective = mf.ReverseKL()
    kw = {"train_scales": True, "scale_param": scale_param}
    g = mf.population_gradient(target, start, objective, "direct", **kw)
    flow = mf.population_flow(target, start, objective, steps=1, lr=0.05, record_every=1,
                              weight_param="direct", **kw)  # fmt: skip
    for name, var in (("old_scale", START_1D[2]), ("new_scale", START_1D[4])):
        sd = np.sqrt(var)
        expected = sd - 0.05 * g[name] if scale_param == "direct" else sd * np.exp(-0.05 * g[name])
        assert getattr(flow, name)[0, 1] == pytest.approx(expected, rel=1e-12)
        assert getattr(flow, name)[0, 0] == pytest.approx(sd, rel=1e-15)


def test_direct_scales_are_floored():
    """A model new component wider than the data shrinks; a huge step would make σ_n
    negative and is floored at 1e-3 (the reference's rule), log σ needs no floor."""
    target = two_mode(TARGET_1D, 1)
    start = target.replace(new_cov=4.0)
    frozen = {"weight": 0.0, "old_mean": 0.0, "new_mean": 0.0}
    kw: dict[str, Any] = {"steps": 1, "lr": 50.0, "record_every": 1, "lr_scale": frozen}
    direct = mf.population_flow(target, start, mf.ForwardKL(), train_scales=True, **kw)
    assert direct.new_scale[0, 1] == 1e-3
    log = mf.population_flow(target, start, mf.ForwardKL(), train_scales=True,
                             scale_param="log", **kw)  # fmt: skip
    assert 0 < log.new_scale[0, 1] < 2.0


@pytest.mark.parametrize(
    "objective",
    [mf.SDFT(ema=0.3), mf.OAPL(lag=2), mf.TTTDiscover(beta=1.0, kl_penalty=0.5)],
    ids=repr,
)
def test_extra_states_carry_the_scales(objective):
    """The teacher EMA, the lag copy and q_0 carry σ: a flow with trained scales is smooth in
    the learning rate of the scales (lr_scale → 0 recovers the untrained flow)."""
    target, start = two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    kw: dict[str, Any] = {"steps": 6, "lr": 0.05, "record_every": 1}
    fixed = mf.population_flow(target, start, objective, **kw)
    tiny = mf.population_flow(target, start, objective, train_scales=True,
                              lr_scale={"old_scale": 1e-9, "new_scale": 1e-9}, **kw)  # fmt: skip
    moving = mf.population_flow(target, start, objective, train_scales=True, **kw)
    np.testing.assert_allclose(tiny.new_mean, fixed.new_mean, rtol=0, atol=1e-8)
    assert np.abs(moving.new_scale[0, -1] - np.sqrt(START_1D[4])) > 1e-4


def test_trajectory_scales_survive_save_and_old_files_load(tmp_path):
    target, start = two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    traj = mf.simulate(target, start, mf.NewModeREINFORCE(), steps=10, batch_size=16,
                       replicates=2, record_every=5, train_scales=True)  # fmt: skip
    assert traj.trains_scales and traj.new_scale.shape == (2, 3)
    assert not np.allclose(traj.new_scale[:, -1], traj.new_scale[:, 0])
    table = traj.to_pandas()
    np.testing.assert_array_equal(table["new_scale"], traj.new_scale.ravel())
    back = mf.Trajectory.load(traj.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.old_scale, traj.old_scale)
    np.testing.assert_array_equal(back.new_scale, traj.new_scale)
    np.testing.assert_array_equal(back.overlap_accuracy(), traj.overlap_accuracy())
    # a file written before scales existed: no scale arrays, constant start σ on load
    plain = mf.simulate(target, start, mf.ReverseKL(), steps=10, batch_size=16, replicates=2,
                        record_every=5)  # fmt: skip
    path = plain.save(tmp_path / "p.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k not in ("old_scale", "new_scale")}
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    old = mf.Trajectory.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.new_scale, np.full((2, 3), np.sqrt(START_1D[4])))
    np.testing.assert_array_equal(old.overlap_accuracy(), plain.overlap_accuracy())


# -- validation ------------------------------------------------------------------------------


def test_train_scales_arguments_are_validated_before_any_work():
    target, start = two_mode(TARGET_1D, 1), two_mode(START_1D, 1)
    kw: dict[str, Any] = {"steps": 2, "batch_size": 4, "replicates": 1, "record_every": 1}
    with pytest.raises(TypeError, match="train_scales must be a bool"):
        mf.simulate(target, start, mf.ForwardKL(), train_scales="yes", **kw)
    with pytest.raises(ValueError, match=r"scale_param must be one of \['direct', 'log'\]"):
        mf.simulate(target, start, mf.ForwardKL(), train_scales=True, scale_param="exp", **kw)
    with pytest.raises(ValueError, match=r"lr_scale\['old_scale'\] .* needs train_scales=True"):
        mf.simulate(target, start, mf.ForwardKL(), lr_scale={"old_scale": 0.5}, **kw)
    with pytest.raises(ValueError, match=r"lr_scale\['new_scale'\] must be a finite number >= 0"):
        mf.simulate(target, start, mf.ForwardKL(), train_scales=True,
                    lr_scale={"new_scale": -1.0}, **kw)  # fmt: skip
    with pytest.raises(ValueError, match="scale_param"):
        mf.estimate_gradient(target, start, mf.ForwardKL(), batches=2, scale_param="x")
    with pytest.raises(TypeError, match="train_scales"):
        mf.population_gradient(target, start, mf.ForwardKL(), train_scales=1)
    with pytest.raises(NotImplementedError, match="d = 1 only"):
        mf.population_flow(two_mode(TARGET_1D, 3), two_mode(START_1D, 3), mf.ForwardKL(),
                           steps=1, record_every=1, train_scales=True)  # fmt: skip
    t4 = mf.TwoMode(old_mean=[-1.0, 0, 0, 0], new_mean=[1.0, 0, 0, 0], old_weight=0.6)
    with pytest.raises(NotImplementedError, match="d <= 3"):
        mf.population_gradient(t4, t4, mf.ForwardKL(), train_scales=True)


def test_new_mode_reinforce_validates_its_fields():
    with pytest.raises(ValueError, match="beta"):
        mf.NewModeREINFORCE(beta=0.0)
    with pytest.raises(ValueError, match="advantage"):
        mf.NewModeREINFORCE(advantage="normalized")
    obj = mf.NewModeREINFORCE(beta=0.2, advantage="normalised")
    assert mf.objectives.objective_from_dict(obj.as_dict()) == obj
    assert dataclasses.asdict(obj) == {"beta": 0.2, "advantage": "normalised"}


def test_toml_configuration_reaches_the_new_objective_and_trained_scales():
    from mixforget.config import ConfigError, parse_config

    doc: dict[str, Any] = {
        "target": {"old_mean": [-3.0], "new_mean": [3.5], "old_weight": 0.75, "old_cov": 1.0,
                   "new_cov": 0.49},
        "objective": {"kind": "NewModeREINFORCE", "beta": 0.1, "advantage": "normalised"},
        "run": {"steps": 4, "batch_size": 32, "replicates": 2, "record_every": 2,
                "weight_param": "direct", "train_scales": True, "scale_param": "log",
                "lr_scale": {"weight": 0.005, "old_scale": 0.005}},
    }  # fmt: skip
    cfg = parse_config(doc)
    assert cfg.objective == mf.NewModeREINFORCE(beta=0.1, advantage="normalised")
    traj = mf.simulate(**cfg.simulate_kwargs())
    assert traj.meta["train_scales"] and traj.meta["scale_param"] == "log"
    assert traj.meta["lr_scale"]["old_scale"] == 0.005
    assert not np.allclose(traj.new_scale[:, -1], 0.7)
    doc["run"]["scale_param"] = "exp"
    with pytest.raises(ConfigError, match="scale_param"):
        parse_config(doc)
