"""Overlap accuracy of two-mode models (the metrics of arXiv 2510.18874): closed forms of
∫ min(a·φ_a, b·φ_b) for weighted Gaussian components, per model or along a trajectory's
records. :meth:`mixforget.Trajectory.overlap_accuracy` computes with it and
:mod:`mixforget.theory` re-exports its public functions. Pure NumPy + :mod:`math`.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ._validate import as_cov, as_float_array, as_real, cov_matrix
from .mixture import TwoMode, unit_shape_and_scale

_SQRT2 = math.sqrt(2.0)


def _check_model(model: Any, name: str = "model") -> TwoMode:
    if not isinstance(model, TwoMode):
        raise TypeError(f"{name} must be a mixforget.TwoMode, got {type(model).__name__}")
    return model


def _cov_full(name: str, value: Any, dim: int) -> np.ndarray:
    """A covariance (scalar, (d,) diagonal or (d, d) SPD) as a validated (d, d) matrix."""
    if not isinstance(value, (str, bytes)) and value is not None and np.ndim(value) == 0:
        var = as_real(name, value.item() if isinstance(value, np.ndarray) else value)
        if var <= 0.0:
            raise ValueError(f"{name} must be > 0 (a scalar variance), got {var}")
        return var * np.eye(dim)
    return cov_matrix(as_cov(name, value, dim), dim)


# ---------------------------------------------------------------------------------------
# overlap accuracy, drop and gain (the metrics of arXiv 2510.18874)
# ---------------------------------------------------------------------------------------
# math.erfc applied elementwise: NumPy has no erfc and SciPy is not a dependency; math.erfc
# is accurate to a few ulp in both tails, which the far-apart limit (overlap → 0) needs.
_ERFC = np.frompyfunc(math.erfc, 1, 1)
#: Relative tolerance under which a model covariance counts as equal to the target's in
#: d > 1 (a covariance rebuilt from a trained scale, σ²·Σ/det(Σ)^{1/d}, is equal only up to
#: rounding).
_COV_RTOL = 1e-12


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.asarray(_ERFC(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def _gauss_interval(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """P[lo < Z < hi] for Z ~ N(0, 1), elementwise (lo ≤ hi, ±inf allowed), evaluated on the
    side of 0 where both tail masses are small so that no digits cancel."""
    right = lo >= 0.0
    left = ~right & (hi <= 0.0)
    middle = ~right & ~left
    u = np.where(right, lo, np.where(left, -hi, -lo))
    v = np.where(right, hi, -lo)
    v = np.where(middle, hi, v)
    eu, ev = _erfc(u / _SQRT2), _erfc(v / _SQRT2)
    prob = np.where(middle, 1.0 - 0.5 * (eu + ev), 0.5 * (eu - ev))
    return np.clip(prob, 0.0, 1.0)


def _overlap_equal(a: np.ndarray, b: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """∫ min(a·φ(z), b·φ(z − δ)) dz (unit variance, δ ≥ 0), a, b > 0.

    a·φ(z) < b·φ(z − δ) exactly for z > t = log(a/b)/δ + δ/2, so the integral is
    a·Φ̄(t) + b·Φ(t − δ) (two tails: accurate however far apart); δ = 0 gives min(a, b)."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        safe = np.where(delta > 0.0, delta, 1.0)
        t = np.log(a / b) / safe + 0.5 * safe
        value = 0.5 * (a * _erfc(t / _SQRT2) + b * _erfc((safe - t) / _SQRT2))
    return np.where(delta > 0.0, value, np.minimum(a, b))


