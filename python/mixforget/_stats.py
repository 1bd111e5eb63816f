"""Small statistics shared by the result types, the studies and the figures (imports only
:mod:`mixforget._defaults`)."""

from __future__ import annotations

import numpy as np

from ._defaults import Z95

__all__ = ["mean_interval"]


def mean_interval(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and normal-approximation 95% interval (mean ± 1.96 s/√n) along ``axis``."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = Z95 * values.std(axis=axis, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half
