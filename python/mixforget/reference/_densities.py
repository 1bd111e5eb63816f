"""Gaussian components and two-mode mixtures (docs: theory-model, theory-geometry): the densities
every part of the twin evaluates, written against the array API standard (any namespace: the
covariance factors are computed once on the host in float64 and moved to the run's backend). No
package imports but the backend: the lowest layer of :mod:`mixforget.reference`."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._backend import Backend, default_backend, namespace_of

_LOG_2PI = math.log(2.0 * math.pi)


class CovForm(enum.Enum):
    """The form a :class:`Gauss` covariance is stored in."""

    SCALAR = "scalar"  # σ² I: one variance
    DIAGONAL = "diagonal"  # (d,) variances
    FULL = "full"  # (d, d) SPD, by its Cholesky factor


class Gauss:
    """A covariance in one of three forms (scalar, (d,) diagonal, (d, d) SPD) with the
    operations the kernels need along the last axis: whiten L⁻¹v, colour Lz, precision Σ⁻¹v,
    squared Mahalanobis norm and the log density log φ(x; μ, Σ) (docs: theory-geometry). The factors
    live on ``backend`` (default NumPy float64)."""

    def __init__(self, cov: Any, dim: int, backend: Optional[Backend] = None) -> None:
        be = backend if backend is not None else default_backend()
        cov = np.asarray(cov, dtype=np.float64)
        self.cov = cov  # host copy: equality tests and the factorisation
        self.xp = be.xp
        self.dim = dim
        if cov.ndim == 0:
            self.form = CovForm.SCALAR
            self.var: Any = float(cov)
            self.sd: Any = math.sqrt(self.var)
            logdet = dim * math.log(self.var)
        elif cov.ndim == 1:
            self.form = CovForm.DIAGONAL
            self.var = be.asarray(cov)
            self.sd = be.asarray(np.sqrt(cov))
            logdet = float(np.sum(np.log(cov)))
        else:
            self.form = CovForm.FULL
            chol = np.linalg.cholesky(cov)
            chol_inv = np.linalg.solve(chol, np.eye(dim))
            self.chol_t = be.asarray(chol.T)
            self.chol_inv_t = be.asarray(chol_inv.T)
            self.prec_mat = be.asarray(chol_inv.T @ chol_inv)
            self.cov_mat = be.asarray(cov)
            logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))
        self.lognorm = -0.5 * (dim * _LOG_2PI + logdet)

    def same(self, other: Gauss) -> bool:
        return self.cov.shape == other.cov.shape and bool(np.array_equal(self.cov, other.cov))

    def whiten(self, v: Any) -> Any:
        return v @ self.chol_inv_t if self.form is CovForm.FULL else v / self.sd

    def color(self, z: Any) -> Any:
        return z @ self.chol_t if self.form is CovForm.FULL else z * self.sd

    def prec(self, v: Any) -> Any:
        return v @ self.prec_mat if self.form is CovForm.FULL else v / self.var

    def mahal2(self, diff: Any) -> Any:
        y = self.whiten(diff)
        return self.xp.sum(y * y, axis=-1)

    def logpdf(self, x: Any, mean: Any) -> Any:
        """log φ(x; mean, Σ) over the last axis; ``mean`` broadcasts against ``x``."""
        return self.lognorm - 0.5 * self.mahal2(x - mean)

    # -- the covariance σ²Σ with a per-replicate scale σ (trainable scales) ------------------
    # ``sd`` is None (this covariance itself) or σ with shape (R,), broadcast against the
    # leading replicate axis of x (R, N, d).

    def scaled_logpdf(self, x: Any, mean: Any, sd: Optional[Any]) -> Any:
        """log φ(x; mean, σ²Σ) = lognorm − d log σ − ½ ‖x − mean‖²_Σ / σ², shape (R, N)."""
        if sd is None:
            return self.logpdf(x, mean)
        sd = sd[:, None]
        return self.lognorm - self.dim * self.xp.log(sd) - 0.5 * self.mahal2(x - mean) / (sd * sd)

    def scaled_color(self, z: Any, sd: Optional[Any]) -> Any:
        """σ L z: standard normals z (R, B, d) coloured by σ²Σ."""
        return self.color(z) if sd is None else self.color(z) * sd[:, None, None]

    def scaled_cov_times(self, v: Any, sd: Optional[Any]) -> Any:
        """(σ²Σ) v for v (R, d): the covariance applied (a natural-gradient mean step)."""
        out = v @ self.cov_mat if self.form is CovForm.FULL else v * self.var
        return out if sd is None else out * (sd * sd)[:, None]

    def scaled_prec(self, v: Any, sd: Optional[Any]) -> Any:
        """(σ²Σ)⁻¹ v for v (R, d)."""
        return self.prec(v) if sd is None else self.prec(v) / (sd * sd)[:, None]


def unit_shape_and_scale(cov: Any, dim: int) -> tuple[np.ndarray, float]:
    """(S, σ) of a covariance Σ = σ²·S (trainable scales), in the order and meaning of
    :func:`mixforget.mixture.unit_shape_and_scale`: the unit-determinant shape S = Σ/σ² in
    Σ's own form (scalar, diagonal or full; a scalar's shape is exactly 1, which the twin's
    :class:`Gauss` keeps cheap) and σ = det(Σ)^{1/(2d)} (the standard deviation when d = 1).
    The twin keeps Σ's form, which the mixture's (d, d)-matrix version does not."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim == 0:
        return np.asarray(1.0), math.sqrt(float(cov))
    if dim == 1:
        return np.ones_like(cov), math.sqrt(float(cov.reshape(-1)[0]))
    if cov.ndim == 1:
        log_det = float(np.sum(np.log(cov)))
    else:
        log_det = float(np.linalg.slogdet(cov)[1])
    sd = math.exp(log_det / (2 * dim))
    return cov / (sd * sd), sd