def _overlap_unequal(
    w_narrow: np.ndarray,
    m_narrow: np.ndarray,
    s_narrow: np.ndarray,
    w_wide: np.ndarray,
    m_wide: np.ndarray,
    s_wide: np.ndarray,
) -> np.ndarray:
    """∫ min(w_N φ(x; m_N, s_N²), w_W φ(x; m_W, s_W²)) dx for s_N < s_W (d = 1).

    In the narrow component's coordinate z = (x − m_N)/s_N the wide one is at ρz − δ with
    ρ = s_N/s_W < 1, δ = (m_W − m_N)/s_W, and h(z) = log(w_N φ_N) − log(w_W φ_W)
    = −½(1 − ρ²) z² − ρδ z + C, C = log(w_N/w_W) − log ρ + δ²/2. h is concave: the narrow
    component is the smaller outside the roots z₁ < z₂ of h and the wide one between them,
    so the integral is w_N [Φ(z₁) + Φ̄(z₂)] + w_W P[ρz₁ − δ < Z < ρz₂ − δ]; no real root:
    the narrow component is the smaller everywhere and the integral is w_N. The roots use
    the cancellation-free form (q, c/q), so nearly equal variances (one root far out in the
    tails) stay accurate."""
    rho = s_narrow / s_wide
    k = (s_wide - s_narrow) * (s_wide + s_narrow) / (s_wide * s_wide)  # 1 − ρ², no cancellation
    delta = (m_wide - m_narrow) / s_wide
    c = np.log(w_narrow / w_wide) - np.log(rho) + 0.5 * delta * delta
    # roots of z² + 2·hp·z + q0 = 0 with hp = ρδ/k, q0 = −2C/k
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        hp = rho * delta / k
        q0 = -2.0 * c / k
        disc = hp * hp - q0
        real = disc > 0.0
        sq = np.sqrt(np.where(real, disc, 0.0))
        big = -(hp + np.where(hp >= 0.0, sq, -sq))  # the root of larger magnitude
        small = np.where(big != 0.0, q0 / np.where(big != 0.0, big, 1.0), 0.0)
        z1 = np.where(real, np.minimum(big, small), 0.0)
        z2 = np.where(real, np.maximum(big, small), 0.0)
        tails = 0.5 * (_erfc(-z1 / _SQRT2) + _erfc(z2 / _SQRT2))
        between = _gauss_interval(rho * z1 - delta, rho * z2 - delta)
    return np.where(real, w_narrow * tails + w_wide * between, w_narrow)


def gaussian_overlap(
    weight_a: Any, mean_a: Any, sd_a: Any, weight_b: Any, mean_b: Any, sd_b: Any
) -> np.ndarray:
    """Overlap of two weighted 1-D Gaussians, ∫ min(a·φ(x; m_a, s_a²), b·φ(x; m_b, s_b²)) dx,
    in closed form, elementwise over broadcast arrays.

    The two weighted log-densities differ by a quadratic in x whose roots are the crossing
    points (one crossing or none when s_a = s_b); between consecutive crossings one
    component is the smaller, and its mass there is a difference of Φ values, evaluated
    with :func:`math.erfc` on the side where no digits cancel. Far-apart components give
    ≈ 0 (to the last tail digit), identical ones give a = b.

    Parameters
    ----------
    weight_a, weight_b : array_like
        Weights a, b ≥ 0 (0 gives an overlap of 0).
    mean_a, mean_b : array_like
        Means m_a, m_b.
    sd_a, sd_b : array_like
        Standard deviations s_a, s_b > 0.

    Returns
    -------
    numpy.ndarray
        The overlap, in [0, min(a, b)], with the broadcast shape of the arguments.
    """
    a, ma, sa, b, mb, sb = np.broadcast_arrays(
        *(
            as_float_array(name, value)
            for name, value in (
                ("weight_a", weight_a),
                ("mean_a", mean_a),
                ("sd_a", sd_a),
                ("weight_b", weight_b),
                ("mean_b", mean_b),
                ("sd_b", sd_b),
            )
        )
    )
    for name, value in (("weight_a", a), ("weight_b", b)):
        if np.any(value < 0.0):
            raise ValueError(f"{name} must be >= 0")
    for name, value in (("sd_a", sa), ("sd_b", sb)):
        if np.any(value <= 0.0):
            raise ValueError(f"{name} must be > 0")
    return _overlap_1d(a, ma, sa, b, mb, sb)


