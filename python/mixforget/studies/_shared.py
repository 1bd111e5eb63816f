"""Helpers the studies share: interval and variance statistics, the markdown and pandas
forms of a result table, axes creation, the unit direction of a problem and list checks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._defaults import Z95
from ..mixture import TwoMode

# ---------------------------------------------------------------------------------------
# small statistics helpers
# ---------------------------------------------------------------------------------------


def binomial_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Well behaved at 0 and ``trials`` successes (where the normal interval collapses)."""
    n = int(trials)
    if n < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}")
    k = int(successes)
    if not 0 <= k <= n:
        raise ValueError(f"successes must lie in [0, trials], got {successes!r}")
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def variance_with_stderr(values: Any) -> tuple[float, float]:
    """Unbiased sample variance s² of ``values`` and its standard error,
    se(s²) ≈ sqrt((m₄ − s⁴)/n) with m₄ the fourth central moment (valid for any
    distribution with a finite fourth moment; no normality assumed)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    if n < 2:
        raise ValueError("need at least two values for a variance")
    c = v - v.mean()
    s2 = float(c @ c) / (n - 1)
    m4 = float(np.mean(c**4))
    return s2, math.sqrt(max(m4 - s2 * s2, 0.0) / n)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "–"
        if v == 0.0:
            return "0"
        if abs(v) >= 1e4 or abs(v) < 1e-3:
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(value)


def _markdown(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _to_pandas(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("to_pandas() needs pandas: pip install 'mixforget[pandas]'") from exc
    return pd.DataFrame(rows)


def _axes(ax: Any) -> Any:
    """The given Axes, or a new figure's (pyplot imported lazily; any backend, Agg included)."""
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("plot() needs matplotlib: pip install 'mixforget[plot]'") from exc
    _, ax = plt.subplots(figsize=(6.0, 4.0))
    return ax


def _unit_direction(direction: Any, dim: int, cov: Any) -> tuple[np.ndarray, TwoMode]:
    """The direction scaled to unit Mahalanobis length under ``cov`` (and a probe model
    that validates cov)."""
    if direction is None:
        u = np.zeros(dim)
        u[0] = 1.0
    else:
        u = np.asarray(direction, dtype=np.float64).reshape(-1)
        if u.size != dim:
            raise ValueError(f"direction must have {dim} coordinates (dim), got {u.size}")
        if not np.all(np.isfinite(u)) or not np.any(u != 0.0):
            raise ValueError("direction must be a finite, non-zero vector")
    probe = TwoMode(np.zeros(dim), u, 0.5, cov)
    length = float(probe.mahalanobis(u, "old"))
    return u / length, probe


def _as_list(name: str, values: Any) -> list[Any]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {values!r}")
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence, got {values!r}")
    return arr.tolist()
