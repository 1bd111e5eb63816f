"""The numerical building blocks of the closed forms: the normal cdf and tail through
:func:`math.erfc`, logistic helpers, the whole-line trapezoid rule (step from the strip of
analyticity, or halved until converged) and the one-dimensional Gaussian log-ratio."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..mixture import TwoMode

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_WEIGHT_PARAMS = ("logit", "direct")


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _norm_cdf(z: float) -> float:
    """Φ(z) = ½ erfc(−z/√2), accurate in both tails."""
    return 0.5 * math.erfc(-z / _SQRT2)


def _norm_sf(z: float) -> float:
    """1 − Φ(z) = ½ erfc(z/√2)."""
    return 0.5 * math.erfc(z / _SQRT2)


def _interval_prob(lo: float, hi: float, mean: float, sd: float) -> float:
    """P[lo < X < hi] for X ~ N(mean, sd²), without cancellation in the tails."""
    if not hi > lo:
        return 0.0
    a = (lo - mean) / sd
    b = (hi - mean) / sd
    if a >= 0.0:
        return max(_norm_sf(a) - _norm_sf(b), 0.0)
    if b <= 0.0:
        return max(_norm_cdf(b) - _norm_cdf(a), 0.0)
    return max(1.0 - _norm_cdf(a) - _norm_sf(b), 0.0)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _log_sigmoid(u: np.ndarray) -> np.ndarray:
    """log σ(u) = −log(1 + e^{−u}), stable for any u."""
    return -np.logaddexp(0.0, -u)


def _sigmoid_arr(u: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(u))


def _trapezoid_step(delta: float) -> float:
    """Trapezoid step for E_{z~N(0,1)}[g(σ(a + Δ z)) · poly(z)].

    The integrand is analytic in the strip |Im z| < π/Δ (poles of σ); the trapezoid error is
    ≲ exp(−π²/(Δ h)) from σ and ≲ exp(−2π²/h²) from the Gaussian factor. h = min(0.5, 0.25/Δ)
    makes both ≤ e^{−39} ≈ 1e-17 (relative to the integrand's scale)."""
    return min(0.5, 0.25 / delta) if delta > 0.0 else 0.5


def _line_nodes(lo: float, hi: float, h: float) -> np.ndarray:
    n = math.ceil((hi - lo) / h)
    return lo + h * np.arange(n + 1)


def _log_expect_sigmoid(a: float, delta: float) -> float:
    """log E_{z~N(0,1)}[σ(a + Δ z)], computed in log space (relative accuracy ~1e-13).

    log of the integrand, log σ(a + Δz) − z²/2, is concave with curvature ≥ 1 and peaks at
    z* = Δ σ(−a − Δz*) ∈ (0, Δ), so the range [−Δ − 13, Δ + 13] loses at most e^{−84} of the
    mass."""
    h = _trapezoid_step(delta)
    z = _line_nodes(-delta - 13.0, delta + 13.0, h)
    logf = _log_sigmoid(a + delta * z) - 0.5 * z * z - _LOG_SQRT_2PI
    m = float(logf.max())
    return m + math.log(float(np.exp(logf - m).sum()) * h)


def _trapezoid_converged(
    func: Callable[[np.ndarray], np.ndarray],
    lo: float,
    hi: float,
    h0: float = 0.25,
    rtol: float = 1e-13,
    atol: float = 1e-300,
    min_h: float = 1e-5,
) -> np.ndarray:
    """∫_lo^hi func(z) dz (func vectorised, returning (..., n) for n nodes) by trapezoid
    with step halving until two successive rules agree to rtol (relative) or atol."""
    n = math.ceil((hi - lo) / h0)
    h = (hi - lo) / n
    z = lo + h * np.arange(n + 1)
    vals = func(z)
    total = vals.sum(axis=-1) - 0.5 * (vals[..., 0] + vals[..., -1])  # sum with end weights ½
    est = total * h
    while True:
        mid = z[:-1] + 0.5 * h
        total = total + func(mid).sum(axis=-1)
        z = np.sort(np.concatenate([z, mid]))
        h *= 0.5
        new = total * h
        err = np.max(np.abs(new - est))
        scale = np.max(np.abs(new))
        if err <= max(rtol * scale, atol) or h < min_h:
            return np.asarray(new)
        est = new


def _equal_cov(model: TwoMode) -> bool:
    """Σ_o = Σ_n as matrices (whatever form each was given in)."""
    return bool(np.array_equal(model.cov_matrix("old"), model.cov_matrix("new")))


def _variances_1d(model: TwoMode) -> tuple[float, float]:
    return float(model.cov_matrix("old")[0, 0]), float(model.cov_matrix("new")[0, 0])


def _log_ratio_coeffs_1d(model: TwoMode) -> tuple[float, float, float]:
    """g(x) = logit α + log φ_o(x) − log φ_n(x) = A x² + B x + C (d = 1, unequal variances);
    r_o(x) = σ(g(x))."""
    vo, vn = _variances_1d(model)
    mo, mn = float(model.old_mean[0]), float(model.new_mean[0])
    c = _logit(model.old_weight)
    a = 0.5 * (1.0 / vn - 1.0 / vo)
    b = mo / vo - mn / vn
    cc = c - 0.5 * math.log(vo / vn) - 0.5 * mo * mo / vo + 0.5 * mn * mn / vn
    return a, b, cc