def _overlap_1d(
    a: np.ndarray, ma: np.ndarray, sa: np.ndarray, b: np.ndarray, mb: np.ndarray, sb: np.ndarray
) -> np.ndarray:
    """:func:`gaussian_overlap` on validated, broadcast float arrays."""
    a, ma, sa, b, mb, sb = (np.asarray(v, dtype=np.float64) for v in (a, ma, sa, b, mb, sb))
    positive = (a > 0.0) & (b > 0.0)
    a_safe, b_safe = np.where(positive, a, 1.0), np.where(positive, b, 1.0)
    equal = sa == sb
    out = np.zeros(np.broadcast(a, ma, sa, b, mb, sb).shape)
    if np.any(equal):
        delta = np.abs(mb - ma) / sa
        out = np.where(equal, _overlap_equal(a_safe, b_safe, np.where(equal, delta, 0.0)), out)
    if not np.all(equal):
        a_narrow = sa < sb
        pick = [np.where(a_narrow, x, y) for x, y in ((a_safe, b_safe), (ma, mb), (sa, sb))]
        rest = [np.where(a_narrow, y, x) for x, y in ((a_safe, b_safe), (ma, mb), (sa, sb))]
        # equal entries get a dummy wide scale; their value is taken from the branch above
        rest[2] = np.where(equal, 2.0 * pick[2], rest[2])
        out = np.where(equal, out, _overlap_unequal(*pick, *rest))
    return np.where(positive, out, 0.0)


def _component_accuracy(
    weight_star: float,
    mean_star: np.ndarray,
    cov_star: np.ndarray,
    weight: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    scale: Optional[np.ndarray],
    which: str,
) -> np.ndarray:
    """∫ min(α*_k φ(x; μ*_k, Σ*_k), α_k φ(x; μ_k, σ_k² S_k)) dx / α*_k over records."""
    dim = mean_star.size
    if dim == 1:
        sd_star = math.sqrt(float(cov_star[0, 0]))
        sd = np.sqrt(cov[0, 0]) if scale is None else scale
        over = _overlap_1d(
            np.asarray(weight_star), mean_star[0], np.asarray(sd_star), weight, mean[..., 0], sd
        )
        return over / weight_star
    shape_star, scale_star = unit_shape_and_scale(cov_star)
    if scale is None:
        same = np.allclose(cov, cov_star, rtol=_COV_RTOL, atol=0.0)
    else:
        shape, _ = unit_shape_and_scale(cov)
        same = np.allclose(shape, shape_star, rtol=_COV_RTOL, atol=0.0) and np.allclose(
            scale, scale_star, rtol=_COV_RTOL, atol=0.0
        )
    if not same:
        raise NotImplementedError(
            f"overlap accuracy with unequal covariances of the target's and the model's {which} "
            f"component is implemented for d = 1 only (got d = {dim}); in d > 1 it is exact "
            "when the two covariances are equal"
        )
    # Same covariance Σ: the two weighted Gaussians differ only along Σ⁻¹(μ − μ*), so the
    # overlap is the 1-D one at the Mahalanobis distance between the means.
    chol = np.linalg.cholesky(cov_star)
    diff = (mean - mean_star).reshape(-1, dim)
    white = np.linalg.solve(chol, diff.T).T
    dist = np.sqrt(np.sum(white * white, axis=-1)).reshape(mean.shape[:-1])
    over = _overlap_equal(np.broadcast_to(weight_star, dist.shape), weight, dist)
    return np.where(weight > 0.0, over, 0.0) / weight_star


