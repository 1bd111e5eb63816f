"""Numerical reliability of every training entry point (issue 24, classes 1, 2, 4, 7's floors
and 10): one runaway rule over every trained parameter, the same in the Rust engine, the NumPy
twin, the population flow and ``Trajectory.runaway``; metrics that never read a runaway as
success; memory estimates that count the twin's work arrays; summaries without big
temporaries; starts below the documented floors refused; exact population expectations near
a lower-dimensional configuration. Each test is parametrised over the entry points it
applies to."""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest

import mixforget as mf
from mixforget import _core, _defaults, results
from mixforget.reference import simulate as twin_simulate
from mixforget.reference._densities import alpha_of
from mixforget.reference._engine import twin_step_bytes
from mixforget.reference._objective import Context, Params
from mixforget.reference._step import beyond_runaway
from mixforget.studies import drop_vs_gain

T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
S = T.replace(new_mean=[0.5])

FINITE_BATCH = {"rust": mf.simulate, "twin": twin_simulate}


def test_runaway_constants_are_defined_once_per_language_and_agree():
    for name in ("RUNAWAY_DISTANCE", "RUNAWAY_WEIGHT", "RUNAWAY_SCALE"):
        assert getattr(_defaults, name) == getattr(_core, name), name
        assert getattr(results, name) is getattr(_defaults, name)


# ---------------------------------------------------------------------------------------
# class 1: runaway and collapsed component scales
# ---------------------------------------------------------------------------------------
def _check_flagged_and_metrics_safe(traj: mf.Trajectory) -> None:
    """Every replicate beyond the bound is flagged by the engine, excluded from the summary,
    and its metrics are NaN from the record that crossed it (never a false success)."""
    sigma_star = 1.0
    with np.errstate(divide="ignore"):
        log_ratio = np.abs(np.log(np.concatenate([traj.old_scale, traj.new_scale], axis=1)))
    beyond = ~(log_ratio <= math.log(mf.results.RUNAWAY_SCALE * sigma_star)).all(axis=1)
    assert beyond.any()
    assert np.array_equal(traj.runaway, traj.runaway | beyond)
    # the engine froze each of them where it crossed: finite parameters, flagged diverged
    assert np.array_equal(np.asarray(traj.diverged, bool) & ~traj.runaway, np.zeros_like(beyond))
    assert traj.diverged[beyond].all() and traj.diverged[traj.runaway].all()
    summary = traj.summary()
    assert summary["diverged"] == int(traj.excluded.sum())
    assert summary["replicates"] == traj.replicates - int(traj.excluded.sum())
    gain, drop, acc = traj.gain(), traj.drop(), traj.overlap_accuracy()
    assert np.isnan(gain[beyond, -1]).all() and np.isnan(drop[beyond, -1]).all()
    assert np.isnan(acc[beyond, -1]).all()
    kept = ~traj.excluded
    assert np.isfinite(acc[kept]).all()


@pytest.mark.parametrize("entry", sorted(FINITE_BATCH))
def test_runaway_scales_are_flagged_issue_example(entry):
    traj = FINITE_BATCH[entry](
        T,
        S,
        mf.ForwardKL(),
        train_scales=True,
        scale_param="log",
        lr_scale={"new_scale": 1000.0},
        steps=50,
        batch_size=64,
        replicates=20,
        rng=0,
    )
    assert traj.runaway.all() and traj.summary()["replicates"] == 0
    _check_flagged_and_metrics_safe(traj)


@pytest.mark.parametrize("entry", sorted(FINITE_BATCH))
def test_collapsed_scales_are_flagged(entry):
    traj = FINITE_BATCH[entry](
        T,
        S,
        mf.ReverseKL(),
        train_scales=True,
        scale_param="log",
        lr_scale={"old_scale": 100.0},
        steps=50,
        batch_size=64,
        replicates=20,
        rng=0,
    )
    collapsed = (traj.old_scale[:, -1] < 1e-6) | (traj.new_scale[:, -1] < 1e-6)
    assert collapsed.any()
    assert traj.runaway[collapsed].all() and traj.diverged[collapsed].all()
    _check_flagged_and_metrics_safe(traj)


