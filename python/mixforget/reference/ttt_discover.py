"""TTTDiscover — entropic test-time RL (MATH §4.5), NumPy twin. Group size G = batch size.

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

import numpy as np

from ..objectives import TTTDiscover
from ._averaging import Averager
from ._densities import Mix
from ._objective import ObjectiveTwin, Params, reward

_LN2 = math.log(2.0)
_BETA_MAX = 1e8  # adaptive β: the doubling search gives up beyond this (MATH §4.5)


def adaptive_beta(r: np.ndarray, avg: Averager) -> np.ndarray:
    """TTT-Discover's adaptive β (MATH §4.5), shape (R, 1): KL(p_β ‖ ω) = ln 2 for the tilt
    p_β ∝ ω e^{β r} of the averaging measure ω — softmax(β r) vs uniform_G on a batch,
    the tilt ∝ q e^{βR} vs q in the population limit. KL(β) = β E_p[c] − log E_ω[e^{βc}]
    (c = r − max r) increases with slope β Var_p(r).

    As the Rust engine: β_hi = 1, 2, 4, … until KL(β_hi) ≥ ln 2; past 1e8 (ln 2 out of reach:
    equal rewards, ties, G ≤ 2) β = 1e8. Then safeguarded Newton–bisection on [β_hi/2, β_hi]
    until |KL − ln 2| < 1e-13 or the bracket is below 1e-15 β_hi (≤ 200 iterations), vectorised
    over rows."""
    c = r - r.max(axis=1, keepdims=True)

    def kl_and_slope(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lz, m1, m2 = avg.tilt_stats(beta * c, c)
        return beta * m1 - lz, beta * np.maximum(m2 - m1 * m1, 0.0)

    rows = r.shape[0]
    lo, hi = np.zeros((rows, 1)), np.ones((rows, 1))
    gave_up = np.zeros((rows, 1), dtype=bool)
    while True:
        below = (kl_and_slope(hi)[0] < _LN2) & ~gave_up
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
        kl, slope = kl_and_slope(beta)
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


class TTTDiscoverTwin(ObjectiveTwin[TTTDiscover]):
    kind = "TTTDiscover"

    def reset(self, params: Params) -> None:
        self.start_model: Mix = params.mix(self.ctx.weight_param)

    def coefficient(self, x: np.ndarray, lq: np.ndarray, avg: Averager) -> np.ndarray:
        obj = self.objective
        r = reward(self.ctx, x, obj.reward, obj.radius)
        beta = adaptive_beta(r, avg) if obj.adaptive else float(obj.beta)
        e = np.exp(beta * (r - r.max(axis=1, keepdims=True)))
        den = avg.loo(e)
        with np.errstate(divide="ignore", invalid="ignore"):
            adv = np.where(den > 0.0, e / den - 1.0, 0.0)
        if obj.kl_penalty > 0.0:
            adv = adv - obj.kl_penalty * (lq - self.ctx.mixture_logpdf(x, self.start_model))
        return -adv