def overlap_accuracy_records(
    target: TwoMode,
    old_weight: Any,
    old_mean: Any,
    new_mean: Any,
    old_cov: Any,
    new_cov: Any,
    old_scale: Any = None,
    new_scale: Any = None,
) -> np.ndarray:
    """Overlap accuracies of many model states at once (vectorised
    :func:`overlap_accuracy`, e.g. over the (replicates, records) of a trajectory).

    The model state at each record is q = α φ(·; μ_o, Σ_o) + (1 − α) φ(·; μ_n, Σ_n); with
    scales, component k's covariance is σ_k²·S_k, S_k = Σ_k / det(Σ_k)^{1/d} (the given
    covariance normalised to unit determinant; in d = 1, σ_k is the standard deviation).

    Parameters
    ----------
    target : TwoMode
        The world p* = α* p*_old + (1 − α*) p*_new.
    old_weight : array_like, shape S
        α at each record, in [0, 1].
    old_mean, new_mean : array_like, shape S + (d,)
        μ_o, μ_n at each record.
    old_cov, new_cov : scalar, (d,) or (d, d)
        The model's component covariances Σ_o, Σ_n (those of the start model).
    old_scale, new_scale : array_like broadcastable to S, optional
        σ_o, σ_n at each record (trained scales); None: the covariances as given.

    Returns
    -------
    numpy.ndarray, shape S + (2,)
        [..., 0] = acc_old, [..., 1] = acc_new (see :func:`overlap_accuracy`).

    Raises
    ------
    NotImplementedError
        d > 1 and a model component's covariance differs from the target's (relative
        tolerance 1e-12) at some record.
    """
    target = _check_model(target, "target")
    dim = target.dim
    weight = as_float_array("old_weight", old_weight)
    if np.any((weight < 0.0) | (weight > 1.0)):
        raise ValueError("old_weight must lie in [0, 1]")
    means = []
    for name, value in (("old_mean", old_mean), ("new_mean", new_mean)):
        arr = as_float_array(name, value)
        if dim == 1 and arr.shape == weight.shape:
            arr = arr[..., None]  # d = 1 given without the trailing axis
        if arr.shape != (*weight.shape, dim):
            raise ValueError(
                f"{name} must have shape old_weight.shape + (d,) = {(*weight.shape, dim)}, "
                f"got {arr.shape}"
            )
        means.append(arr)
    covs = [
        _cov_full(name, value, dim) for name, value in (("old_cov", old_cov), ("new_cov", new_cov))
    ]
    scales: list[Optional[np.ndarray]] = []
    for name, value in (("old_scale", old_scale), ("new_scale", new_scale)):
        if value is None:
            scales.append(None)
            continue
        arr = as_float_array(name, value)
        if np.any(arr <= 0.0):
            raise ValueError(f"{name} must be > 0")
        try:
            scales.append(np.broadcast_to(arr, weight.shape))
        except ValueError:
            raise ValueError(
                f"{name} must broadcast to old_weight's shape {weight.shape}, got {arr.shape}"
            ) from None
    acc_old = _component_accuracy(
        target.old_weight,
        target.old_mean,
        target.cov_matrix("old"),
        weight,
        means[0],
        covs[0],
        scales[0],
        "old",
    )
    acc_new = _component_accuracy(
        1.0 - target.old_weight,
        target.new_mean,
        target.cov_matrix("new"),
        1.0 - weight,
        means[1],
        covs[1],
        scales[1],
        "new",
    )
    return np.stack([acc_old, acc_new], axis=-1)


def overlap_accuracy(target: TwoMode, model: TwoMode) -> tuple[float, float]:
    """Overlap accuracy of ``model`` on the old and the new task of ``target`` (the metric of
    arXiv 2510.18874), in closed form.

    With the weighted components of the target p* = α* p*_old + (1 − α*) p*_new and of the
    model q = α q_old + (1 − α) q_new::

        acc_old = ∫ min(α* p*_old(x), α q_old(x)) dx / α*
        acc_new = ∫ min((1 − α*) p*_new(x), (1 − α) q_new(x)) dx / (1 − α*)

    each in [0, min(1, α/α*)] (resp. (1 − α)/(1 − α*)); 1 when the model's component equals
    the target's, → 0 as they move apart. Forgetting and learning over a run are
    drop(t) = acc_old(0) − acc_old(t) and gain(t) = acc_new(t) − acc_new(0)
    (:meth:`mixforget.Trajectory.drop`, :meth:`mixforget.Trajectory.gain`).

    Exact: d = 1 (any variances) from the crossing points of the two weighted densities and
    Φ (see :func:`gaussian_overlap`); d > 1 when the model component's covariance equals
    the target's: two weighted Gaussians with the same Σ differ only along Σ⁻¹(μ − μ*), so
    the overlap is the 1-D one at the Mahalanobis distance ‖μ − μ*‖_Σ with unit variances.

    Parameters
    ----------
    target, model : TwoMode
        The world p* and the model q (same dimension).

    Returns
    -------
    (float, float)
        (acc_old, acc_new).

    Raises
    ------
    NotImplementedError
        d > 1 with a model covariance different from the target's for the same component.
    """
    target = _check_model(target, "target")
    model = _check_model(model, "model")
    if model.dim != target.dim:
        raise ValueError(
            f"target and model must have the same dimension, got {target.dim} and {model.dim}"
        )
    acc = overlap_accuracy_records(
        target,
        model.old_weight,
        model.old_mean,
        model.new_mean,
        model.cov_matrix("old"),
        model.cov_matrix("new"),
    )
    return float(acc[0]), float(acc[1])