@dataclass
class Mix:
    """Two-mode mixture parameters with a leading replicate axis R (R = 1 broadcasts):
    log_a = log α, log_b = log(1 − α) (R,), means mo, mn (R, d); with trainable scales the
    component scales so = σ_o, sn = σ_n (R,), the covariances being σ_k² S_k (S_k the
    context's fixed shapes), None otherwise (the fixed covariances)."""

    log_a: Any
    log_b: Any
    mo: Any
    mn: Any
    so: Any = None
    sn: Any = None

    @property
    def alpha(self) -> Any:
        return namespace_of(self.log_a).exp(self.log_a)


def _log_sigmoid(xp: Any, w: Any) -> Any:
    """log σ(w) = −log(1 + e^{−w}), stable for either sign."""
    return -xp.logaddexp(xp.zeros_like(w), -w)


def alpha_of(w: Any, weight_param: str) -> Any:
    """α from the weight parameter: σ(η) (logit) or α itself (direct) (docs: theory-model).
    σ(η) is computed as the engine does (1/(1 + e^{−|η|}) or e^{−|η|}/(1 + e^{−|η|})), so
    that α rounds to exactly 1 from the same η on (the runaway rule's edge)."""
    if weight_param != "logit":
        return w
    xp = namespace_of(w)
    e = xp.exp(-xp.abs(w))
    return xp.where(w >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def weight_param_of(alpha: float, weight_param: str) -> float:
    """The weight parameter of α: η = logit α, or α itself (direct)."""
    return math.log(alpha / (1.0 - alpha)) if weight_param == "logit" else alpha


def mix_from_param(
    w: Any, mo: Any, mn: Any, weight_param: str, so: Any = None, sn: Any = None
) -> Mix:
    """A :class:`Mix` from the weight parameter (η = logit α, or α), the means and the
    component scales σ_o, σ_n (None: fixed covariances); log σ(η) = −log(1 + e^{−η})
    stably."""
    xp = namespace_of(w)
    if weight_param == "logit":
        return Mix(_log_sigmoid(xp, w), _log_sigmoid(xp, -w), mo, mn, so, sn)
    return Mix(xp.log(w), xp.log1p(-w), mo, mn, so, sn)


def mix_logpdf(x: Any, mix: Mix, g_o: Gauss, g_n: Gauss) -> tuple[Any, Any, Any]:
    """At x (R, N, d): (log φ_o, log φ_n, log q), each (R, N), log q by log-sum-exp; the
    component covariances are g_o, g_n scaled by the mixture's σ_o², σ_n² when it has
    them."""
    xp = g_o.xp
    log_phi_old = g_o.scaled_logpdf(x, mix.mo[:, None, :], mix.so)
    log_phi_new = g_n.scaled_logpdf(x, mix.mn[:, None, :], mix.sn)
    lq = xp.logaddexp(mix.log_a[:, None] + log_phi_old, mix.log_b[:, None] + log_phi_new)
    return log_phi_old, log_phi_new, lq
