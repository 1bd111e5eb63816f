"""update='natural' (issue 22): steps preconditioned by the complete-data Fisher of the
current model, exact per component. One step against its algebra (Rust, every
parametrisation), the twin's preconditioner against the same formulas, Rust and the twin
in distribution, and the population flow of KLRegularizedRL against the closed-form optimum
and against the natural logit flow of mixforget.theory (docs: theory-kl-regularized)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixforget as mf
from mixforget.reference._objective import Context, Params
from mixforget.reference._step import natural_gradient
from mixforget.theory import (
    kl_regularized_old_weight,
    natural_gradient_logit_flow,
    policy_gradient_logit_flow,
)

FULL_COV = np.array([[1.2, 0.3], [0.3, 0.7]])
TARGET_2D = mf.TwoMode(old_mean=[-2.0, 0.5], new_mean=[2.0, -0.5], old_weight=0.6, cov=FULL_COV)
START_2D = TARGET_2D.replace(old_mean=[-1.7, 0.2], new_mean=[0.5, 0.1], old_weight=0.7)
TARGET_1D = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.6, cov=0.8)
START_1D = TARGET_1D.replace(old_mean=[-1.7], new_mean=[0.5], old_weight=0.7)
WORLD = mf.TwoMode(old_mean=[-6.0], new_mean=[6.0], old_weight=0.75)
LR = 0.05


def _logit(a: float) -> float:
    return math.log(a / (1.0 - a))


def _sigmoid(eta: float) -> float:
    return 1.0 / (1.0 + math.exp(-eta))


def _one_step(target, start, objective, update, **kw):
    flow = mf.population_flow(
        target, start, objective, steps=1, lr=LR, record_every=1, update=update, **kw
    )
    return flow


@pytest.mark.parametrize("weight_param", ["logit", "direct"])
@pytest.mark.parametrize("objective", [mf.ForwardKL(), mf.ReverseKL()], ids=repr)
def test_one_natural_step_is_the_fisher_preconditioned_sgd_step(weight_param, objective):
    g = mf.population_gradient(TARGET_2D, START_2D, objective, weight_param=weight_param)
    a = START_2D.old_weight
    sgd = _one_step(TARGET_2D, START_2D, objective, "sgd", weight_param=weight_param)
    nat = _one_step(TARGET_2D, START_2D, objective, "natural", weight_param=weight_param)
    fisher_weight = a * (1 - a)
    if weight_param == "logit":
        sgd_alpha = _sigmoid(_logit(a) - LR * g["weight"])
        nat_alpha = _sigmoid(_logit(a) - LR * g["weight"] / fisher_weight)
    else:
        sgd_alpha = a - LR * g["weight"]
        nat_alpha = a - LR * g["weight"] * fisher_weight
    assert sgd.old_weight[0, 1] == pytest.approx(sgd_alpha, rel=1e-12)
    assert nat.old_weight[0, 1] == pytest.approx(nat_alpha, rel=1e-12)
    for name, w in (("old_mean", a), ("new_mean", 1 - a)):
        mu0 = getattr(START_2D, name)
        np.testing.assert_allclose(getattr(sgd, name)[0, 1], mu0 - LR * g[name], rtol=1e-12)
        # the mean of component k: Σ_k ĝ_k / w_k (full covariance)
        expected = mu0 - LR * FULL_COV @ g[name] / w
        np.testing.assert_allclose(getattr(nat, name)[0, 1], expected, rtol=1e-12)
    # the step is a different one (the test can fail)
    assert abs(nat.old_weight[0, 1] - sgd.old_weight[0, 1]) > 1e-6


@pytest.mark.parametrize("scale_param", ["direct", "log"])
def test_one_natural_step_of_trained_scales(scale_param):
    objective = mf.ForwardKL()
    kw = {"train_scales": True, "scale_param": scale_param}
    g = mf.population_gradient(TARGET_1D, START_1D, objective, **kw)
    nat = _one_step(TARGET_1D, START_1D, objective, "natural", **kw)
    a, sd0 = START_1D.old_weight, math.sqrt(0.8)
    for name, w in (("old", a), ("new", 1 - a)):
        # Fisher of σ for N(μ, σ²S) in d = 1: 2·w_k/σ² (direct) or 2·w_k (log σ)
        grad = g[f"{name}_scale"]
        if scale_param == "direct":
            expected = sd0 - LR * grad * sd0**2 / (2 * w)
        else:
            expected = sd0 * math.exp(-LR * grad / (2 * w))
        assert getattr(nat, f"{name}_scale")[0, 1] == pytest.approx(expected, rel=1e-12)
        # the mean uses the current covariance σ_k² S_k = 0.8
        mu0 = getattr(START_1D, f"{name}_mean")
        np.testing.assert_allclose(
            getattr(nat, f"{name}_mean")[0, 1], mu0 - LR * 0.8 * g[f"{name}_mean"] / w, rtol=1e-12
        )


@pytest.mark.parametrize("weight_param", ["logit", "direct"])
@pytest.mark.parametrize("scale_param", [None, "direct", "log"])
def test_twin_preconditioner_is_the_same_algebra(weight_param, scale_param):
    target, start = (TARGET_2D, START_2D) if scale_param is None else (TARGET_1D, START_1D)
    ctx = Context.build(target, start, weight_param, None, scale_param)
    params = Params.of_model(start, weight_param, 1, None, scale_param)
    model = ctx.mix_of(params)
    rng = np.random.default_rng(3)
    d = target.dim
    grad = Params(rng.normal(size=1), rng.normal(size=(1, d)), rng.normal(size=(1, d)))
    if scale_param is not None:
        grad.old_scale, grad.new_scale = rng.normal(size=1), rng.normal(size=1)
    out = natural_gradient(ctx, model, grad)
    a = start.old_weight
    f = a * (1 - a)
    assert out.weight[0] == pytest.approx(
        grad.weight[0] / f if weight_param == "logit" else grad.weight[0] * f
    )
    for name, w, cov in (("old", a, start.old_cov), ("new", 1 - a, start.new_cov)):
        cov = np.atleast_2d(cov) if np.ndim(cov) != 1 else np.diag(cov)
        np.testing.assert_allclose(
            getattr(out, f"{name}_mean")[0], cov @ getattr(grad, f"{name}_mean")[0] / w, rtol=1e-12
        )
        if scale_param is not None:
            sd = math.sqrt(float(cov[0, 0]))
            fisher = 2 * d * w / sd**2 if scale_param == "direct" else 2 * d * w
            assert getattr(out, f"{name}_scale")[0] == pytest.approx(
                getattr(grad, f"{name}_scale")[0] / fisher, rel=1e-12
            )


@pytest.mark.parametrize(
    "objective, kw",
    [
        (mf.ReverseKL(), {}),
        (mf.KLRegularizedRL(reference="target", beta=0.5), {"weight_param": "direct"}),
        (mf.ForwardKL(replay=0.2), {"train_scales": True, "scale_param": "log"}),
    ],
    ids=["reverse", "klrl-direct", "forward-scales"],
)
def test_rust_and_twin_agree_in_distribution_with_natural_steps(objective, kw):
    run = dict(steps=40, batch_size=16, lr=0.05, replicates=1500, record_every=40, update="natural")
    rust = mf.simulate(TARGET_1D, START_1D, objective, rng=1, **run, **kw)
    twin = mf.simulate(TARGET_1D, START_1D, objective, rng=2, backend="numpy", **run, **kw)
    sgd = mf.simulate(TARGET_1D, START_1D, objective, rng=1, **{**run, "update": "sgd"}, **kw)
    names = ["old_weight", "old_mean", "new_mean"]
    if kw.get("train_scales"):
        names += ["old_scale", "new_scale"]
    for name in names:
        x, y = getattr(rust, name)[:, -1].astype(float), getattr(twin, name)[:, -1].astype(float)
        se = np.sqrt(x.var(axis=0, ddof=1) / len(x) + y.var(axis=0, ddof=1) / len(y))
        z = (x.mean(axis=0) - y.mean(axis=0)) / se
        assert np.all(np.abs(z) < 5.0), f"{name}: z = {z}"
    assert rust.meta["update"] == twin.meta["update"] == "natural"
    # the natural run is a different run from the plain one
    assert abs(rust.old_weight[:, -1].mean() - sgd.old_weight[:, -1].mean()) > 1e-3


CASES = [(kl, beta) for kl in ("reverse", "forward") for beta in (1.0, 0.5, 0.1)]


@pytest.mark.parametrize("kl, beta", CASES)
def test_natural_population_flow_reaches_the_closed_form(kl, beta):
    """Natural steps contract the logit at rate β about the optimum (reverse KL: the field is
    Δr − β(η − η_ref) exactly), so 1000 steps of lr 0.5 reach it even at β = 0.1, where plain
    steps need 10⁵ (test_kl_regularized)."""
    objective = mf.KLRegularizedRL(beta=beta, kl=kl)
    flow = mf.population_flow(
        WORLD, WORLD, objective, steps=1000, lr=0.5, record_every=1000, update="natural"
    )
    assert abs(flow.old_weight[0, -1] - kl_regularized_old_weight(0.75, 1.0, beta, kl)) < 1e-6
    assert abs(flow.old_mean[0, -1, 0] + 6.0) < 1e-5 and abs(flow.new_mean[0, -1, 0] - 6.0) < 1e-5


def test_natural_population_flow_is_the_theory_natural_logit_flow():
    """K = 2, label rewards (0, 1), a KL weight too small to matter: the natural field of the
    logit is r_o − r_n, constant, so the Euler steps of the flow are the exact flow, and the
    weights follow natural_gradient_logit_flow (w ∝ w_0 e^{r t}) at t = lr·steps. The plain
    steps are not parametrisation-free: on the one logit η = θ_o − θ_n the field is
    α(1−α)(r_o − r_n), half of what the two softmax logits of policy_gradient_logit_flow give
    η, so they follow that flow at t/2 (to their Euler error), and lag behind the natural one."""
    objective = mf.KLRegularizedRL(beta=1e-9)
    steps, lr = 400, 0.01
    time = steps * lr
    nat = mf.population_flow(
        WORLD, WORLD, objective, steps=steps, lr=lr, record_every=steps, update="natural"
    )
    theory = natural_gradient_logit_flow([0.75, 0.25], [0.0, 1.0], time=time)
    assert nat.old_weight[0, -1] == pytest.approx(theory[0], abs=1e-7)
    plain = mf.population_flow(WORLD, WORLD, objective, steps=steps, lr=lr, record_every=steps)
    theory_plain = policy_gradient_logit_flow([0.75, 0.25], [0.0, 1.0], time=time / 2)
    assert plain.old_weight[0, -1] == pytest.approx(theory_plain[0], abs=1e-4)
    assert plain.old_weight[0, -1] > nat.old_weight[0, -1] + 0.05


def test_update_is_recorded_saved_and_validated(tmp_path):
    flow = mf.population_flow(
        WORLD, WORLD, mf.ReverseKL(), steps=2, record_every=1, update="natural"
    )
    assert flow.meta["update"] == "natural"
    path = tmp_path / "flow.npz"
    flow.save(path)
    assert mf.Trajectory.load(path).meta["update"] == "natural"
    assert (
        mf.simulate(WORLD, WORLD, mf.ReverseKL(), steps=2, replicates=2, record_every=1).meta[
            "update"
        ]
        == "sgd"
    )
    for call in (
        lambda: mf.population_flow(
            WORLD, WORLD, mf.ReverseKL(), steps=2, record_every=1, update="adam"
        ),
        lambda: mf.simulate(
            WORLD, WORLD, mf.ReverseKL(), steps=2, record_every=1, update="Natural"
        ),
        lambda: mf.simulate(
            WORLD, WORLD, mf.ReverseKL(), steps=2, record_every=1, update=None, backend="numpy"
        ),
    ):
        with pytest.raises(ValueError, match="update must be one of"):
            call()


def test_update_in_toml_config():
    from mixforget import config

    doc = {
        "target": {"old_mean": [-6.0], "new_mean": [6.0], "old_weight": 0.75},
        "start": {"old_mean": [-6.0], "new_mean": [6.0], "old_weight": 0.75},
        "objective": {"kind": "ReverseKL"},
        "run": {"steps": 10, "record_every": 5, "replicates": 2, "update": "natural"},
    }
    cfg = config.parse_config(doc)
    assert cfg.simulate_kwargs()["update"] == "natural"
    doc["run"]["update"] = "newton"
    with pytest.raises(config.ConfigError, match="update"):
        config.parse_config(doc)
