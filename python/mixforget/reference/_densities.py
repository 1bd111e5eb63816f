"""Gaussian components and two-mode mixtures (MATH §1–§2): the densities every part of the
twin evaluates. No package imports: the lowest layer of :mod:`mixforget.reference`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


class Gauss:
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

    def same(self, other: Gauss) -> bool:
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
class Mix:
    """Two-mode mixture parameters with a leading replicate axis R (R = 1 broadcasts):
    log_a = log α, log_b = log(1 − α) (R,), means mo, mn (R, d)."""

    log_a: np.ndarray
    log_b: np.ndarray
    mo: np.ndarray
    mn: np.ndarray

    @property
    def alpha(self) -> np.ndarray:
        return np.exp(self.log_a)


def alpha_of(w: np.ndarray, weight_param: str) -> np.ndarray:
    """α from the weight parameter: σ(η) (logit) or α itself (direct) (MATH §1)."""
    return np.exp(-np.logaddexp(0.0, -w)) if weight_param == "logit" else w


def weight_param_of(alpha: float, weight_param: str) -> float:
    """The weight parameter of α: η = logit α, or α itself (direct)."""
    return math.log(alpha / (1.0 - alpha)) if weight_param == "logit" else alpha


def mix_from_param(w: np.ndarray, mo: np.ndarray, mn: np.ndarray, weight_param: str) -> Mix:
    """A :class:`Mix` from the weight parameter (η = logit α, or α) and the means;
    log σ(η) = −log(1 + e^{−η}) stably."""
    if weight_param == "logit":
        return Mix(-np.logaddexp(0.0, -w), -np.logaddexp(0.0, w), mo, mn)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Mix(np.log(w), np.log1p(-w), mo, mn)


def mix_logpdf(
    x: np.ndarray, mix: Mix, g_o: Gauss, g_n: Gauss
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At x (R, N, d): (log φ_o, log φ_n, log q), each (R, N), log q by log-sum-exp."""
    lpo = g_o.logpdf(x, mix.mo[:, None, :])
    lpn = g_n.logpdf(x, mix.mn[:, None, :])
    lq = np.logaddexp(mix.log_a[:, None] + lpo, mix.log_b[:, None] + lpn)
    return lpo, lpn, lq
