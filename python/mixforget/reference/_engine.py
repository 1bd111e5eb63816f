"""The shared core of the twin, written once for every objective: draw, densities, score
accumulation, update and recording (MATH §3, §5). What differs between objectives is asked of
the objective's :class:`~._objective.ObjectiveTwin` (:func:`._registry.twin_for`)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from .._problem import check_models, check_objective, check_run, check_weight_param
from .._rng import RngLike, resolve_rng, seed_record
from .._validate import as_positive_int, resolve_threads
from ..mixture import TwoMode
from ..objectives import Objective
from ..results import RUNAWAY_DISTANCE, RUNAWAY_WEIGHT, GradientEstimates, Trajectory
from ._averaging import Averager, BatchMean, QuadMean
from ._densities import Mix, alpha_of, mix_logpdf
from ._objective import Context, ObjectiveTwin, Params
from ._registry import twin_for

_DIRECT_EPS = 1e-3  # MATH §1: the direct weight is clipped to [ε, 1 − ε]
_CHUNK_SAMPLES = 1 << 20  # estimate_gradient: samples per vectorised chunk (bounds memory)


def score_mean(
    c: np.ndarray,
    x: np.ndarray,
    lpo: np.ndarray,
    lpn: np.ndarray,
    lq: np.ndarray,
    mix: Mix,
    ctx: Context,
    avg: Averager,
) -> Params:
    """avg_i[c_i s(x_i)] for the score s = ∇_θ log q_θ (MATH §3), per group:
    weight r_o − α (logit) or (φ_o − φ_n)/q (direct); old mean r_o Σ_o⁻¹(x − μ_o);
    new mean r_n Σ_n⁻¹(x − μ_n). Σ⁻¹ is applied after averaging (it is linear).
    Returns weight (R,), old_mean (R, d), new_mean (R, d)."""
    ro = np.exp(mix.log_a[:, None] + lpo - lq)
    rn = np.exp(mix.log_b[:, None] + lpn - lq)
    if ctx.weight_param == "logit":
        s_w = ro - mix.alpha[:, None]
    else:
        s_w = np.exp(lpo - lq) - np.exp(lpn - lq)
    return Params(
        weight=avg.mean(c * s_w),
        old_mean=ctx.g_o.prec(avg.mean((c * ro)[..., None] * (x - mix.mo[:, None, :]))),
        new_mean=ctx.g_n.prec(avg.mean((c * rn)[..., None] * (x - mix.mn[:, None, :]))),
    )


def gradient(
    ctx: Context, twin: ObjectiveTwin[Any], x: np.ndarray, avg: Averager, model: Mix
) -> Params:
    """ĝ = avg_i[c_i s(x_i)] at samples / grid points x (R, N, d) — the loss gradient
    (MATH §3–§4)."""
    lpo, lpn, lq = mix_logpdf(x, model, ctx.g_o, ctx.g_n)
    c = twin.coefficient(x, lq, avg)
    return score_mean(c, x, lpo, lpn, lq, model, ctx, avg)


def draw_batch(
    gen: np.random.Generator, ctx: Context, twin: ObjectiveTwin[Any], r: int, b: int, model: Mix
) -> tuple[np.ndarray, np.ndarray]:
    """One batch per replicate from the objective's sampling distribution: the standard
    normals z (R, B, d) first, then whatever the objective draws (replay slots, labels).
    Returns x (R, B, d) and the old label (R, B)."""
    z = gen.standard_normal((r, b, ctx.dim))
    return twin.draw(gen, z, model)


def sgd_step(
    params: Params, grad: Params, lr: float, scale: Mapping[str, float], weight_param: str
) -> Params:
    """θ ← θ − lr·m⊙ĝ per group (m = ``lr_scale``); the direct weight is then clipped to
    [1e-3, 1 − 1e-3] (NaN stays NaN)."""
    new = Params(
        **{name: v - lr * scale[name] * getattr(grad, name) for name, v in params.groups().items()}
    )
    if weight_param == "direct":
        new.weight = np.clip(new.weight, _DIRECT_EPS, 1.0 - _DIRECT_EPS)
    return new


class _Recorder:
    """The recorded trajectory: α, the means and the cumulative starved count at records
    0, 1, …, n_rec − 1."""

    def __init__(self, r: int, d: int, n_rec: int, weight_param: str) -> None:
        self.weight_param = weight_param
        self.old_weight = np.empty((r, n_rec))
        self.old_mean = np.empty((r, n_rec, d))
        self.new_mean = np.empty((r, n_rec, d))
        self.starved = np.zeros((r, n_rec), dtype=np.int64)

    def record(self, j: int, params: Params, starved: np.ndarray) -> None:
        self.old_weight[:, j] = alpha_of(params.weight, self.weight_param)
        self.old_mean[:, j] = params.old_mean
        self.new_mean[:, j] = params.new_mean
        self.starved[:, j] = starved


# =====================================================================================
# Training loop (MATH §5)
# =====================================================================================


def simulate(
    target: TwoMode,
    start: TwoMode,
    objective: Objective,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 0.05,
    replicates: int = 1000,
    record_every: int = 10,
    rng: RngLike = 0,
    weight_param: str = "logit",
    lr_scale: Optional[Mapping[str, float]] = None,
    threads: Optional[int] = None,
    progress: bool = False,
    memory_limit: Optional[int] = None,
) -> Trajectory:
    """Finite-batch training of ``replicates`` independent copies of ``start`` (MATH §4–§5),
    NumPy twin of :func:`mixforget.simulate`, vectorised over replicates and batch.

    Each step, for all replicates at once: draw a batch from the objective's sampling
    distribution (labels kept, §4), form ĝ = (1/B) Σ c_i s(x_i) (§3–§4), update
    θ ← θ − lr·m⊙ĝ (m = ``lr_scale``; the direct weight is then clipped to [1e-3, 1 − 1e-3]),
    then the SDFT teacher EMA φ ← (1 − τ)φ + τθ, or the OAPL lag θ_lag ← θ after step t when
    t % lag == 0. q_0, the teacher and the lag start at ``start``; model covariances are
    ``start``'s, the world's are ``target``'s. A replicate whose parameters become non-finite
    (after clipping, as in Rust) is flagged ``diverged`` and frozen at its last finite state
    (its later records repeat it; its starved count stops); one that leaves the runaway bound
    of :func:`mixforget.simulate` is flagged and frozen at the state that crossed it. Records
    at steps 0, k, …, T (k = ``record_every`` must divide ``steps``); ``starved`` is the
    cumulative count of batches without an old-labelled sample. Raises ValueError when the
    recorded output would exceed ``memory_limit`` bytes."""
    t0 = time.perf_counter()
    run = check_run(
        target,
        start,
        objective,
        steps,
        batch_size,
        lr,
        replicates,
        record_every,
        weight_param,
        lr_scale,
        threads,
        progress,
        memory_limit,
    )
    objective, steps, batch_size, lr = run.objective, run.steps, run.batch_size, run.lr
    replicates, record_every, weight_param = run.replicates, run.record_every, run.weight_param
    r = replicates
    ctx = Context.build(target, start, weight_param)
    twin = twin_for(objective, ctx, batch_size)
    seq = resolve_rng(rng)
    gen = np.random.default_rng(seq)

    params = Params.of_model(start, weight_param, replicates=r)
    twin.reset(params)
    avg = BatchMean(batch_size)
    recorder = _Recorder(r, target.dim, steps // record_every + 1, weight_param)
    starved = np.zeros(r, dtype=np.int64)
    diverged = np.zeros(r, dtype=bool)

    recorder.record(0, params, starved)
    bar = _progress_bar(steps) if progress else None
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            model = params.mix(weight_param)
            x, old = draw_batch(gen, ctx, twin, r, batch_size, model)
            grad = gradient(ctx, twin, x, avg, model)
            new = sgd_step(params, grad, lr, run.lr_scale, weight_param)
            starved += ~diverged & ~old.any(axis=1)
            ok = ~diverged & new.finite()
            # runaway: frozen where it crossed the bound, extra state not advanced (as in Rust)
            runaway = ok & _runaway(new, target, weight_param)
            diverged |= ~ok | runaway
            params = new.where(ok, params)
            twin.advance(t, params, ok & ~runaway)
            if t % record_every == 0:
                recorder.record(t // record_every, params, starved)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()

    meta = {
        "objective": objective.as_dict(),
        "start": start.to_dict(),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "replicates": replicates,
        "record_every": record_every,
        "weight_param": weight_param,
        "lr_scale": run.lr_scale,
        "seed": seed_record(seq),
        "wall_time": time.perf_counter() - t0,
        "threads": run.threads,
        "implementation": "numpy",
    }
    return Trajectory(
        steps=np.arange(0, steps + 1, record_every, dtype=np.int64),
        old_weight=recorder.old_weight,
        old_mean=recorder.old_mean,
        new_mean=recorder.new_mean,
        starved=recorder.starved,
        diverged=diverged,
        target=target,
        meta=meta,
    )


def _runaway(params: Params, target: TwoMode, weight_param: str) -> np.ndarray:
    """(R,) replicates beyond the engine's runaway bound (``Problem::runaway`` in Rust): a mean
    beyond RUNAWAY_DISTANCE Mahalanobis units of the target's mean of its mode, or the weight
    parameter beyond RUNAWAY_WEIGHT of 0 or 1 (logit: |η| ≥ ln(1/RUNAWAY_WEIGHT − 1))."""
    w = params.weight
    if weight_param == "logit":
        edge = np.abs(w) >= math.log(1.0 / RUNAWAY_WEIGHT - 1.0)
    else:
        edge = (w <= RUNAWAY_WEIGHT) | (1.0 - w <= RUNAWAY_WEIGHT)
    with np.errstate(all="ignore"):
        far_old = target.mahalanobis(params.old_mean - target.old_mean, "old") > RUNAWAY_DISTANCE
        far_new = target.mahalanobis(params.new_mean - target.new_mean, "new") > RUNAWAY_DISTANCE
    return np.asarray(edge | far_old | far_new, dtype=bool)


def _progress_bar(total: int) -> Any:
    try:
        # optional dependency (the 'progress' extra): imported only when a bar is asked for
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", desc="mixforget (numpy)")


# =====================================================================================
# One-step gradient studies
# =====================================================================================


def _one_step(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    weight_param: str,
    batch_size: Optional[int],
) -> tuple[Context, ObjectiveTwin[Any], Mix]:
    """The context, the objective's twin with its extra models equal to ``model`` (teacher
    EMA = model, then anchored; q_0 = lag = model), and the model as a :class:`Mix`."""
    ctx = Context.build(target, model, weight_param)
    twin = twin_for(objective, ctx, batch_size)
    params = Params.of_model(model, weight_param)
    twin.reset(params)
    return ctx, twin, params.mix(weight_param)


def estimate_gradient(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    batch_size: int = 64,
    batches: int = 100_000,
    rng: RngLike = 0,
    weight_param: str = "logit",
    threads: Optional[int] = None,
) -> GradientEstimates:
    """``batches`` independent finite-batch estimates ĝ of the loss gradient at ``model``
    (MATH §3–§4.3), with each batch's starved flag and old-labelled count; NumPy twin of
    :func:`mixforget.estimate_gradient`. SDFT's teacher (before anchoring), TTT-Discover's q_0
    and OAPL's lagged model equal ``model``. Vectorised over batches in chunks of ~2^20
    samples (memory bound; the result does not depend on ``threads``)."""
    check_models(target, model, "model")
    batch_size = as_positive_int("batch_size", batch_size)
    objective = check_objective(objective, batch_size)
    batches = as_positive_int("batches", batches)
    weight_param = check_weight_param(weight_param)
    resolve_threads(threads)
    ctx, twin, mix = _one_step(target, model, objective, weight_param, batch_size)
    d = ctx.dim
    seq = resolve_rng(rng)
    gen = np.random.default_rng(seq)
    avg = BatchMean(batch_size)
    grads = np.empty((batches, 1 + 2 * d))
    old_count = np.empty(batches, dtype=np.int64)
    chunk = max(1, _CHUNK_SAMPLES // (batch_size * d))
    with np.errstate(all="ignore"):
        for lo in range(0, batches, chunk):
            hi = min(batches, lo + chunk)
            x, old = draw_batch(gen, ctx, twin, hi - lo, batch_size, mix)
            grad = gradient(ctx, twin, x, avg, mix)
            grads[lo:hi, 0] = grad.weight
            grads[lo:hi, 1 : 1 + d] = grad.old_mean
            grads[lo:hi, 1 + d :] = grad.new_mean
            old_count[lo:hi] = old.sum(axis=1)
    return GradientEstimates(
        gradients=grads, starved=old_count == 0, old_count=old_count, seed=seed_record(seq)
    )


def population_gradient(
    target: TwoMode, model: TwoMode, objective: Objective, weight_param: str = "logit"
) -> dict[str, Any]:
    """Exact (G → ∞) loss gradient at ``model`` by brute-force 1-D quadrature; d = 1 only
    (NotImplementedError otherwise). NumPy twin of :func:`mixforget.population_gradient`
    (MATH §6).

    The expectation over the objective's sampling distribution (ForwardKL p_train; ReverseKL
    m = (1 − λ)q + λ p_old with weights q/m — the on-policy gradient when uncapped; SDFT q or
    the teacher t; TTT-Discover q; OAPL q_lag = q) is a trapezoid rule on ≥ 200001 points over
    [min mean − 40σ_max, max mean + 40σ_max] (spacing ≤ σ_min/20), with the G → ∞ limits of
    the batch statistics: leave-one-out baselines → full means, A = e/E_q[e] − 1 − λ(log q −
    log q_0), V̂ = β1 log E_lag[e^{r/β1}], adaptive β from KL(tilt ‖ q) = ln 2 with the tilt
    ∝ q e^{βR}. Extra models equal the model. Accuracy ~1e-12 for smooth integrands; O(h)
    (~1e-4 relative) with the discontinuous 'new_indicator' reward.
    Returns {weight: float, old_mean: (1,), new_mean: (1,)}."""
    check_models(target, model, "model")
    objective = check_objective(objective)
    weight_param = check_weight_param(weight_param)
    if target.dim != 1:
        raise NotImplementedError(
            "reference.population_gradient is brute-force 1-D quadrature: d = 1 only"
        )
    ctx, twin, mix = _one_step(target, model, objective, weight_param, None)

    centers = [
        float(v[0]) for v in (target.old_mean, target.new_mean, model.old_mean, model.new_mean)
    ]
    sds = [
        math.sqrt(float(np.reshape(c, -1)[0]))
        for c in (target.old_cov, target.new_cov, model.old_cov, model.new_cov)
    ]
    lo, hi = min(centers) - 40.0 * max(sds), max(centers) + 40.0 * max(sds)
    n = max(200_001, math.ceil(20.0 * (hi - lo) / min(sds)) | 1)
    x = np.linspace(lo, hi, n).reshape(1, n, 1)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        avg = QuadMean(twin.sampling_logpdf(x, mix)[0], (hi - lo) / (n - 1))
        grad = gradient(ctx, twin, x, avg, mix)
    return {
        "weight": float(grad.weight[0]),
        "old_mean": np.asarray(grad.old_mean[0]),
        "new_mean": np.asarray(grad.new_mean[0]),
    }
