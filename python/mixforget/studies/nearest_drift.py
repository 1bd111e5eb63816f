"""The K-component drift conjecture, measured (docs: theory-k-components, issue 20): does the
supremum drift of an old component follow e^{−Δ²/8} in its separation Δ from the nearest
*moving* component, whatever the separation of the other old components?

World (K = 3, d = 1, unit variances): a second old component at distance ``other`` on the far
side of the measured old component j (mean 0), and the new task at Δ on the other side. The
start is the target except for the new component's mean, placed ``start_offset`` beyond its
target (away from j, as in :func:`mixforget.studies.drift_vs_separation`), so the moving
component never comes closer to j than Δ. Training is on-policy (default
``ReverseKL(baseline="none")``), in the population limit (exact flow) and optionally with
finite batches (the Rust K-component engine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .._rng import RngLike
from .._stats import mean_interval
from .._validate import as_positive_int, as_real
from ..mixture import Mixture
from ..objectives import Objective, ReverseKL
from ..population import population_flow
from ..simulate import simulate
from ._shared import _axes, _fmt, _markdown, _to_pandas
from .drift_separation import _check_separations, _fit_line

__all__ = ["NearestDriftStudy", "drift_vs_nearest_separation"]

#: index of each role in the study's K = 3 world: (other old, measured old, new)
OTHER, MEASURED, NEW = 0, 1, 2


@dataclass(frozen=True)
class NearestDriftStudy:
    """Result of :func:`drift_vs_nearest_separation` (docs: theory-k-components).

    ``rows``: one dict per (other separation, Δ) with ``other_separation``, ``separation``
    (Δ, from the measured old component to the new task), ``bhattacharyya``
    (e^{−Δ²/8}), ``sup_drift_population`` (sup_t ‖μ_j(t) − μ_j*‖ of the measured component,
    exact flow), ``sup_drift_other_population`` (the same for the other old component) and,
    with finite batches, ``sup_drift_batch_mean`` / ``_lo`` / ``_hi`` (mean over replicates of
    each replicate's sup drift, 95% interval) and ``excluded`` (diverged or runaway replicates,
    left out). ``slopes``: per other separation, the least-squares slope of log sup drift
    (population) on Δ² over the ``fit_points`` largest Δ (conjecture: −1/8).
    """

    rows: list[dict[str, Any]]
    slopes: dict[float, float]
    fit_separations: tuple[float, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    theory_slope: float = -0.125

    def column(self, name: str, other: Optional[float] = None) -> np.ndarray:
        """One column of :attr:`rows` (only the rows of one other separation if given)."""
        rows = [r for r in self.rows if other is None or r["other_separation"] == other]
        return np.array([r.get(name, math.nan) for r in rows], dtype=np.float64)

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        """Markdown table (one line per other separation × Δ), then the fitted slopes."""
        has_batch = "sup_drift_batch_mean" in self.rows[0]
        header = ["other old at", "Δ", "BC = e^{−Δ²/8}", "sup drift (population)",
                  "sup drift of the other old"]  # fmt: skip
        if has_batch:
            header.append(f"sup drift, B={self.settings['batch_size']} (mean [95% CI])")
        lines = []
        for r in self.rows:
            line = [_fmt(r["other_separation"], 3), _fmt(r["separation"], 3),
                    _fmt(r["bhattacharyya"]), _fmt(r["sup_drift_population"]),
                    _fmt(r["sup_drift_other_population"])]  # fmt: skip
            if has_batch:
                line.append(
                    f"{_fmt(r['sup_drift_batch_mean'], 3)} [{_fmt(r['sup_drift_batch_lo'], 3)}, "
                    f"{_fmt(r['sup_drift_batch_hi'], 3)}]"
                )
            lines.append(line)
        fit = ", ".join(_fmt(s, 3) for s in self.fit_separations)
        slopes = "; ".join(
            f"other old at {_fmt(o, 3)}: {s:.4f} ({100 * (s / self.theory_slope - 1):+.1f}%)"
            for o, s in self.slopes.items()
        )
        return (
            _markdown(header, lines)
            + f"\n\nSlope of log sup drift against Δ² over Δ ∈ {{{fit}}} (population flow; "
            f"conjecture −1/8 = −0.125): {slopes}."
        )

    def plot(self, ax: Any = None) -> Any:
        """log sup drift of the measured old component against Δ², one colour per other
        separation (population flow solid, finite-batch means with 95% bars), and the
        conjectured slope −1/8 as a dashed line through the first fit point. Returns the Axes."""
        ax = _axes(ax)
        for i, other in enumerate(self.slopes):
            sep = self.column("separation", other)
            sup = self.column("sup_drift_population", other)
            colour = f"C{i}"
            ax.plot(sep**2, sup, "o-", color=colour,
                    label=f"population flow, other old component at −{other:g} "
                          f"(slope {self.slopes[other]:.3f})")  # fmt: skip
            if "sup_drift_batch_mean" in self.rows[0]:
                batch = self.settings["batch_size"]
                mean = self.column("sup_drift_batch_mean", other)
                lo, hi = (
                    self.column("sup_drift_batch_lo", other),
                    self.column("sup_drift_batch_hi", other),
                )
                ax.errorbar(sep**2, mean, yerr=[mean - lo, hi - mean], fmt="s", color=colour,
                            alpha=0.6, capsize=3,
                            label=f"B = {batch} mean, other at −{other:g}")  # fmt: skip
        first = self.rows[0]["other_separation"]
        sep = self.column("separation", first)
        anchor = np.searchsorted(sep, self.fit_separations[0])
        y0 = self.column("sup_drift_population", first)[anchor]
        x = sep[anchor:] ** 2
        ax.plot(x, y0 * np.exp(self.theory_slope * (x - x[0])), "k--",
                label="conjectured slope −1/8 (BC = exp(−Δ²/8))")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("Δ² (separation of the old component from the moving new one)")
        ax.set_ylabel(r"$\sup_t \|\mu_j(t) - \mu_j^*\|$")
        ax.set_title("K = 3: old-component drift against the nearest moving separation")
        ax.legend(fontsize=7)
        return ax


def _world(other: float, delta: float, weights: Sequence[float], offset: float) -> tuple:
    target = Mixture(weights, [[-other], [0.0], [delta]], cov=1.0)
    return target, target.replace(means=[[-other], [0.0], [delta + offset]])


def _batch_columns(traj: Any) -> dict[str, Any]:
    keep = ~traj.excluded
    mean, lo, hi = math.nan, math.nan, math.nan
    if keep.any():
        mean, lo, hi = (float(v) for v in mean_interval(traj.drift[keep, :, MEASURED].max(axis=1)))
    return {"sup_drift_batch_mean": float(mean), "sup_drift_batch_lo": float(lo),
            "sup_drift_batch_hi": float(hi), "excluded": int((~keep).sum())}  # fmt: skip


def drift_vs_nearest_separation(
    separations: Sequence[float],
    other_separations: Sequence[float] = (4.0, 8.0),
    objective: Optional[Objective] = None,
    *,
    weights: Sequence[float] = (0.3, 0.45, 0.25),
    start_offset: float = 2.0,
    steps: int = 3000,
    lr: float = 0.1,
    record_every: int = 1,
    fit_points: int = 4,
    batch_size: int = 64,
    replicates: int = 0,
    rng: RngLike = 0,
) -> NearestDriftStudy:
    """Sup drift of an old component against its separation from the nearest moving one
    (docs: theory-k-components, "What is conjectured").

    For each other separation o and each Δ: target p* = w_0 φ(·; −o) + w_1 φ(·; 0) +
    w_2 φ(·; Δ) (unit variances, ``weights`` = (w_0, w_1, w_2), component 2 the new task),
    start = p* with the new mean at Δ + ``start_offset``; ``steps`` of the exact population
    flow, and with ``replicates`` > 0 as many finite-batch runs of ``batch_size``. The measured
    quantity is D = sup_t ``|μ_1(t) − μ_1*|``. The conjecture: log D falls with slope −1/8 in Δ²
    (the exponent of BC = e^{−Δ²/8}), the same for every o. Fits use the ``fit_points``
    largest Δ.

    Returns a :class:`NearestDriftStudy`.
    """
    sep = _check_separations(separations)
    others = _check_separations(other_separations)
    fit_points = as_positive_int("fit_points", fit_points)
    if not 2 <= fit_points <= sep.size:
        raise ValueError(f"fit_points must be in [2, {sep.size}] (the number of separations), "
                         f"got {fit_points}")  # fmt: skip
    offset = as_real("start_offset", start_offset)
    if not (math.isfinite(offset) and offset >= 0.0):
        raise ValueError(f"start_offset must be a finite number >= 0, got {start_offset!r}")
    if len(weights) != 3:
        raise ValueError(
            f"weights must hold 3 numbers (other old, measured old, new), got {weights!r}"
        )
    objective = ReverseKL(baseline="none") if objective is None else objective
    replicates = int(replicates)
    if replicates < 0:
        raise ValueError(f"replicates must be an integer >= 0, got {replicates}")
    _world(float(others[0]), float(sep[0]), weights, offset)  # validates the weights up front
    rows, slopes = [], {}
    for other in others:
        for delta in sep:
            target, start = _world(float(other), float(delta), weights, offset)
            flow = population_flow(target, start, objective, steps=steps, lr=lr,
                                   record_every=record_every)  # fmt: skip
            drift = flow.drift[0]
            row = {"other_separation": float(other), "separation": float(delta),
                   "bhattacharyya": math.exp(-delta * delta / 8.0),
                   "sup_drift_population": float(drift[:, MEASURED].max()),
                   "sup_drift_other_population": float(drift[:, OTHER].max())}  # fmt: skip
            if replicates:
                traj = simulate(target, start, objective, steps=steps, lr=lr,
                                batch_size=batch_size, replicates=replicates,
                                record_every=record_every, rng=rng)  # fmt: skip
                row.update(_batch_columns(traj))
            rows.append(row)
        fit = [r for r in rows if r["other_separation"] == other][-fit_points:]
        x = np.array([r["separation"] ** 2 for r in fit])
        y = np.log([r["sup_drift_population"] for r in fit])
        slopes[float(other)] = _fit_line(x, y)[0]
    settings = {"weights": tuple(float(w) for w in weights), "start_offset": offset,
                "steps": steps, "lr": lr, "record_every": record_every, "objective": objective,
                "batch_size": batch_size, "replicates": replicates, "rng": rng}  # fmt: skip
    return NearestDriftStudy(rows, slopes, tuple(float(s) for s in sep[-fit_points:]), settings)
