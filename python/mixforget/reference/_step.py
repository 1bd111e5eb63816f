"""One training step of the twin for all replicates at once, written once against the array API
(docs: theory-scores, theory-training-loop): draw a batch, form the score-function estimate
ĝ = avg_i[c_i s(x_i)], update θ ← θ − lr·m⊙ĝ (or the natural step θ ← θ − lr·m⊙F⁻¹ĝ), count
starved batches and freeze diverged or runaway replicates. What differs between objectives
is asked of the objective's :class:`~._objective.ObjectiveTwin`; the steppers of
:mod:`._engine` drive this step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from ..results import RUNAWAY_DISTANCE, RUNAWAY_SCALE, RUNAWAY_WEIGHT
from ._averaging import Averager, BatchMean
from ._backend import namespace_of
from ._densities import Mix, mix_logpdf
from ._objective import Context, Extra, ModelDensities, ObjectiveTwin, Params

_DIRECT_EPS = 1e-3  # docs: theory-model: the direct weight is clipped to [ε, 1 − ε]
_SCALE_FLOOR = 1e-3  # a direct scale σ is floored at 1e-3 after each step (2510.18874's code)


def score_mean(
    c: Any,
    x: Any,
    log_phi_old: Any,
    log_phi_new: Any,
    lq: Any,
    mix: Mix,
    ctx: Context,
    avg: Averager,
) -> Params:
    """avg_i[c_i s(x_i)] for the score s = ∇_θ log q_θ (docs: theory-scores), per group:
    weight r_o − α (logit) or (φ_o − φ_n)/q (direct); old mean r_o Σ_o⁻¹(x − μ_o);
    new mean r_n Σ_n⁻¹(x − μ_n). Σ⁻¹ is applied after averaging (it is linear).
    With trainable scales (Σ_k = σ_k² S_k) also σ_o: r_o (M_o − d)/σ_o and σ_n:
    r_n (M_n − d)/σ_n, M_k = ‖x − μ_k‖²_{S_k}/σ_k² (∂/∂σ log φ(x; μ, σ²S)); for u = log σ
    the same times σ. Returns weight (R,), old_mean (R, d), new_mean (R, d) and, when the
    scales train, old_scale, new_scale (R,)."""
    xp = ctx.xp
    ro = xp.exp(mix.log_a[:, None] + log_phi_old - lq)
    rn = xp.exp(mix.log_b[:, None] + log_phi_new - lq)
    if ctx.weight_param == "logit":
        s_w = ro - mix.alpha[:, None]
    else:
        s_w = xp.exp(log_phi_old - lq) - xp.exp(log_phi_new - lq)
    cro, crn = c * ro, c * rn
    diff_o, diff_n = x - mix.mo[:, None, :], x - mix.mn[:, None, :]
    grad = Params(
        weight=avg.mean(c * s_w),
        old_mean=ctx.g_o.scaled_prec(avg.mean(cro[:, :, None] * diff_o), mix.so),
        new_mean=ctx.g_n.scaled_prec(avg.mean(crn[:, :, None] * diff_n), mix.sn),
    )
    if ctx.trains_scales:
        grad.old_scale = _scale_score_mean(ctx, ctx.g_o, cro, diff_o, mix.so, avg)
        grad.new_scale = _scale_score_mean(ctx, ctx.g_n, crn, diff_n, mix.sn, avg)
    return grad


def _scale_score_mean(
    ctx: Context, shape: Any, coef: Any, diff: Any, sd: Any, avg: Averager
) -> Any:
    """avg_i[c_i r_i (M_i − d)]/σ (σ direct) or avg_i[c_i r_i (M_i − d)] (log σ), with
    M_i = ‖x_i − μ‖²_S/σ² and coef = c·r (R, N)."""
    m = shape.mahal2(diff) / (sd * sd)[:, None]
    g = avg.mean(coef * (m - float(ctx.dim)))
    return g / sd if ctx.scale_param == "direct" else g


def gradient(
    ctx: Context, twin: ObjectiveTwin[Any], x: Any, avg: Averager, model: Mix, extra: Extra
) -> Params:
    """ĝ = avg_i[c_i s(x_i)] at samples / grid points x (R, N, d) — the loss gradient
    (docs: theory-scores, theory-estimators)."""
    log_phi_old, log_phi_new, lq = mix_logpdf(x, model, ctx.g_o, ctx.g_n)
    c = twin.model_coefficient(x, ModelDensities(model, log_phi_old, log_phi_new, lq), avg, extra)
    return score_mean(c, x, log_phi_old, log_phi_new, lq, model, ctx, avg)


def draw_batch(
    rng: Any,
    state: Any,
    ctx: Context,
    twin: ObjectiveTwin[Any],
    r: int,
    b: int,
    model: Mix,
    extra: Extra,
) -> tuple[Any, Any, Any]:
    """One batch per replicate from the objective's sampling distribution: the standard
    normals z (R, B, d) first, then whatever the objective draws (replay slots, labels).
    Returns (random state, x (R, B, d), old label (R, B))."""
    state, z = rng.normal(state, (r, b, ctx.dim))
    return twin.draw(rng, state, z, model, extra)


def natural_gradient(ctx: Context, model: Mix, grad: Params) -> Params:
    """F⁻¹ĝ with F the complete-data Fisher of the model (docs: theory-natural-gradient),
    block-diagonal and exact per component, w = (α, 1 − α): the weight entry divided by
    α(1−α) (logit η) or multiplied by it (direct α); the mean of component k Σ_k ĝ_k / w_k
    (Σ_k its current covariance σ_k²S_k); a trained scale divided by 2d·w_k/σ_k² (direct σ)
    or 2d·w_k (log σ)."""
    alpha = model.alpha
    w_old, w_new = alpha, ctx.xp.exp(model.log_b)
    bernoulli = alpha * (1.0 - alpha)
    weight = grad.weight / bernoulli if ctx.weight_param == "logit" else grad.weight * bernoulli
    out = Params(
        weight=weight,
        old_mean=ctx.g_o.scaled_cov_times(grad.old_mean, model.so) / w_old[:, None],
        new_mean=ctx.g_n.scaled_cov_times(grad.new_mean, model.sn) / w_new[:, None],
    )
    if ctx.trains_scales:
        two_d = 2.0 * ctx.dim
        for name, w, sd in (("old_scale", w_old, model.so), ("new_scale", w_new, model.sn)):
            fisher = two_d * w / (sd * sd) if ctx.scale_param == "direct" else two_d * w
            setattr(out, name, getattr(grad, name) / fisher)
    return out


def sgd_step(
    params: Params,
    grad: Params,
    lr: float,
    scale: Mapping[str, float],
    weight_param: str,
    scale_param: Optional[str] = None,
) -> Params:
    """θ ← θ − lr·m⊙ĝ per group (m = ``lr_scale``); the direct weight is then clipped to
    [1e-3, 1 − 1e-3] (NaN stays NaN), and direct scales σ are floored at 1e-3 (as the Rust
    engine's ``max``, a NaN σ becomes the floor)."""
    new = Params(
        **{name: v - lr * scale[name] * getattr(grad, name) for name, v in params.groups().items()}
    )
    if weight_param == "direct":
        new.weight = _clip_keep_nan(new.weight, _DIRECT_EPS, 1.0 - _DIRECT_EPS)
    if scale_param == "direct" and new.old_scale is not None:
        new.old_scale = _floor(new.old_scale, _SCALE_FLOOR)
        new.new_scale = _floor(new.new_scale, _SCALE_FLOOR)
    return new


def _floor(v: Any, lo: float) -> Any:
    """max(v, lo) as Rust's f64::max: a NaN gives ``lo``."""
    xp = namespace_of(v)
    return xp.where(v > lo, v, xp.full_like(v, lo))


def _clip_keep_nan(v: Any, lo: float, hi: float) -> Any:
    """clip(v, lo, hi) with NaN kept NaN (as NumPy and Rust), spelled with where so that
    every namespace agrees."""
    xp = namespace_of(v)
    return xp.where(v < lo, xp.full_like(v, lo), xp.where(v > hi, xp.full_like(v, hi), v))


class TrainingStep:
    """One training step (docs: theory-training-loop) for all replicates at once, written once
    against the array API: a pure function of the carry (params, extra state, starved counts,
    diverged flags, random state) and the 1-based step number, so that JAX can jit and scan it."""

    def __init__(
        self,
        ctx: Context,
        twin: ObjectiveTwin[Any],
        rng: Any,
        r: int,
        batch_size: int,
        lr: float,
        scale: Mapping[str, float],
        update: str = "sgd",
    ) -> None:
        self.ctx, self.twin, self.rng = ctx, twin, rng
        self.r, self.batch_size, self.lr, self.scale = r, batch_size, lr, scale
        self.natural = update == "natural"
        self.avg = BatchMean(batch_size)

    def __call__(self, carry: tuple[Any, ...], t: Any) -> tuple[Any, ...]:
        params, extra, starved, diverged, state = carry
        ctx, xp, wp = self.ctx, self.ctx.xp, self.ctx.weight_param
        model = ctx.mix_of(params)
        state, x, old = draw_batch(
            self.rng, state, ctx, self.twin, self.r, self.batch_size, model, extra
        )
        grad = gradient(ctx, self.twin, x, self.avg, model, extra)
        if self.natural:
            grad = natural_gradient(ctx, model, grad)
        new = sgd_step(params, grad, self.lr, self.scale, wp, ctx.scale_param)
        fed = xp.any(old, axis=1)
        starved = starved + xp.astype(~diverged & ~fed, starved.dtype)
        ok = ~diverged & new.finite()
        # runaway: frozen where it crossed the bound, extra state not advanced (as in Rust)
        runaway = ok & beyond_runaway(ctx, new)
        diverged = diverged | ~ok | runaway
        params = new.where(ok, params)
        extra = self.twin.advance(t, params, ok & ~runaway, extra)
        return params, extra, starved, diverged, state


def _sigmoid64(eta: float) -> float:
    """σ(η) in float64 as the engine computes it (rust/model/mixture.rs ``sigmoid``)."""
    e = math.exp(-abs(eta))
    return 1.0 / (1.0 + e) if eta >= 0 else e / (1.0 + e)


def _eta_edge(beyond: Any, inside: float, outside: float) -> float:
    """The float64 η nearest ``inside`` at which ``beyond(σ(η))`` holds, by bisection."""
    while True:
        mid = 0.5 * (inside + outside)
        if mid in (inside, outside):
            return outside
        if beyond(_sigmoid64(mid)):
            outside = mid
        else:
            inside = mid


#: (η_low, η_high): the logit weights at which α in float64 comes within RUNAWAY_WEIGHT of 0
#: (η ≈ −690.8) or rounds to 1 (η ≈ 36.7), the edges of the engine's rule on α.
_ETA_EDGES = (
    _eta_edge(lambda a: a <= RUNAWAY_WEIGHT, 0.0, -1000.0),
    _eta_edge(lambda a: 1.0 - a <= RUNAWAY_WEIGHT, 0.0, 1000.0),
)


def beyond_runaway(ctx: Context, params: Params) -> Any:
    """(R,) replicates beyond the engine's runaway bound (``Problem::runaway`` in Rust), one
    rule over every trained parameter: a mean beyond RUNAWAY_DISTANCE Mahalanobis units of the
    target's mean of its mode; the old weight α as recorded (float64) within RUNAWAY_WEIGHT of
    0 or 1 (so α = 1.0 is flagged); a trained σ_k more than RUNAWAY_SCALE times above or below
    the target's scale of its mode, decided on log σ (no overflow)."""
    xp, w = ctx.xp, params.weight
    if ctx.weight_param == "logit":
        # the η at which α computed in float64 crosses the rule, whatever the precision
        out = (w <= _ETA_EDGES[0]) | (w >= _ETA_EDGES[1])
    else:
        out = (w <= RUNAWAY_WEIGHT) | (1.0 - w <= RUNAWAY_WEIGHT)
    bound = RUNAWAY_DISTANCE * RUNAWAY_DISTANCE
    out = out | (ctx.world_old_cov.mahal2(params.old_mean - ctx.world.mo) > bound)
    out = out | (ctx.world_new_cov.mahal2(params.new_mean - ctx.world.mn) > bound)
    if ctx.trains_scales:
        log_bound = math.log(RUNAWAY_SCALE)
        with np.errstate(divide="ignore", invalid="ignore"):
            for value, log_star in zip((params.old_scale, params.new_scale), ctx.world_log_scale):
                log_sd = xp.log(value) if ctx.scale_param == "direct" else value
                # NaN (σ ≤ 0) counts as beyond the bound as well
                out = out | ~(xp.abs(log_sd - log_star) <= log_bound)
    return out
