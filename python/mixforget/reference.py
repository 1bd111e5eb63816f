"""Pure-NumPy twins of every Rust kernel (DESIGN §3, §4), with the same signatures as
``mixforget.kernels.*``, ``mixforget.simulate``, ``mixforget.estimate_gradient`` and
``mixforget.population_gradient``.

They are the executable specification of MATH.md and the honest baseline of the benchmarks:
vectorised over replicates and over the batch (arrays of shape (R, B, d)); the only Python
loops run over training steps, mixture components, root-finding iterations or fixed-size
memory chunks — never over samples or replicates. They agree with the Rust engine *in
distribution*, not bit for bit: randomness comes from one ``np.random.Generator`` built by
``np.random.default_rng(resolve_rng(rng))`` (SPEC 7). Inputs are validated by the same
helpers as the Rust path (``kernels.mixture_args``/``as_points``/``resolve_threads``,
``_problem.check_*``), so bad input raises the same errors; ``threads`` is validated and
otherwise ignored (one Python thread, BLAS aside).

One place per concept, shared by :func:`simulate`, :func:`estimate_gradient` and
:func:`population_gradient`:

- :class:`_Gauss` — a Gaussian component: whiten, colour, precision, log density (MATH §2);
- :class:`_Mix`, :func:`_mix_logpdf` — a two-mode mixture's log weights and log densities;
- :func:`_score_mean` — the score s(x) = ∇_θ log q_θ(x) contracted with per-sample
  coefficients (MATH §3);
- :func:`_coefficient` — each objective's per-sample coefficient c_i (MATH §4), written once
  against an *averaging operator*: the batch mean (finite batches, leave-one-out means) or the
  expectation under the sampling density (population: the G → ∞ limits);
- :func:`_reward`, :func:`_adaptive_beta` — rewards, TTT-Discover's adaptive temperature;
- :func:`_draw_batch` — each objective's sampling distribution, labels kept (MATH §4.3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._problem import check_models, check_objective, check_run, check_weight_param
from ._rng import RngLike, resolve_rng, seed_record
from ._validate import as_positive_int
from .kernels import as_points, mixture_args, resolve_threads, sample_args, starvation_args
from .mixture import TwoMode
from .objectives import OAPL, SDFT, ForwardKL, Objective, ReverseKL, TTTDiscover
from .results import GradientEstimates, Trajectory
from .theory import stratified_replay_count

__all__ = [
    "estimate_gradient",
    "mixture_logpdf",
    "population_gradient",
    "replay_weights",
    "responsibilities",
    "sample_mixture",
    "simulate",
    "starvation_counts",
]

_LOG_2PI = math.log(2.0 * math.pi)
_LN2 = math.log(2.0)
_DIRECT_EPS = 1e-3  # MATH §1: the direct weight is clipped to [ε, 1 − ε]
_BETA_MAX = 1e8  # adaptive β: the doubling search gives up beyond this (MATH §4.5)
_CHUNK_SAMPLES = 1 << 20  # estimate_gradient: samples per vectorised chunk (bounds memory)


# =====================================================================================
# Gaussian components and two-mode mixtures (MATH §1–§3)
# =====================================================================================


class _Gauss:
    """A covariance in one of three forms (scalar, (d,) diagonal, (d, d) SPD) with the
    operations the kernels need along the last axis: whiten L⁻¹v, colour Lz, precision Σ⁻¹v,
    squared Mahalanobis norm and the log density log φ(x; μ, Σ) (MATH §2)."""

    def __init__(self, cov: np.ndarray, dim: int) -> None:
        cov = np.asarray(cov, dtype=np.float64)
        self.cov = cov
        if cov.ndim == 0:
            self.kind = 0
            self.var: Any = float(cov)
            self.sd: Any = math.sqrt(self.var)
            logdet = dim * math.log(self.var)
        elif cov.ndim == 1:
            self.kind = 1
            self.var = cov
            self.sd = np.sqrt(cov)
            logdet = float(np.sum(np.log(cov)))
        else:
            self.kind = 2
            self.chol = np.linalg.cholesky(cov)
            self.chol_inv = np.linalg.solve(self.chol, np.eye(dim))
            self.prec_mat = self.chol_inv.T @ self.chol_inv
            logdet = 2.0 * float(np.sum(np.log(np.diag(self.chol))))
        self.lognorm = -0.5 * (dim * _LOG_2PI + logdet)

    def same(self, other: _Gauss) -> bool:
        return self.cov.shape == other.cov.shape and bool(np.array_equal(self.cov, other.cov))

    def whiten(self, v: np.ndarray) -> np.ndarray:
        return v @ self.chol_inv.T if self.kind == 2 else v / self.sd

    def color(self, z: np.ndarray) -> np.ndarray:
        return z @ self.chol.T if self.kind == 2 else z * self.sd

    def prec(self, v: np.ndarray) -> np.ndarray:
        return v @ self.prec_mat if self.kind == 2 else v / self.var

    def mahal2(self, diff: np.ndarray) -> np.ndarray:
        y = self.whiten(diff)
        return np.einsum("...i,...i->...", y, y)

    def logpdf(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """log φ(x; mean, Σ) over the last axis; ``mean`` broadcasts against ``x``."""
        return self.lognorm - 0.5 * self.mahal2(x - mean)


@dataclass
class _Mix:
    """Two-mode mixture parameters with a leading replicate axis R (R = 1 broadcasts):
    log_a = log α, log_b = log(1 − α) (R,), means mo, mn (R, d)."""

    log_a: np.ndarray
    log_b: np.ndarray
    mo: np.ndarray
    mn: np.ndarray

    @property
    def alpha(self) -> np.ndarray:
        return np.exp(self.log_a)


def _alpha(w: np.ndarray, weight_param: str) -> np.ndarray:
    """α from the weight parameter: σ(η) (logit) or α itself (direct) (MATH §1)."""
    return np.exp(-np.logaddexp(0.0, -w)) if weight_param == "logit" else w


def _mix_from_param(w: np.ndarray, mo: np.ndarray, mn: np.ndarray, weight_param: str) -> _Mix:
    """A :class:`_Mix` from the weight parameter (η = logit α, or α) and the means;
    log σ(η) = −log(1 + e^{−η}) stably."""
    if weight_param == "logit":
        return _Mix(-np.logaddexp(0.0, -w), -np.logaddexp(0.0, w), mo, mn)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _Mix(np.log(w), np.log1p(-w), mo, mn)


def _weight_param_of(alpha: float, weight_param: str) -> float:
    return math.log(alpha / (1.0 - alpha)) if weight_param == "logit" else alpha


def _model_mix(model: TwoMode, weight_param: str) -> _Mix:
    wp = np.array([_weight_param_of(model.old_weight, weight_param)])
    return _mix_from_param(wp, model.old_mean[None, :], model.new_mean[None, :], weight_param)


def _mix_logpdf(
    x: np.ndarray, mix: _Mix, g_o: _Gauss, g_n: _Gauss
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At x (R, N, d): (log φ_o, log φ_n, log q), each (R, N), log q by log-sum-exp."""
    lpo = g_o.logpdf(x, mix.mo[:, None, :])
    lpn = g_n.logpdf(x, mix.mn[:, None, :])
    lq = np.logaddexp(mix.log_a[:, None] + lpo, mix.log_b[:, None] + lpn)
    return lpo, lpn, lq


