"""The figure of one trajectory (:meth:`mixforget.Trajectory.plot`: mean old weight with its
95 % band, drift on a twin axis) and the pieces every figure shares: axes creation, the
kept replicates, axis labels and the matplotlib requirement (the optional extra 'plot',
imported lazily). :mod:`mixforget.plot` builds its figures from them and re-exports
:func:`plot_trajectory` and :func:`require_matplotlib`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Protocol

import numpy as np

from ._stats import mean_interval

__all__ = [
    "BAND_ALPHA",
    "band",
    "ensure_axes",
    "float_column",
    "kept_replicates",
    "plot_trajectory",
    "require_matplotlib",
    "table_columns",
]


class TrajectoryLike(Protocol):
    """What the trajectory figures read of a :class:`mixforget.Trajectory`."""

    @property
    def steps(self) -> np.ndarray: ...
    @property
    def old_weight(self) -> np.ndarray: ...
    @property
    def drift(self) -> np.ndarray: ...
    @property
    def diverged(self) -> np.ndarray: ...
    @property
    def meta(self) -> dict[str, Any]: ...


BAND_ALPHA = 0.25


#: mathtext labels (matplotlib renders $...$; no literal underscores in the figures)
WEIGHT_LABEL = r"old weight $\alpha_t$"
DRIFT_LABEL = r"drift $D_t = \Vert\mu_o(t) - \mu_o^*\Vert_\Sigma$"


def table_columns(table: Any) -> dict[str, np.ndarray]:
    """Column arrays of a DataFrame, a dict of columns or a list of row dicts (the tables
    the figures of :mod:`mixforget.plot` read)."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas DataFrame
        return {str(c): np.asarray(table[c].to_numpy()) for c in table.columns}
    if isinstance(table, Mapping):
        return {str(k): np.asarray(v) for k, v in table.items()}
    rows = list(table)
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    return {k: np.asarray([row.get(k) for row in rows]) for k in keys}


def float_column(cols: Mapping[str, np.ndarray], name: str) -> Optional[np.ndarray]:
    """Column ``name`` as floats (None for missing entries -> NaN); None when absent or all
    NaN."""
    if name not in cols:
        return None
    values = np.array([np.nan if v is None else float(v) for v in cols[name]], dtype=np.float64)
    return None if np.all(np.isnan(values)) else values


def require_matplotlib() -> Any:
    """Import and return matplotlib, or raise ImportError naming the extra 'plot'."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "mixforget plotting needs matplotlib, the optional extra 'plot': pip install "
            "'mixforget[plot]'"
        ) from exc
    return matplotlib


def ensure_axes(ax: Any) -> Any:
    """``ax``, or the axes of a new pyplot figure when it is None."""
    if ax is not None:
        return ax
    require_matplotlib()
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def kept_replicates(traj: TrajectoryLike) -> np.ndarray:
    """Mask of the non-diverged replicates (all of them when every one diverged)."""
    keep = ~np.asarray(traj.diverged, dtype=bool)
    return keep if keep.any() else np.ones_like(keep)


def band(ax: Any, steps: np.ndarray, values: np.ndarray, **kw: Any) -> Any:
    """Mean of ``values`` (R, n) against ``steps`` with its 95% band; returns the line."""
    mean, lo, hi = mean_interval(values, axis=0)
    (line,) = ax.plot(steps, mean, **kw)
    if values.shape[0] > 1:
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=BAND_ALPHA, linewidth=0)
    return line


def plot_trajectory(traj: TrajectoryLike, ax: Any = None, label: Optional[str] = None) -> Any:
    """Mean old weight α_t with its 95% band (mean ± 1.96 s/√R over non-diverged replicates)
    against steps, and the mean drift D_t = ‖μ_o(t) − μ_o*‖_Σ (docs: theory-model) dashed on a twin
    axis in the same colour. Calling it again on the same ``ax`` adds to both axes.
    Returns the primary axes (the twin is ``ax.mixforget_twin``)."""
    ax = ensure_axes(ax)
    keep = kept_replicates(traj)
    name = label if label is not None else str(traj.meta.get("objective", {}).get("kind", "α"))
    line = band(ax, traj.steps, traj.old_weight[keep], label=f"{name}: old weight")
    twin = getattr(ax, "mixforget_twin", None)
    if twin is None:
        twin = ax.twinx()
        ax.mixforget_twin = twin
        twin.set_ylabel(DRIFT_LABEL + " (dashed)")
    band(
        twin,
        traj.steps,
        traj.drift[keep],
        color=line.get_color(),
        linestyle="--",
        label=f"{name}: drift",
    )
    ax.set_xlabel("step")
    ax.set_ylabel(WEIGHT_LABEL + " (solid)")
    return ax
