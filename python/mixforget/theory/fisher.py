"""Local geometry at the target (docs: theory-fisher): the Fisher information of the mixture
parameters and the local rate of the linearised training flow."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .._overlap import (
    _check_model,
)
from .._validate import (
    as_choice,
    as_positive_float,
)
from ..mixture import TwoMode
from ._quadrature import (
    _LOG_SQRT_2PI,
    _WEIGHT_PARAMS,
    _equal_cov,
    _line_nodes,
    _log_ratio_coeffs_1d,
    _logit,
    _sigmoid_arr,
    _trapezoid_converged,
    _trapezoid_step,
    _variances_1d,
)


# ---------------------------------------------------------------------------------------
# docs: theory-fisher local geometry
# ---------------------------------------------------------------------------------------
def _fisher_moments_equal(alpha: float, delta: float) -> dict[str, float]:
    """1-D moments along the mean difference. t = uᵀ(y − m) in whitened coordinates, so
    ℓ = Δ t, r_o = σ(c + Δ t), t ~ N(+Δ/2, 1) under φ_o and N(−Δ/2, 1) under φ_n."""
    c = _logit(alpha)
    h = _trapezoid_step(delta)
    z = _line_nodes(-14.0, 14.0, h)
    w = h * np.exp(-0.5 * z * z - _LOG_SQRT_2PI)
    out = dict.fromkeys(("ee", "eo", "en", "aoo", "boo", "aon", "bon", "ann", "bnn"), 0.0)
    for mix, centre in ((alpha, 0.5 * delta), (1.0 - alpha, -0.5 * delta)):
        t = centre + z
        u = c + delta * t
        ro, rn = _sigmoid_arr(u), _sigmoid_arr(-u)
        so_ = t - 0.5 * delta  # (x − μ_o) along u
        sn_ = t + 0.5 * delta  # (x − μ_n) along u
        dw = ro - alpha
        terms = {
            "ee": dw * dw,
            "eo": dw * ro * so_,
            "en": dw * rn * sn_,
            "aoo": (ro * so_) ** 2,
            "boo": ro * ro,
            "aon": ro * rn * so_ * sn_,
            "bon": ro * rn,
            "ann": (rn * sn_) ** 2,
            "bnn": rn * rn,
        }
        for k, v in terms.items():
            out[k] += mix * float(np.dot(w, v))
    return out


def fisher(model: TwoMode, weight_param: str = "logit") -> np.ndarray:
    """Fisher information F = E_{x∼q}[s(x) s(x)ᵀ] of the two-mode model (docs: theory-scores,
    theory-fisher).

    Parameters ordered (weight, μ_o[0..d], μ_n[0..d]) as in the gradients; the weight is
    η = logit α (``weight_param="logit"``, score r_o − α) or α (``"direct"``, score
    (r_o − α)/(α(1−α)), so F_direct = J F_logit J with J = diag(1/(α(1−α)), I, I)).
    At the target this is the Hessian of the reverse-KL (and forward-KL) loss.

    Equal covariance, any d (exact reduction): in whitened coordinates y = L⁻¹x write
    y = m + t u + w with u the unit vector along L⁻¹(μ_o − μ_n), w ⊥ u. The responsibilities
    depend on t only (r_o = σ(c + Δt)), w ~ N(0, I − uuᵀ) independently of t under both
    components. With v = Σ⁻¹(μ_o − μ_n)/Δ and E = E_q over t (mixture of N(±Δ/2, 1)):

        F_ηη = E[(r_o − α)²],
        F_η,μo = E[(r_o − α) r_o (t − Δ/2)] v,    F_η,μn = E[(r_o − α) r_n (t + Δ/2)] v,
        F_μaμb = b_ab Σ⁻¹ + (a_ab − b_ab) v vᵀ,  a_ab = E[r_a r_b t_a t_b], b_ab = E[r_a r_b],
        t_o = t − Δ/2, t_n = t + Δ/2.

    Orthogonal to the mean difference the μ blocks are E_q[r_o²]Σ⁻¹, E_q[r_o r_n]Σ⁻¹ and
    E_q[r_n²]Σ⁻¹ — they tend to αΣ⁻¹, 0, (1−α)Σ⁻¹ only as Δ → ∞, where
    F → diag(α(1−α), αΣ⁻¹, (1−α)Σ⁻¹). The 1-D moments use a trapezoid rule (error ~1e-15).
    Unequal covariance: d = 1 by 1-D quadrature (step halving), otherwise NotImplementedError.
    """
    model = _check_model(model)
    as_choice("weight_param", weight_param, _WEIGHT_PARAMS)
    alpha = model.old_weight
    d = model.dim
    if _equal_cov(model):
        sig = model.cov_matrix("old")
        sinv = np.linalg.inv(sig)
        sinv = 0.5 * (sinv + sinv.T)
        delta_vec = model.old_mean - model.new_mean
        delta = model.separation
        v = sinv @ delta_vec / delta if delta > 0.0 else np.zeros(d)
        m = _fisher_moments_equal(alpha, delta)
        f = np.empty((1 + 2 * d, 1 + 2 * d))
        o, n = slice(1, 1 + d), slice(1 + d, 1 + 2 * d)
        vv = np.outer(v, v)
        f[0, 0] = m["ee"]
        f[0, o] = f[o, 0] = m["eo"] * v
        f[0, n] = f[n, 0] = m["en"] * v
        f[o, o] = m["boo"] * sinv + (m["aoo"] - m["boo"]) * vv
        f[n, n] = m["bnn"] * sinv + (m["ann"] - m["bnn"]) * vv
        f[o, n] = m["bon"] * sinv + (m["aon"] - m["bon"]) * vv
        f[n, o] = f[o, n].T
    else:
        if d != 1:
            raise NotImplementedError(
                f"fisher with unequal covariances is implemented for d = 1 only (got d = {d})"
            )
        f = _fisher_unequal_1d(model)
    if weight_param == "direct":
        scale = 1.0 / (alpha * (1.0 - alpha))
        f[0, :] *= scale
        f[:, 0] *= scale
    return f


def _fisher_unequal_1d(model: TwoMode) -> np.ndarray:
    alpha = model.old_weight
    vo, vn = _variances_1d(model)
    mo, mn = float(model.old_mean[0]), float(model.new_mean[0])
    a, b, c = _log_ratio_coeffs_1d(model)
    total = np.zeros((3, 3))
    for mix, mean, var in ((alpha, mo, vo), (1.0 - alpha, mn, vn)):
        sd = math.sqrt(var)

        def f(z: np.ndarray, mean: float = mean, sd: float = sd) -> np.ndarray:
            x = mean + sd * z
            g = (a * x + b) * x + c
            ro, rn = _sigmoid_arr(g), _sigmoid_arr(-g)
            s = np.stack([ro - alpha, ro * (x - mo) / vo, rn * (x - mn) / vn])
            dens = np.exp(-0.5 * z * z - _LOG_SQRT_2PI)
            return (s[:, None, :] * s[None, :, :]) * dens

        total += mix * _trapezoid_converged(f, -14.0, 14.0, rtol=1e-12)
    return total


def local_rate(
    model: TwoMode,
    lr: float,
    weight_param: str = "logit",
    lr_scale: Optional[dict[str, float]] = None,
) -> float:
    """Asymptotic per-step contraction factor of the population flow near its fixed point
    (docs: theory-fisher): 1 − lr·λ_min(F), F = :func:`fisher` of ``model`` (taken as the fixed
    point, e.g. the target for ReverseKL, where the loss Hessian equals F).

    The linearised update is e ← (I − lr·M F) e with M = diag of the per-group multipliers
    ``lr_scale`` (keys weight, old_mean, new_mean; missing keys = 1); the eigenvalues of M F
    are those of M^{1/2} F M^{1/2}. Returned: the spectral radius
    max_i ``|1 − lr·λ_i(M^{1/2} F M^{1/2})|``, which equals 1 − lr·λ_min when
    lr·(λ_min + λ_max) ≤ 2 (the usual, non-oscillating regime); a value ≥ 1 means no
    contraction (a frozen or unidentified direction gives exactly 1).
    """
    lr = as_positive_float("lr", lr)
    f = fisher(model, weight_param)
    d = model.dim
    scale = {"weight": 1.0, "old_mean": 1.0, "new_mean": 1.0}
    if lr_scale is not None:
        if not isinstance(lr_scale, dict):
            raise TypeError(
                f"lr_scale must be a dict with keys weight, old_mean, new_mean, got {lr_scale!r}"
            )
        unknown = set(lr_scale) - set(scale)
        if unknown:
            raise ValueError(
                f"lr_scale has unknown key(s) {sorted(unknown)}; allowed: {sorted(scale)}"
            )
        for k, val in lr_scale.items():
            scale[k] = as_positive_float(f"lr_scale[{k!r}]", val, allow_zero=True)
    msqrt = np.sqrt(
        np.concatenate(
            [[scale["weight"]], np.full(d, scale["old_mean"]), np.full(d, scale["new_mean"])]
        )
    )
    sym = msqrt[:, None] * f * msqrt[None, :]
    eig = np.linalg.eigvalsh(0.5 * (sym + sym.T))
    return float(np.max(np.abs(1.0 - lr * eig)))
