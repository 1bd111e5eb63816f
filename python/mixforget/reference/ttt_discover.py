"""TTTDiscover — entropic test-time RL (docs: theory-ttt-discover), array-API twin. Group size G =
batch size.

With rewards r_i, e_i = exp(β (r_i − max r)) and the start model q_0:

    A_i = e_i / mean_{j≠i} e_j − 1 − λ (log q_θ(x_i) − log q_0(x_i)),
    ĝ = −(1/G) Σ_i A_i s(x_i),   x_i ~ q_θ.

A zero denominator gives e_i/… − 1 := 0 (the Rust engine's guard).

- Sampling source: q_θ. Second density: q_0 (only when λ = ``kl_penalty`` > 0).
- Extra state: q_0, the start model (fixed).
- β: fixed, or adaptive: KL(p_β ‖ ω) = ln 2 for the tilt p_β ∝ ω e^{βr} of the averaging
  measure ω (:func:`adaptive_beta`).
- Exact limit: the leave-one-out mean becomes E_q[e], so A = e/E_q[e] − 1 − λ(log q − log q_0),
  and the adaptive β solves KL(tilt ‖ q) = ln 2 with the tilt ∝ q e^{βR}.
"""

from __future__ import annotations

import math
from typing import Any

from ..objectives import TTTDiscover
from ._averaging import Averager
from ._backend import namespace_of, while_loop
from ._objective import Extra, ObjectiveTwin, Params, reward

_LN2 = math.log(2.0)
_BETA_MAX = 1e8  # adaptive β: the doubling search gives up beyond this (docs: theory-ttt-discover)


def adaptive_beta(r: Any, avg: Averager) -> Any:
    """TTT-Discover's adaptive β (docs: theory-ttt-discover), shape (R, 1): KL(p_β ‖ ω) = ln 2 for
    the tilt p_β ∝ ω e^{β r} of the averaging measure ω — softmax(β r) vs uniform_G on a batch,
    the tilt ∝ q e^{βR} vs q in the population limit. KL(β) = β E_p[c] − log E_ω[e^{βc}]
    (c = r − max r) increases with slope β Var_p(r).

    As the Rust engine: β_hi = 1, 2, 4, … until KL(β_hi) ≥ ln 2; past 1e8 (ln 2 out of reach:
    equal rewards, ties, G ≤ 2) β = 1e8. Then safeguarded Newton–bisection on [β_hi/2, β_hi]
    until |KL − ln 2| < 1e-13 or the bracket is below 1e-15 β_hi (≤ 200 iterations), vectorised
    over rows; the data-dependent loops run through :func:`._backend.while_loop` (a
    ``lax.while_loop`` on JAX). In float32 the tolerances become 16 ε and 4 ε (ε the machine
    epsilon), which float32 can reach; in float64 they are the Rust engine's."""
    xp = namespace_of(r)
    c = r - xp.max(r, axis=1, keepdims=True)
    eps = float(xp.finfo(r.dtype).eps)
    kl_tol, bracket_tol = max(1e-13, 16.0 * eps), max(1e-15, 4.0 * eps)

    def kl_and_slope(beta: Any) -> tuple[Any, Any]:
        lz, m1, m2 = avg.tilt_stats(beta * c, c)
        return beta * m1 - lz, beta * xp.maximum(m2 - m1 * m1, xp.zeros_like(m1))

    first = r[:, :1]
    hi0 = xp.ones_like(first)
    gave_up0 = xp.zeros_like(first, dtype=xp.bool)

    def below_of(hi: Any, gave_up: Any) -> Any:
        return (kl_and_slope(hi)[0] < _LN2) & ~gave_up

    def doubling(s: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        lo, hi, gave_up, below = s
        lo = xp.where(below, hi, lo)
        hi = xp.where(below, 2.0 * hi, hi)
        gave_up = gave_up | (hi > _BETA_MAX)
        return lo, hi, gave_up, below_of(hi, gave_up)

    lo, hi, gave_up, _ = while_loop(
        lambda s: xp.any(s[3]),
        doubling,
        (xp.zeros_like(first), hi0, gave_up0, below_of(hi0, gave_up0)),
        xp,
    )

    def newton(s: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        beta, lo, hi, done = s
        kl, slope = kl_and_slope(beta)
        err = kl - _LN2
        done = done | (xp.abs(err) < kl_tol)
        live = ~done
        hi = xp.where(live & (err > 0.0), beta, hi)
        lo = xp.where(live & (err <= 0.0), beta, lo)
        newton_step = beta - err / slope
        ok = (slope > 0.0) & (newton_step > lo) & (newton_step < hi)
        beta = xp.where(live, xp.where(ok, newton_step, 0.5 * (lo + hi)), beta)
        done = done | (hi - lo < bracket_tol * hi)
        return beta, lo, hi, done

    beta, *_ = while_loop(
        lambda s: ~xp.all(s[3]), newton, (0.5 * (lo + hi), lo, hi, gave_up), xp, max_iter=200
    )
    return xp.where(gave_up, xp.full_like(beta, _BETA_MAX), beta)


class TTTDiscoverTwin(ObjectiveTwin[TTTDiscover]):
    implements = TTTDiscover

    def reset(self, params: Params) -> Extra:
        return {"start": params.copy()}

    def coefficient(self, x: Any, lq: Any, avg: Averager, extra: Extra) -> Any:
        obj = self.objective
        xp = self.ctx.xp
        r = reward(self.ctx, x, obj.reward, obj.radius)
        beta = adaptive_beta(r, avg) if obj.adaptive else float(obj.beta)
        e = xp.exp(beta * (r - xp.max(r, axis=1, keepdims=True)))
        den = avg.loo(e)
        safe = xp.where(den > 0.0, den, xp.ones_like(den))
        adv = xp.where(den > 0.0, e / safe - 1.0, xp.zeros_like(e))
        if obj.kl_penalty > 0.0:
            start = self.ctx.mix_of(extra["start"])
            adv = adv - obj.kl_penalty * (lq - self.ctx.mixture_logpdf(x, start))
        return -adv