def _score_mean(
    c: np.ndarray,
    x: np.ndarray,
    lpo: np.ndarray,
    lpn: np.ndarray,
    lq: np.ndarray,
    mix: _Mix,
    g_o: _Gauss,
    g_n: _Gauss,
    weight_param: str,
    avg: _Averager,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """avg_i[c_i s(x_i)] for the score s = ∇_θ log q_θ (MATH §3), per group:
    weight r_o − α (logit) or (φ_o − φ_n)/q (direct); old mean r_o Σ_o⁻¹(x − μ_o);
    new mean r_n Σ_n⁻¹(x − μ_n). Σ⁻¹ is applied after averaging (it is linear).
    Returns (weight (R,), old (R, d), new (R, d))."""
    ro = np.exp(mix.log_a[:, None] + lpo - lq)
    rn = np.exp(mix.log_b[:, None] + lpn - lq)
    if weight_param == "logit":
        s_w = ro - mix.alpha[:, None]
    else:
        s_w = np.exp(lpo - lq) - np.exp(lpn - lq)
    g_w = avg.mean(c * s_w)
    g_mo = g_o.prec(avg.mean((c * ro)[..., None] * (x - mix.mo[:, None, :])))
    g_mn = g_n.prec(avg.mean((c * rn)[..., None] * (x - mix.mn[:, None, :])))
    return g_w, g_mo, g_mn


# =====================================================================================
# Averaging operators: a finite batch, or the expectation under the sampling density
# =====================================================================================


class _Averager:
    """Averages over axis 1 (the sample axis) of (R, N[, d]) arrays."""

    def mean(self, v: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def loo(self, v: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def log_mean_exp(self, a: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def mean_keep(self, v: np.ndarray) -> np.ndarray:
        return np.expand_dims(self.mean(v), 1)

    def tilt_stats(self, a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the tilt p ∝ e^{a} of the averaging measure: (log mean e^{a}, E_p[c],
        E_p[c²]), each (R, 1)."""
        lz = self.log_mean_exp(a)
        p = np.exp(a - lz)
        return lz, self.mean_keep(p * c), self.mean_keep(p * c * c)


class _BatchMean(_Averager):
    """Uniform average over a batch of B samples; leave-one-out means over j ≠ i (0 when
    B = 1, as the Rust engine)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def mean(self, v: np.ndarray) -> np.ndarray:
        return v.mean(axis=1)

    def loo(self, v: np.ndarray) -> np.ndarray:
        if self.batch == 1:
            return np.zeros_like(v)
        return (v.sum(axis=1, keepdims=True) - v) / (self.batch - 1)

    def log_mean_exp(self, a: np.ndarray) -> np.ndarray:
        m = a.max(axis=1, keepdims=True)
        return m + np.log(np.mean(np.exp(a - m), axis=1, keepdims=True))


class _QuadMean(_Averager):
    """Expectation under a density on a 1-D grid: Σ_i w_i v_i with w ∝ density × trapezoid
    weights (Σ w = 1). Leave-one-out means become full means (the G → ∞ limit)."""

    def __init__(self, log_density: np.ndarray, h: float) -> None:
        log_w = log_density + math.log(h)
        log_w[0] -= _LN2
        log_w[-1] -= _LN2
        top = log_w.max()
        self.log_w = log_w - (top + math.log(np.exp(log_w - top).sum()))
        self.w = np.exp(self.log_w)

    def mean(self, v: np.ndarray) -> np.ndarray:
        return v @ self.w if v.ndim == 2 else np.einsum("rnd,n->rd", v, self.w)

    def loo(self, v: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean_keep(v), v.shape)

    def log_mean_exp(self, a: np.ndarray) -> np.ndarray:
        b = a + self.log_w
        m = b.max(axis=1, keepdims=True)
        return m + np.log(np.exp(b - m).sum(axis=1, keepdims=True))


# =====================================================================================
# The world, the extra models, rewards and per-objective coefficients (MATH §4)
# =====================================================================================


@dataclass
class _Ctx:
    """Fixed during a run: the objective, the world p* and the (fixed) model covariances."""

    objective: Objective
    weight_param: str
    dim: int
    world: _Mix  # p* = α* φ(μ_o*, Σ_o*) + (1 − α*) φ(μ_n*, Σ_n*), R = 1
    wg_o: _Gauss
    wg_n: _Gauss
    g_o: _Gauss  # model covariances Σ_o, Σ_n (from start / model)
    g_n: _Gauss

    @classmethod
    def build(
        cls, target: TwoMode, model: TwoMode, objective: Objective, weight_param: str
    ) -> _Ctx:
        d = target.dim
        return cls(
            objective=objective,
            weight_param=weight_param,
            dim=d,
            world=_mix_from_param(
                np.array([target.old_weight]),
                target.old_mean[None, :],
                target.new_mean[None, :],
                "direct",
            ),
            wg_o=_Gauss(target.old_cov, d),
            wg_n=_Gauss(target.new_cov, d),
            g_o=_Gauss(model.old_cov, d),
            g_n=_Gauss(model.new_cov, d),
        )

    def log_target(self, x: np.ndarray) -> np.ndarray:
        """log p*(x)."""
        return _mix_logpdf(x, self.world, self.wg_o, self.wg_n)[2]

    def log_old_world(self, x: np.ndarray) -> np.ndarray:
        """log p_old(x) = log φ(x; μ_o*, Σ_o*), the replay distribution."""
        return self.wg_o.logpdf(x, self.world.mo[:, None, :])

    def log_new_world(self, x: np.ndarray) -> np.ndarray:
        """log p_new(x) = log φ(x; μ_n*, Σ_n*)."""
        return self.wg_n.logpdf(x, self.world.mn[:, None, :])

    def mixture_logpdf(self, x: np.ndarray, mix: _Mix) -> np.ndarray:
        """log density of a mixture with the model covariances (teacher, q_0, lag)."""
        return _mix_logpdf(x, mix, self.g_o, self.g_n)[2]

    def teacher(self, w: np.ndarray, mo: np.ndarray, mn: np.ndarray) -> _Mix:
        """SDFT teacher t (MATH §4.4): EMA parameters φ with the new mean anchored,
        (1 − κ) μ_n^φ + κ μ_n*."""
        kappa = float(self.objective.anchor)  # type: ignore[attr-defined]
        return _mix_from_param(w, mo, (1.0 - kappa) * mn + kappa * self.world.mn, self.weight_param)


@dataclass
class _Extra:
    """The extra models of a step — SDFT teacher t, TTT-Discover start model q_0, OAPL lagged
    model — and λ', the replay fraction in ReverseKL's importance weights."""

    teacher: Optional[_Mix] = None
    q0: Optional[_Mix] = None
    lag: Optional[_Mix] = None
    lam_eff: float = 0.0


def _reward(ctx: _Ctx, x: np.ndarray, kind: str, radius: float) -> np.ndarray:
    """Built-in rewards (MATH §4.5–4.6): 'new_logpdf' log p_new(x), 'target_logpdf' log p*(x),
    'new_indicator' 1[‖x − μ_n*‖_{Σ_n*} ≤ radius] (compared as squared norms)."""
    if kind == "new_logpdf":
        return ctx.log_new_world(x)
    if kind == "target_logpdf":
        return ctx.log_target(x)
    return (ctx.wg_n.mahal2(x - ctx.world.mn[:, None, :]) <= radius * radius).astype(np.float64)


def _adaptive_beta(r: np.ndarray, avg: _Averager) -> np.ndarray:
    """TTT-Discover's adaptive β (MATH §4.5), shape (R, 1): KL(p_β ‖ ω) = ln 2 for the tilt
    p_β ∝ ω e^{β r} of the averaging measure ω — softmax(β r) vs uniform_G on a batch,
    the tilt ∝ q e^{βR} vs q in the population limit. KL(β) = β E_p[c] − log E_ω[e^{βc}]
    (c = r − max r) increases with slope β Var_p(r).

    As the Rust engine: β_hi = 1, 2, 4, … until KL(β_hi) ≥ ln 2; past 1e8 (ln 2 out of reach:
    equal rewards, ties, G ≤ 2) β = 1e8. Then safeguarded Newton–bisection on [β_hi/2, β_hi]
    until |KL − ln 2| < 1e-13 or the bracket is below 1e-15 β_hi (≤ 200 iterations), vectorised
    over rows."""
    c = r - r.max(axis=1, keepdims=True)

    def f(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lz, m1, m2 = avg.tilt_stats(beta * c, c)
        return beta * m1 - lz, beta * np.maximum(m2 - m1 * m1, 0.0)

    rows = r.shape[0]
    lo, hi = np.zeros((rows, 1)), np.ones((rows, 1))
    gave_up = np.zeros((rows, 1), dtype=bool)
    while True:
        below = (f(hi)[0] < _LN2) & ~gave_up
        if not below.any():
            break
        lo = np.where(below, hi, lo)
        hi = np.where(below, 2.0 * hi, hi)
        gave_up |= hi > _BETA_MAX
    beta = 0.5 * (lo + hi)
    done = gave_up.copy()
    for _ in range(200):
        if done.all():
            break
        kl, slope = f(beta)
        err = kl - _LN2
        done |= np.abs(err) < 1e-13
        live = ~done
        hi = np.where(live & (err > 0.0), beta, hi)
        lo = np.where(live & (err <= 0.0), beta, lo)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = beta - err / slope
        ok = (slope > 0.0) & (newton > lo) & (newton < hi)
        beta = np.where(live, np.where(ok, newton, 0.5 * (lo + hi)), beta)
        done |= hi - lo < 1e-15 * hi
    return np.where(gave_up, _BETA_MAX, beta)


def _log_ratio_coef(w: Any, ell: np.ndarray, avg: _Averager, loo: bool) -> np.ndarray:
    """Score-function coefficient of a KL(q ‖ p) loss (MATH §4.2): c_i = w_i (ℓ_i − b_i) with
    b_i = mean_{j≠i} w_j ℓ_j (leave-one-out) or 0."""
    wl = w * ell
    return wl - w * avg.loo(wl) if loo else wl


def _replay_weight(
    ctx: _Ctx, x: np.ndarray, lq: np.ndarray, lam: float, cap: Optional[float]
) -> Any:
    """w = min(q/m, cap), m = (1 − λ') q + λ' p_old (MATH §4.2); w = 1 without replay (the cap
    only applies to replay weights, as in the Rust engine)."""
    if lam <= 0.0:
        return 1.0
    with np.errstate(divide="ignore"):
        lm = np.logaddexp(np.log1p(-lam) + lq, math.log(lam) + ctx.log_old_world(x))
    w = np.exp(lq - lm)
    return w if cap is None else np.minimum(w, cap)


def _coefficient(
    ctx: _Ctx, x: np.ndarray, lq: np.ndarray, avg: _Averager, extra: _Extra
) -> np.ndarray:
    """Per-sample coefficient c_i of ĝ = avg_i[c_i s(x_i)] (MATH §4):

    - ForwardKL, SDFT forward: −1;
    - ReverseKL: w_i(ℓ_i − b_i), ℓ = log q − log p*, w the replay weight, b the LOO baseline;
    - SDFT reverse: ℓ = log q − log t, LOO baseline;
    - TTTDiscover: −A_i, A_i = e_i / mean_{j≠i} e_j − 1 − λ(log q − log q_0),
      e_i = exp(β(r_i − max r)); a zero denominator gives e_i/… − 1 := 0 (Rust's guard);
    - OAPL: 2β2(β2 Δ_i − (r_i − V̂)), V̂ = β1 log mean exp(r/β1), Δ = log q_θ − log q_lag.

    Under the population averager the leave-one-out means are full expectations."""
    obj = ctx.objective
    if isinstance(obj, ForwardKL) or (isinstance(obj, SDFT) and obj.direction == "forward"):
        return np.full_like(lq, -1.0)
    if isinstance(obj, ReverseKL):
        w = _replay_weight(ctx, x, lq, extra.lam_eff, obj.weight_cap)
        return _log_ratio_coef(w, lq - ctx.log_target(x), avg, obj.baseline == "loo")
    if isinstance(obj, SDFT):
        assert extra.teacher is not None
        return _log_ratio_coef(1.0, lq - ctx.mixture_logpdf(x, extra.teacher), avg, True)
    if isinstance(obj, TTTDiscover):
        r = _reward(ctx, x, obj.reward, obj.radius)
        beta = _adaptive_beta(r, avg) if obj.adaptive else float(obj.beta)
        e = np.exp(beta * (r - r.max(axis=1, keepdims=True)))
        den = avg.loo(e)
        with np.errstate(divide="ignore", invalid="ignore"):
            adv = np.where(den > 0.0, e / den - 1.0, 0.0)
        if obj.kl_penalty > 0.0:
            assert extra.q0 is not None
            adv = adv - obj.kl_penalty * (lq - ctx.mixture_logpdf(x, extra.q0))
        return -adv
    if isinstance(obj, OAPL):
        assert extra.lag is not None
        r = _reward(ctx, x, obj.reward, obj.radius)
        value = obj.beta1 * avg.log_mean_exp(r / obj.beta1)
        delta = lq - ctx.mixture_logpdf(x, extra.lag)
        return 2.0 * obj.beta2 * (obj.beta2 * delta - (r - value))
    raise TypeError(f"unknown objective {type(obj).__name__}")  # pragma: no cover


def _gradient(
    ctx: _Ctx, x: np.ndarray, avg: _Averager, model: _Mix, extra: _Extra
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ĝ = avg_i[c_i s(x_i)] at samples / grid points x (R, N, d): (weight (R,), old (R, d),
    new (R, d)) — the loss gradient (MATH §3–§4)."""
    lpo, lpn, lq = _mix_logpdf(x, model, ctx.g_o, ctx.g_n)
    c = _coefficient(ctx, x, lq, avg, extra)
    return _score_mean(c, x, lpo, lpn, lq, model, ctx.g_o, ctx.g_n, ctx.weight_param, avg)


# =====================================================================================
# Sampling (MATH §4: label first, then x; replay slots; starvation labels §4.3)
# =====================================================================================


def _draw_two(
    gen: np.random.Generator, mix: _Mix, g_o: _Gauss, g_n: _Gauss, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """From a two-mode mixture, given standard normals z (R, B, d): label old ~ Bernoulli(α),
    then x ~ φ_label. Returns (x (R, B, d), old (R, B) bool)."""
    old = gen.random(z.shape[:2]) < mix.alpha[:, None]
    if g_o.same(g_n):
        return g_o.color(z) + np.where(old[..., None], mix.mo[:, None, :], mix.mn[:, None, :]), old
    x = np.where(
        old[..., None], mix.mo[:, None, :] + g_o.color(z), mix.mn[:, None, :] + g_n.color(z)
    )
    return x, old


def _replay_mask(
    gen: np.random.Generator, r: int, b: int, lam: float, slots: str
) -> Optional[np.ndarray]:
    """Replay slots (MATH §4.1): each w.p. λ ('bernoulli') or the first round(λB) ('stratified')."""
    if lam <= 0.0:
        return None
    if slots == "bernoulli":
        return gen.random((r, b)) < lam
    return np.broadcast_to(np.arange(b) < int(stratified_replay_count(lam, b)), (r, b))


def _draw_batch(
    gen: np.random.Generator, ctx: _Ctx, r: int, b: int, model: _Mix, extra: _Extra
) -> tuple[np.ndarray, np.ndarray]:
    """One batch per replicate from the objective's sampling distribution (MATH §4):
    ForwardKL p_new* (+ replay from p_old*), ReverseKL q_θ (+ replay), SDFT reverse / TTT q_θ,
    SDFT forward the teacher t, OAPL q_lag. Returns x (R, B, d) and the old label (R, B):
    on-policy old draws and replay draws are old."""
    obj = ctx.objective
    z = gen.standard_normal((r, b, ctx.dim))
    if isinstance(obj, ForwardKL):
        rep = _replay_mask(gen, r, b, obj.replay, obj.replay_slots)
        x_new = ctx.world.mn[:, None, :] + ctx.wg_n.color(z)
        if rep is None:
            return x_new, np.zeros((r, b), dtype=bool)
        x_old = ctx.world.mo[:, None, :] + ctx.wg_o.color(z)
        return np.where(rep[..., None], x_old, x_new), np.array(rep)
    if isinstance(obj, ReverseKL):
        rep = _replay_mask(gen, r, b, obj.replay, obj.replay_slots)
        x, old = _draw_two(gen, model, ctx.g_o, ctx.g_n, z)
        if rep is None:
            return x, old
        x_rep = ctx.world.mo[:, None, :] + ctx.wg_o.color(z)
        return np.where(rep[..., None], x_rep, x), old | rep
    if isinstance(obj, SDFT) and obj.direction == "forward":
        assert extra.teacher is not None
        return _draw_two(gen, extra.teacher, ctx.g_o, ctx.g_n, z)
    if isinstance(obj, OAPL):
        assert extra.lag is not None
        return _draw_two(gen, extra.lag, ctx.g_o, ctx.g_n, z)
    return _draw_two(gen, model, ctx.g_o, ctx.g_n, z)


def _lam_eff(objective: Objective, batch_size: Optional[int]) -> float:
    """λ' in ReverseKL's weights: λ (bernoulli slots, population) or round(λB)/B (stratified)."""
    if not isinstance(objective, ReverseKL):
        return 0.0
    if objective.replay > 0.0 and objective.replay_slots == "stratified" and batch_size is not None:
        return int(stratified_replay_count(objective.replay, batch_size)) / batch_size
    return objective.replay


def _sampling_logpdf(ctx: _Ctx, x: np.ndarray, model: _Mix, extra: _Extra) -> np.ndarray:
    """Log density at x (R, N, d) of the distribution :func:`_draw_batch` samples from,
    with replay fraction λ (population expectations)."""
    obj = ctx.objective
    if isinstance(obj, ForwardKL):
        if obj.replay == 0.0:
            return ctx.log_new_world(x)
        lam = obj.replay
        return np.logaddexp(
            math.log1p(-lam) + ctx.log_new_world(x), math.log(lam) + ctx.log_old_world(x)
        )
    if isinstance(obj, SDFT) and obj.direction == "forward":
        assert extra.teacher is not None
        return ctx.mixture_logpdf(x, extra.teacher)
    if isinstance(obj, OAPL):
        assert extra.lag is not None
        return ctx.mixture_logpdf(x, extra.lag)
    lq = ctx.mixture_logpdf(x, model)
    if isinstance(obj, ReverseKL) and extra.lam_eff > 0.0:
        lam = extra.lam_eff
        return np.logaddexp(math.log1p(-lam) + lq, math.log(lam) + ctx.log_old_world(x))
    return lq


# =====================================================================================
# Public kernels (twins of mixforget.kernels)
# =====================================================================================


def _component_logs(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: list[np.ndarray]
) -> np.ndarray:
    """(n, K) log α_k + log φ_k(x)."""
    d = means.shape[1]
    out = np.empty((x.shape[0], weights.size))
    logw = np.log(weights)
    for k, cov in enumerate(covs):
        out[:, k] = logw[k] + _Gauss(cov, d).logpdf(x, means[k])
    return out


def responsibilities(
    x: Any, weights: Any, means: Any, covs: Any, threads: Optional[int] = None
) -> np.ndarray:
    """Posterior component probabilities r_k(x) = α_k φ_k(x) / q(x), (n, K) float64 (MATH §2).

    Any K ≥ 1 (K = 1: weights must be [1.0]); softmax of log α_k + log φ_k(x) with
    log-sum-exp, so rows sum to 1 (to ~1e-15) and stay finite far from every mean.
    ``weights`` (K,) in (0, 1) summing to 1 within 1e-9; ``means`` (K, d) (1-D: K points in
    d = 1); ``covs`` a scalar shared by all, a list of K covariances (scalar, (d,) diagonal,
    (d, d) SPD) or an array with leading axis K; ``x`` (n, d), 1-D when d = 1. float32 and
    strided inputs are converted to float64."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    resolve_threads(threads)
    logs = _component_logs(pts, w, m, c)
    logs -= logs.max(axis=1, keepdims=True)
    np.exp(logs, out=logs)
    logs /= logs.sum(axis=1, keepdims=True)
    return logs


def mixture_logpdf(
    x: Any, weights: Any, means: Any, covs: Any, threads: Optional[int] = None
) -> np.ndarray:
    """log q(x) = log Σ_k α_k φ_k(x) for each row of x, (n,) float64, log-sum-exp stable
    (MATH §2). Arguments as in :func:`responsibilities`."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    resolve_threads(threads)
    logs = _component_logs(pts, w, m, c)
    top = logs.max(axis=1)
    return top + np.log(np.exp(logs - top[:, None]).sum(axis=1))


def sample_mixture(
    n: int, weights: Any, means: Any, covs: Any, rng: RngLike = 0, threads: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """n draws from a K-component mixture: label k with probability α_k first (two modes:
    Bernoulli(α), 0 = old), then x ~ φ_k (MATH §4). Returns (x (n, d) float64, labels (n,)
    int64 component indices)."""
    n, w, m, c = sample_args(n, weights, means, covs)
    resolve_threads(threads)
    gen = np.random.default_rng(resolve_rng(rng))
    d = m.shape[1]
    labels = np.searchsorted(np.cumsum(w)[:-1], gen.random(n), side="right").astype(np.int64)
    z = gen.standard_normal((n, d))
    gauss = [_Gauss(cov, d) for cov in c]
    if all(g.same(gauss[0]) for g in gauss):
        return gauss[0].color(z) + m[labels], labels
    x = np.empty((n, d))
    for k, g in enumerate(gauss):
        sel = labels == k
        x[sel] = m[k] + g.color(z[sel])
    return x, labels


def starvation_counts(
    old_weight: float,
    batch_size: int,
    batches: int,
    replay: float = 0.0,
    slots: str = "bernoulli",
    rng: RngLike = 0,
    threads: Optional[int] = None,
) -> np.ndarray:
    """Old-labelled samples in each of ``batches`` batches, (batches,) int64 (MATH §4.3).

    bernoulli slots: Binomial(B, λ + (1 − λ)α) (replay and on-policy old draws both count);
    stratified: round(λB) + Binomial(B − round(λB), α), ties away from zero. A batch is
    starved when its count is 0."""
    alpha, b, n, lam = starvation_args(old_weight, batch_size, batches, replay, slots)
    resolve_threads(threads)
    gen = np.random.default_rng(resolve_rng(rng))
    if slots == "bernoulli":
        return gen.binomial(b, lam + (1.0 - lam) * alpha, size=n).astype(np.int64, copy=False)
    k = int(stratified_replay_count(lam, b))
    return (k + gen.binomial(b - k, alpha, size=n)).astype(np.int64, copy=False)


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
    (its later records repeat it; its starved count stops). Records at steps 0, k, …, T
    (k = ``record_every`` must divide ``steps``); ``starved`` is the cumulative count of
    batches without an old-labelled sample. Raises ValueError when the recorded output would
    exceed ``memory_limit`` bytes."""
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
    replicates, record_every, weight_param, scale, n_threads = (
        run.replicates,
        run.record_every,
        run.weight_param,
        run.lr_scale,
        run.threads,
    )
    r, d = replicates, target.dim
    n_rec = steps // record_every + 1
    ctx = _Ctx.build(target, start, objective, weight_param)
    seq = resolve_rng(rng)
    gen = np.random.default_rng(seq)

    w = np.full(r, _weight_param_of(start.old_weight, weight_param))
    mo = np.tile(start.old_mean, (r, 1))
    mn = np.tile(start.new_mean, (r, 1))
    is_sdft, is_oapl = isinstance(objective, SDFT), isinstance(objective, OAPL)
    tw, tmo, tmn = w.copy(), mo.copy(), mn.copy()  # SDFT teacher φ
    lw, lmo, lmn = w.copy(), mo.copy(), mn.copy()  # OAPL lag
    q0 = _model_mix(start, weight_param)
    lam_eff = _lam_eff(objective, batch_size)
    avg = _BatchMean(batch_size)

    rec_w = np.empty((r, n_rec))
    rec_mo = np.empty((r, n_rec, d))
    rec_mn = np.empty((r, n_rec, d))
    rec_starved = np.zeros((r, n_rec), dtype=np.int64)
    starved = np.zeros(r, dtype=np.int64)
    diverged = np.zeros(r, dtype=bool)

    def record(j: int) -> None:
        rec_w[:, j] = _alpha(w, weight_param)
        rec_mo[:, j] = mo
        rec_mn[:, j] = mn
        rec_starved[:, j] = starved

    record(0)
    bar = _progress_bar(steps) if progress else None
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            model = _mix_from_param(w, mo, mn, weight_param)
            extra = _Extra(
                teacher=ctx.teacher(tw, tmo, tmn) if is_sdft else None,
                q0=q0,
                lag=_mix_from_param(lw, lmo, lmn, weight_param) if is_oapl else None,
                lam_eff=lam_eff,
            )
            x, old = _draw_batch(gen, ctx, r, batch_size, model, extra)
            g_w, g_mo, g_mn = _gradient(ctx, x, avg, model, extra)
            w_new = w - lr * scale["weight"] * g_w
            if weight_param == "direct":
                w_new = np.clip(w_new, _DIRECT_EPS, 1.0 - _DIRECT_EPS)  # NaN stays NaN
            mo_new = mo - lr * scale["old_mean"] * g_mo
            mn_new = mn - lr * scale["new_mean"] * g_mn
            starved += ~diverged & ~old.any(axis=1)
            ok = (
                ~diverged
                & np.isfinite(w_new)
                & np.isfinite(mo_new).all(axis=1)
                & np.isfinite(mn_new).all(axis=1)
            )
            diverged |= ~ok
            w = np.where(ok, w_new, w)
            mo = np.where(ok[:, None], mo_new, mo)
            mn = np.where(ok[:, None], mn_new, mn)
            if is_sdft:
                tau = float(objective.ema)  # type: ignore[attr-defined]
                tw = np.where(ok, (1.0 - tau) * tw + tau * w, tw)
                tmo = np.where(ok[:, None], (1.0 - tau) * tmo + tau * mo, tmo)
                tmn = np.where(ok[:, None], (1.0 - tau) * tmn + tau * mn, tmn)
            if is_oapl and t % objective.lag == 0:  # type: ignore[attr-defined]
                lw, lmo, lmn = w.copy(), mo.copy(), mn.copy()
            if t % record_every == 0:
                record(t // record_every)
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
        "lr_scale": scale,
        "seed": seed_record(seq),
        "wall_time": time.perf_counter() - t0,
        "threads": n_threads,
        "implementation": "numpy",
    }
    return Trajectory(
        steps=np.arange(0, steps + 1, record_every, dtype=np.int64),
        old_weight=rec_w,
        old_mean=rec_mo,
        new_mean=rec_mn,
        starved=rec_starved,
        diverged=diverged,
        target=target,
        meta=meta,
    )


def _progress_bar(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the 'progress' extra is optional
        return None
    return tqdm(total=total, unit="step", desc="mixforget (numpy)")


# =====================================================================================
# One-step gradient studies
# =====================================================================================


def _one_step(ctx: _Ctx, model: TwoMode, batch_size: Optional[int]) -> tuple[_Mix, _Extra]:
    """The model as a :class:`_Mix` and its extra models, all equal to the model (teacher EMA =
    model, then anchored; q_0 = lag = model)."""
    mix = _model_mix(model, ctx.weight_param)
    wp = np.array([_weight_param_of(model.old_weight, ctx.weight_param)])
    teacher = ctx.teacher(wp, mix.mo, mix.mn) if isinstance(ctx.objective, SDFT) else None
    return mix, _Extra(
        teacher=teacher, q0=mix, lag=mix, lam_eff=_lam_eff(ctx.objective, batch_size)
    )


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
    ctx = _Ctx.build(target, model, objective, weight_param)
    d = ctx.dim
    seq = resolve_rng(rng)
    gen = np.random.default_rng(seq)
    mix, extra = _one_step(ctx, model, batch_size)
    avg = _BatchMean(batch_size)
    grads = np.empty((batches, 1 + 2 * d))
    old_count = np.empty(batches, dtype=np.int64)
    chunk = max(1, _CHUNK_SAMPLES // (batch_size * d))
    with np.errstate(all="ignore"):
        for lo in range(0, batches, chunk):
            hi = min(batches, lo + chunk)
            x, old = _draw_batch(gen, ctx, hi - lo, batch_size, mix, extra)
            g_w, g_mo, g_mn = _gradient(ctx, x, avg, mix, extra)
            grads[lo:hi, 0] = g_w
            grads[lo:hi, 1 : 1 + d] = g_mo
            grads[lo:hi, 1 + d :] = g_mn
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
    ctx = _Ctx.build(target, model, objective, weight_param)
    mix, extra = _one_step(ctx, model, None)

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
        avg = _QuadMean(_sampling_logpdf(ctx, x, mix, extra)[0], (hi - lo) / (n - 1))
        g_w, g_mo, g_mn = _gradient(ctx, x, avg, mix, extra)
    return {
        "weight": float(g_w[0]),
        "old_mean": np.asarray(g_mo[0]),
        "new_mean": np.asarray(g_mn[0]),
    }


def replay_weights(
    x: Any,
    model: TwoMode,
    target: TwoMode,
    replay: float,
    weight_cap: Optional[float] = None,
    threads: Optional[int] = None,
) -> np.ndarray:
    """NumPy twin of :func:`mixforget.kernels.replay_weights` (MATH §4.2):
    w = min(c, q_θ/m), m = (1−λ) q_θ + λ p_old, written as 1 / ((1−λ) + λ p_old/q_θ)."""
    check_models(target, model, "model")
    objective = ReverseKL(replay=replay, weight_cap=weight_cap)
    resolve_threads(threads)
    pts = as_points(x, model.dim)
    log_q = mixture_logpdf(
        pts,
        [model.old_weight, 1.0 - model.old_weight],
        np.stack([model.old_mean, model.new_mean]),
        [model.old_cov, model.new_cov],
    )
    cap = np.inf if objective.weight_cap is None else objective.weight_cap
    lam = objective.replay
    if lam == 0.0:
        return np.minimum(np.ones(len(pts)), cap)
    log_old = mixture_logpdf(pts, [1.0], target.old_mean[None, :], [target.old_cov])
    return np.minimum(1.0 / ((1.0 - lam) + lam * np.exp(log_old - log_q)), cap)