def test_population_flow_flags_runaway_scales():
    traj = mf.population_flow(
        T,
        S,
        mf.ForwardKL(),
        train_scales=True,
        scale_param="log",
        lr_scale={"new_scale": 1e4},
        steps=20,
        record_every=1,
    )
    assert traj.diverged[0] and traj.runaway[0]
    _check_flagged_and_metrics_safe(traj)


def test_drop_vs_gain_leaves_runaway_replicates_out():
    study = drop_vs_gain(
        T,
        S,
        mf.ForwardKL(),
        [0.05],
        thresholds=[0.5],
        steps=20,
        batch_size=64,
        replicates=8,
        train_scales=True,
        scale_param="log",
        lr_scale={"new_scale": 1000.0},
    )
    (row,) = study.rows
    # every replicate ran away at once: none is used, none "reached" the gain threshold
    assert row["replicates"] == 0 and row["diverged"] == 8 and row["reached"] == 0


def test_trajectory_runaway_of_loaded_records_covers_scales():
    """σ = inf, 0 and 1e200 in records from elsewhere: flagged, and gain() does not raise."""
    r, n = 4, 3
    scale = np.ones((r, n))
    scale[1, 2], scale[2, 2], scale[3, 2] = np.inf, 0.0, 1e200
    traj = mf.Trajectory(
        steps=np.arange(n),
        old_weight=np.full((r, n), 0.75),
        old_mean=np.full((r, n, 1), -3.0),
        new_mean=np.full((r, n, 1), 0.5),
        starved=np.zeros((r, n), dtype=np.int64),
        diverged=np.zeros(r, dtype=bool),
        target=T,
        meta={"start": S.to_dict(), "train_scales": True},
        old_scale=np.ones((r, n)),
        new_scale=scale,
    )
    assert traj.runaway.tolist() == [False, True, True, True]
    gain = traj.gain()
    assert np.isnan(gain[1:, 2]).all() and np.isfinite(gain[0]).all()
    assert np.isfinite(gain[1:, :2]).all()


# ---------------------------------------------------------------------------------------
# class 2: the old weight's rule agrees between layers (α = 1.0 in float64 is flagged)
# ---------------------------------------------------------------------------------------
WEIGHT_AT_ONE = {
    "rust": lambda: mf.simulate(
        T, S, mf.TTTDiscover(), batch_size=2, steps=2000, replicates=20, lr=0.5, rng=0
    ),
    "twin": lambda: twin_simulate(
        T, S, mf.TTTDiscover(), batch_size=2, steps=2000, replicates=20, lr=0.5, rng=0
    ),
    "population_flow": lambda: mf.population_flow(
        T, S, mf.OAPL(), steps=2000, lr=0.5, record_every=100
    ),
}


@pytest.mark.parametrize("entry", sorted(WEIGHT_AT_ONE))
def test_old_weight_rounding_to_one_is_flagged(entry):
    traj = WEIGHT_AT_ONE[entry]()
    at_one = (traj.old_weight == 1.0).any(axis=1)
    assert at_one.any()
    assert traj.diverged[at_one].all() and traj.runaway[at_one].all()
    # the engine's flag and the records' rule agree on every replicate
    assert np.array_equal(np.asarray(traj.diverged, bool), traj.runaway)
    assert traj.summary()["replicates"] == int((~traj.excluded).sum())


