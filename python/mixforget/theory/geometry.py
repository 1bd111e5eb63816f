"""Geometry of the two modes (docs: theory-geometry): the Bhattacharyya coefficient and the
misassignment rates of the posterior classifier, hard and soft."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from .._overlap import (
    _check_model,
    _cov_full,
)
from .._validate import (
    as_choice,
    as_float_array,
)
from ..mixture import TwoMode, log_bhattacharyya
from ._quadrature import (
    _LOG_SQRT_2PI,
    _equal_cov,
    _interval_prob,
    _log_expect_sigmoid,
    _log_ratio_coeffs_1d,
    _log_sigmoid,
    _logit,
    _norm_cdf,
    _trapezoid_converged,
    _variances_1d,
)


# ---------------------------------------------------------------------------------------
# docs: theory-geometry geometry
# ---------------------------------------------------------------------------------------
def bhattacharyya(mean_a: Any, mean_b: Any = None, cov_a: Any = 1.0, cov_b: Any = None) -> float:
    """Bhattacharyya coefficient BC = ∫ sqrt(φ_a φ_b) = exp(−D_B) (docs: theory-geometry).

    D_B = ⅛ δᵀ Σ̄⁻¹ δ + ½ ln(det Σ̄ / sqrt(det Σ_a det Σ_b)), δ = μ_a − μ_b,
    Σ̄ = (Σ_a + Σ_b)/2. With ``cov_b=None`` the covariances are equal (Σ_b = Σ_a) and
    BC = exp(−Δ²/8), Δ = ‖μ_a − μ_b‖_Σ (e.g. BC(Δ=4) = e^{−2} = 0.1353353).

    Call forms: ``bhattacharyya(mean_a, mean_b, cov_a=1.0, cov_b=None)`` with means of
    shape (d,) (scalars for d = 1) and covariances scalar, (d,) diagonal or (d, d) SPD; or
    ``bhattacharyya(model)`` with a :class:`~mixforget.TwoMode` (its two components).
    """
    if isinstance(mean_a, TwoMode):
        if (
            mean_b is not None
            or cov_b is not None
            or not (isinstance(cov_a, float) and cov_a == 1.0)
        ):
            raise TypeError("bhattacharyya(model) takes no further arguments")
        return mean_a.bhattacharyya
    if mean_b is None:
        raise TypeError("bhattacharyya needs two means (mean_a, mean_b) or one TwoMode")
    ma = as_float_array("mean_a", mean_a, ndim=(0, 1)).reshape(-1)
    mb = as_float_array("mean_b", mean_b, ndim=(0, 1)).reshape(-1)
    if ma.size == 0:
        raise ValueError("mean_a must have at least one coordinate")
    if ma.shape != mb.shape:
        raise ValueError(
            f"mean_a and mean_b must have the same dimension, got {ma.shape} and {mb.shape}"
        )
    d = ma.size
    sa = _cov_full("cov_a", cov_a, d)
    sb = sa if cov_b is None else _cov_full("cov_b", cov_b, d)
    return float(math.exp(log_bhattacharyya(ma - mb, sa, sb)))


def misassignment(model: TwoMode, kind: str = "hard") -> dict[str, float]:
    """Misassignment rates of the model's own responsibilities (docs: theory-geometry, check values
    docs: theory-check-values).

    With c = logit α, Δ = ‖μ_o − μ_n‖_Σ and ℓ(x) = (μ_o−μ_n)ᵀΣ⁻¹(x − (μ_o+μ_n)/2), so that
    r_o(x) = σ(c + ℓ(x)) and ℓ ~ N(+Δ²/2, Δ²) under φ_o, N(−Δ²/2, Δ²) under φ_n:

    ``kind="hard"`` (Bayes rule of the model):
        new_to_old = P_{x∼φ_n}[r_o(x) > ½] = Φ(c/Δ − Δ/2),
        old_to_new = P_{x∼φ_o}[r_o(x) < ½] = Φ(−c/Δ − Δ/2);
        the bounds returned are the Chernoff bounds P_{φ_n}[r_o > ½] ≤ sqrt(α/(1−α))·BC and
        P_{φ_o}[r_o < ½] ≤ sqrt((1−α)/α)·BC (twice the soft bounds).
    ``kind="soft"``:
        new_to_old = ε_{n→o} = E_{x∼φ_n}[r_o(x)] = E_{z∼N(0,1)}[σ(c − Δ²/2 + Δz)],
        old_to_new = ε_{o→n} = E_{x∼φ_o}[r_n(x)] = E_{z∼N(0,1)}[σ(−c − Δ²/2 + Δz)],
        1-D integrals evaluated by a trapezoid rule in log space (relative error ~1e-13 at
        any Δ); bounds new_to_old_bound = ½ sqrt(α/(1−α))·BC, old_to_new_bound =
        ½ sqrt((1−α)/α)·BC (from a/(a+b) ≤ ½ sqrt(a/b)). Symmetry:
        α·ε_{o→n} = (1−α)·ε_{n→o}.

    Δ = 0 (coinciding means): hard rates follow the strict inequalities (r_o ≡ α: new_to_old
    = 1[α > ½], old_to_new = 1[α < ½]); soft rates are α and 1 − α.

    Unequal covariances (d = 1 only): r_o = σ(g(x)) with g quadratic. Hard rates are exact
    Gaussian probabilities of the set {g > 0} (roots of the quadratic, Φ via erfc); soft
    rates are 1-D integrals by trapezoid with step halving (converged to 1e-13 relative).
    The bounds use the general BC of docs: theory-geometry (the inequalities hold for any
    covariances). d > 1 with unequal covariances raises NotImplementedError.

    Returns a dict with float values: new_to_old, old_to_new, new_to_old_bound,
    old_to_new_bound.
    """
    model = _check_model(model)
    as_choice("kind", kind, ("hard", "soft"))
    alpha = model.old_weight
    c = _logit(alpha)
    bc = model.bhattacharyya
    odds = math.sqrt(alpha / (1.0 - alpha))
    factor = 1.0 if kind == "hard" else 0.5
    out = {
        "new_to_old_bound": factor * odds * bc,
        "old_to_new_bound": factor * bc / odds,
    }
    if _equal_cov(model):
        delta = model.separation
        if kind == "hard":
            if delta == 0.0:
                n2o, o2n = float(alpha > 0.5), float(alpha < 0.5)
            else:
                n2o = _norm_cdf(c / delta - 0.5 * delta)
                o2n = _norm_cdf(-c / delta - 0.5 * delta)
        else:
            half = 0.5 * delta * delta
            n2o = math.exp(_log_expect_sigmoid(c - half, delta))
            o2n = math.exp(_log_expect_sigmoid(-c - half, delta))
    else:
        if model.dim != 1:
            raise NotImplementedError(
                "misassignment with unequal covariances is implemented for d = 1 only "
                f"(got d = {model.dim})"
            )
        n2o, o2n = _misassignment_unequal_1d(model, kind)
    out["new_to_old"] = float(n2o)
    out["old_to_new"] = float(o2n)
    return {k: out[k] for k in ("new_to_old", "old_to_new", "new_to_old_bound", "old_to_new_bound")}


def _misassignment_unequal_1d(model: TwoMode, kind: str) -> tuple[float, float]:
    vo, vn = _variances_1d(model)
    so, sn = math.sqrt(vo), math.sqrt(vn)
    mo, mn = float(model.old_mean[0]), float(model.new_mean[0])
    a, b, c = _log_ratio_coeffs_1d(model)
    if kind == "hard":
        # S = {g > 0}; A ≠ 0 here (unequal variances).
        disc = b * b - 4.0 * a * c
        if disc <= 0.0:
            roots: Optional[tuple[float, float]] = None
        else:
            q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
            r1 = q / a
            r2 = c / q if q != 0.0 else -r1
            roots = (min(r1, r2), max(r1, r2))
        inf = math.inf
        if a > 0.0:  # g → +∞ at both ends: S = R \ [r1, r2]
            if roots is None:
                s_set, comp = [(-inf, inf)], []
            else:
                s_set, comp = [(-inf, roots[0]), (roots[1], inf)], [roots]
        else:  # g → −∞ at both ends: S = (r1, r2)
            if roots is None:
                s_set, comp = [], [(-inf, inf)]
            else:
                s_set, comp = [roots], [(-inf, roots[0]), (roots[1], inf)]
        n2o = sum(_interval_prob(lo, hi, mn, sn) for lo, hi in s_set)
        o2n = sum(_interval_prob(lo, hi, mo, so) for lo, hi in comp)
        return n2o, o2n

    def integrand(mean: float, sd: float, sign: float) -> Callable[[np.ndarray], np.ndarray]:
        def f(z: np.ndarray) -> np.ndarray:
            x = mean + sd * z
            g = (a * x + b) * x + c
            return np.exp(_log_sigmoid(sign * g) - 0.5 * z * z - _LOG_SQRT_2PI)

        return f

    n2o = float(_trapezoid_converged(integrand(mn, sn, 1.0), -14.0, 14.0))
    o2n = float(_trapezoid_converged(integrand(mo, so, -1.0), -14.0, 14.0))
    return n2o, o2n
