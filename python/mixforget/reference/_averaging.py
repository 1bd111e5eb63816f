"""Averaging operators: a finite batch, or the expectation under the sampling density.

Each objective's batch statistics (means, leave-one-out means, log-mean-exp, tilts) are
written once against an :class:`Averager`; the batch mean gives the finite-batch estimator,
the quadrature mean its exact G → ∞ limit (leave-one-out means become full expectations).
The batch mean works on any array-API namespace; the quadrature mean (1-D population
gradients) on NumPy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._backend import namespace_of

_LN2 = math.log(2.0)


class Averager:
    """Averages over axis 1 (the sample axis) of (R, N[, d]) arrays."""

    def mean(self, v: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def loo(self, v: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def log_mean_exp(self, a: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def mean_keep(self, v: Any) -> Any:
        return namespace_of(v).expand_dims(self.mean(v), axis=1)

    def tilt_stats(self, a: Any, c: Any) -> tuple[Any, Any, Any]:
        """For the tilt p ∝ e^{a} of the averaging measure: (log mean e^{a}, E_p[c],
        E_p[c²]), each (R, 1)."""
        lz = self.log_mean_exp(a)
        p = namespace_of(a).exp(a - lz)
        return lz, self.mean_keep(p * c), self.mean_keep(p * c * c)


class BatchMean(Averager):
    """Uniform average over a batch of B samples; leave-one-out means over j ≠ i (0 when
    B = 1, as the Rust engine)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def mean(self, v: Any) -> Any:
        return namespace_of(v).mean(v, axis=1)

    def loo(self, v: Any) -> Any:
        xp = namespace_of(v)
        if self.batch == 1:
            return xp.zeros_like(v)
        return (xp.sum(v, axis=1, keepdims=True) - v) / (self.batch - 1)

    def log_mean_exp(self, a: Any) -> Any:
        xp = namespace_of(a)
        m = xp.max(a, axis=1, keepdims=True)
        return m + xp.log(xp.mean(xp.exp(a - m), axis=1, keepdims=True))


class QuadMean(Averager):
    """Expectation under a density on a 1-D grid (NumPy): Σ_i w_i v_i with w ∝ density ×
    trapezoid weights (Σ w = 1). Leave-one-out means become full means (the G → ∞ limit).
    Points where the density underflows (w_i = 0) contribute 0 even where v_i is not finite
    (an importance ratio overflowing in the far tail of the sampling density)."""

    def __init__(self, log_density: np.ndarray, h: float) -> None:
        ends = np.zeros(log_density.shape[-1])
        ends[[0, -1]] = _LN2
        log_w = log_density + math.log(h) - ends
        top = log_w.max()
        self.log_w = log_w - (top + math.log(np.exp(log_w - top).sum()))
        self.w = np.exp(self.log_w)
        self.null = None if np.all(self.w > 0.0) else self.w == 0.0

    def mean(self, v: Any) -> Any:
        if self.null is not None:
            v = np.where(self.null if v.ndim == 2 else self.null[:, None], 0.0, v)
        return v @ self.w if v.ndim == 2 else np.einsum("rnd,n->rd", v, self.w)

    def loo(self, v: Any) -> Any:
        return np.broadcast_to(self.mean_keep(v), v.shape)

    def log_mean_exp(self, a: Any) -> Any:
        b = a + self.log_w
        m = b.max(axis=1, keepdims=True)
        return m + np.log(np.exp(b - m).sum(axis=1, keepdims=True))