@pytest.mark.parametrize("eta, flagged", [(36.0, False), (38.0, True), (-690.0, False)])
def test_twin_rule_on_the_weight_is_on_the_recorded_alpha(eta, flagged):
    """The twin decides on α as it computes and records it (``alpha_of``), like
    ``Problem::runaway`` on the engine's recorded α, and ``Trajectory.runaway`` agrees."""
    ctx = Context.build(T, S, "logit")
    params = Params.of_model(S, "logit")
    params.weight = np.full(1, eta)
    alpha = float(alpha_of(params.weight, "logit")[0])
    assert (alpha == 1.0) is (eta > 0 and flagged)
    assert bool(beyond_runaway(ctx, params)[0]) is flagged
    recorded = mf.Trajectory(
        steps=np.arange(1),
        old_weight=np.full((1, 1), alpha),
        old_mean=np.full((1, 1, 1), -3.0),
        new_mean=np.full((1, 1, 1), 0.5),
        starved=np.zeros((1, 1), dtype=np.int64),
        diverged=np.zeros(1, dtype=bool),
        target=T,
    )
    assert bool(recorded.runaway[0]) is flagged


# ---------------------------------------------------------------------------------------
# class 4: memory
# ---------------------------------------------------------------------------------------
def test_twin_memory_limit_counts_its_work_arrays():
    began = time.perf_counter()
    with pytest.raises(ValueError, match=r"work arrays.*memory limit"):
        twin_simulate(T, S, mf.ReverseKL(), batch_size=4000, replicates=4000, memory_limit=10**8)
    assert time.perf_counter() - began < 1.0  # refused before any work


@pytest.mark.parametrize(
    "objective, train_scales",
    [(mf.ReverseKL(replay=0.2), False), (mf.ForwardKL(replay=0.2), True), (mf.SDFT(), False)],
)
def test_twin_work_array_estimate_bounds_the_measured_peak(objective, train_scales):
    r = b = 200
    tracemalloc.start()
    try:
        twin_simulate(
            T,
            S,
            objective,
            steps=2,
            record_every=1,
            batch_size=b,
            replicates=r,
            train_scales=train_scales,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = twin_step_bytes(1, b, r)
    assert 0.5 * estimate < peak <= estimate, (peak, estimate)


def test_summary_needs_no_temporaries_of_the_records_size():
    r, n, d = 400, 2000, 2
    rng = np.random.default_rng(0)
    target = mf.TwoMode(old_mean=[0.0, 0.0], new_mean=[3.0, 0.0], old_weight=0.75, cov=1.0)
    traj = mf.Trajectory(
        steps=np.arange(n),
        old_weight=np.full((r, n), 0.7),
        old_mean=rng.normal(size=(r, n, d)),
        new_mean=rng.normal(size=(r, n, d)),
        starved=np.zeros((r, n), dtype=np.int64),
        diverged=np.zeros(r, dtype=bool),
        target=target,
    )
    tracemalloc.start()
    try:
        summary = traj.summary()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < traj.old_mean.nbytes / 4, (peak, traj.old_mean.nbytes)
    drift = traj.drift
    assert summary["sup_drift"]["mean"] == pytest.approx(drift.max(axis=1).mean(), rel=1e-12)
    assert summary["drift"]["mean"] == pytest.approx(drift[:, -1].mean(), rel=1e-12)


# ---------------------------------------------------------------------------------------
# class 7: a start below the documented floors is refused, never moved silently
# ---------------------------------------------------------------------------------------
ENTRY_POINTS = {
    "rust": lambda start, **kw: mf.simulate(T, start, mf.ReverseKL(), steps=2, **kw),
    "twin": lambda start, **kw: twin_simulate(T, start, mf.ReverseKL(), steps=2, **kw),
    "population_flow": lambda start, **kw: mf.population_flow(
        T, start, mf.ReverseKL(), steps=2, **kw
    ),
}
FLOORS = {
    "weight": (S.replace(old_weight=5e-4), {"weight_param": "direct"}, "old_weight.*clamp"),
    "weight-high": (
        S.replace(old_weight=1 - 5e-4),
        {"weight_param": "direct"},
        "old_weight.*clamp",
    ),
    "scale": (
        S.replace(cov=1e-8),
        {"train_scales": True, "scale_param": "direct"},
        "scale.*below 0.001.*floor",
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_start_below_a_floor_is_refused(entry, floor):
    start, kwargs, match = FLOORS[floor]
    with pytest.raises(ValueError, match=match):
        ENTRY_POINTS[entry](start, record_every=1, **kwargs)
    # without the floor (logit weight, log scales) the same start is accepted
    other = {"weight_param": "logit"} if "weight_param" in kwargs else {"scale_param": "log"}
    ENTRY_POINTS[entry](start, record_every=1, **{**kwargs, **other})


# ---------------------------------------------------------------------------------------
# class 10: exact population expectations near a lower-dimensional configuration
# ---------------------------------------------------------------------------------------
def _models(d: int, offset: float) -> tuple[mf.TwoMode, mf.TwoMode]:
    """Target with both means on axis 0; the model's new mean at 2.5 on it and ``offset`` off
    it along axis 1 (a nearly degenerate span)."""
    old, new = np.zeros(d), np.zeros(d)
    new[0] = 3.0
    target = mf.TwoMode(old_mean=old, new_mean=new, old_weight=0.75, cov=1.0)
    model_new = new.copy()
    model_new[0], model_new[1] = 2.5, offset
    return target, target.replace(new_mean=model_new)


def _reverse_kl_new_mean_gradient(target: mf.TwoMode, model: mf.TwoMode) -> np.ndarray:
    """∇_{μ_n} KL(q ‖ p*) = E_q[r_n(x)(x − μ_n)(log q − log p*)] (unit covariance) by an
    independent trapezoidal quadrature on the plane of axes 0 and 1 (the rest integrates
    out: every mean has zero coordinates there)."""
    h = 0.1
    x0, x1 = np.meshgrid(np.arange(-12.0, 15.0, h), np.arange(-12.0, 12.0, h), indexing="ij")

    def log_phi(mean: np.ndarray) -> np.ndarray:
        return -0.5 * ((x0 - mean[0]) ** 2 + (x1 - mean[1]) ** 2) - math.log(2 * math.pi)

    def log_mix(m: mf.TwoMode) -> tuple[np.ndarray, np.ndarray]:
        lo = math.log(m.old_weight) + log_phi(m.old_mean)
        ln = math.log(1 - m.old_weight) + log_phi(m.new_mean)
        return np.logaddexp(lo, ln), ln

    log_q, log_qn = log_mix(model)
    log_p, _ = log_mix(target)
    weight = np.exp(log_qn) * (log_q - log_p) * h * h  # q · r_n · (log q − log p*)
    mean = model.new_mean
    return np.array([np.sum(weight * (x0 - mean[0])), np.sum(weight * (x1 - mean[1]))])


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("offset", [1e-9, 3e-10])
def test_population_gradient_keeps_a_nearly_degenerate_direction(d, offset):
    target, model = _models(d, offset)
    exact = mf.population_gradient(target, model, mf.ReverseKL())["new_mean"]
    reference = _reverse_kl_new_mean_gradient(target, model)
    assert exact[1] == pytest.approx(reference[1], rel=1e-6), (exact, reference)
    assert exact[0] == pytest.approx(reference[0], rel=1e-9)
    assert np.all(exact[2:] == 0.0)


@pytest.mark.parametrize("d", [2, 3])
def test_population_flow_converges_to_the_target_near_degeneracy(d):
    target, start = _models(d, 0.3)
    traj = mf.population_flow(target, start, mf.ReverseKL(), steps=2000, lr=0.5, record_every=2000)
    error = np.linalg.norm(traj.new_mean[0, -1] - target.new_mean)
    drift = np.linalg.norm(traj.old_mean[0, -1] - target.old_mean)
    assert error < 1e-11 and drift < 1e-11, (error, drift)
