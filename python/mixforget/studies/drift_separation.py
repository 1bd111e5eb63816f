"""The drift-vs-separation study (docs: theory-pred-drift): old-component drift under an
on-policy objective against the separation of the modes, population flow and finite-batch
training side by side, with the fitted slopes of log sup drift against Δ²."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .._rng import RngLike, resolve_rng, seed_record
from .._stats import mean_interval
from .._validate import (
    as_positive_int,
    as_real,
    describe_type,
)
from ..mixture import TwoMode
from ..objectives import Objective, ReverseKL
from ..population import population_flow
from ..simulate import simulate
from ._shared import (
    _as_list,
    _axes,
    _fmt,
    _markdown,
    _to_pandas,
    _unit_direction,
)

#: Rounding floor of drift_vs_separation, in units of ε·lr·steps.
_ROUNDING_FACTOR = 16.0


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y against x."""
    if x.size < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _fit_poly_corrected(sep: np.ndarray, log_d: np.ndarray) -> tuple[float, float]:
    """log D = a + b Δ² + c log Δ by least squares; returns (b, c). NaN with < 3 points."""
    if sep.size < 3:
        return math.nan, math.nan
    design = np.column_stack([np.ones_like(sep), sep**2, np.log(sep)])
    coef, *_ = np.linalg.lstsq(design, log_d, rcond=None)
    return float(coef[1]), float(coef[2])


def _check_separations(separations: Any) -> np.ndarray:
    if isinstance(separations, (list, tuple, np.ndarray)) and len(separations) == 0:
        raise ValueError("separations must hold at least one value")
    values = [as_real("separations", v) for v in _as_list("separations", separations)]
    sep = np.asarray(values, dtype=np.float64)
    if sep.size == 0:
        raise ValueError("separations must hold at least one value")
    if not np.all(np.isfinite(sep)) or np.any(sep <= 0.0):
        raise ValueError(f"separations must be finite numbers > 0, got {separations!r}")
    if np.any(np.diff(sep) <= 0.0):
        raise ValueError("separations must increase strictly")
    return sep


# ---------------------------------------------------------------------------------------
# drift vs separation (docs: theory-pred-drift)
# ---------------------------------------------------------------------------------------
#: The fitted Δ^k is read as the polynomial factor of the overlap-gated law only when the
#: plain slope is within this fraction of the theory's −1/8 (and the corrected slope < 0).
EXPONENT_FIT_TOLERANCE = 0.5


@dataclass(frozen=True)
class DriftSeparationStudy:
    """Result of :func:`drift_vs_separation` (docs: theory-geometry, theory-reverse-kl,
    theory-population, theory-pred-drift).

    ``rows``: one dict per separation Δ with keys
    ``separation`` (Δ), ``bhattacharyya`` (BC = e^{−Δ²/8}),
    ``sup_drift_population`` (sup_t D_t of the exact population flow),
    ``ratio_population`` (sup_t D_t / BC), ``argsup_step_population`` (step of the sup),
    ``final_drift_population``, ``final_new_error_population``,
    ``final_weight_error_population`` (``|α_T − α*|``), and, when finite-batch runs were made,
    ``sup_drift_batch_mean`` / ``_lo`` / ``_hi`` (mean over replicates of each replicate's
    sup_t D_t and its 95% interval), ``ratio_batch`` (mean / BC),
    ``below_rounding`` (the population sup drift or BC is below the rounding floor
    16·ε·lr·steps of the flow: rounding noise; a RuntimeWarning names these separations),
    ``sup_mean_path_drift`` (sup_t of the drift of the replicate-mean old mean, which tracks
    the population flow), ``diverged`` (replicates left out: non-finite, or beyond the bound of
    :attr:`mixforget.Trajectory.runaway`).

    Fits over the ``fit_separations`` (the large-Δ end):
    ``slope_population`` — least squares of log sup_t D_t on Δ² (theory: → −1/8);
    ``slope_population_corrected`` / ``poly_exponent_population`` — the Δ² coefficient and
    the exponent k of a fitted polynomial factor in log D = a − bΔ² + k log Δ
    (docs: theory-pred-drift "polynomial factors aside"); the same three for the finite-batch means
    (``slope_batch`` …, NaN without finite-batch runs).
    ``constant_population`` — C = max over the grid of sup_t D_t / BC, the smallest C with
    sup_t D_t ≤ C·BC on every grid point. ``settings``: everything needed to reproduce it.
    """

    rows: list[dict[str, Any]]
    fit_separations: tuple[float, ...]
    slope_population: float
    slope_population_corrected: float
    poly_exponent_population: float
    slope_batch: float
    slope_batch_corrected: float
    poly_exponent_batch: float
    constant_population: float
    settings: dict[str, Any] = field(default_factory=dict)

    theory_slope: float = -0.125

    @property
    def separations(self) -> np.ndarray:
        """Δ of each row."""
        return np.array([r["separation"] for r in self.rows])

    def column(self, name: str) -> np.ndarray:
        """One column of :attr:`rows` as an array."""
        return np.array([r.get(name, math.nan) for r in self.rows], dtype=np.float64)

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        """Markdown table (one line per Δ) followed by the fitted slopes."""
        has_batch = "sup_drift_batch_mean" in self.rows[0]
        header = ["Δ", "BC = e^{−Δ²/8}", "sup_t D_t (population)", "sup / BC"]
        if has_batch:
            b = self.settings.get("batch_size")
            header += [f"sup_t D_t, B={b} (mean [95% CI])", "sup_t ‖E μ_o(t) − μ_o*‖"]
        lines = []
        for r in self.rows:
            line = [
                _fmt(r["separation"], 3),
                _fmt(r["bhattacharyya"]),
                _fmt(r["sup_drift_population"]),
                _fmt(r["ratio_population"], 3),
            ]
            if has_batch:
                line += [
                    f"{_fmt(r['sup_drift_batch_mean'], 3)} [{_fmt(r['sup_drift_batch_lo'], 3)}, "
                    f"{_fmt(r['sup_drift_batch_hi'], 3)}]",
                    _fmt(r["sup_mean_path_drift"], 3),
                ]
            lines.append(line)
        fit = ", ".join(_fmt(s, 3) for s in self.fit_separations)
        text = _markdown(header, lines)
        text += (
            f"\n\nFitted slope of log sup_t D_t against Δ² over Δ ∈ {{{fit}}} "
            "(theory −1/8 = −0.125): "
            f"population {self.slope_population:.4f}"
            f" ({100 * (self.slope_population / self.theory_slope - 1):+.1f}%); "
            f"with a fitted factor Δ^k: {self.slope_population_corrected:.4f} (k = "
            f"{self.poly_exponent_population:.2f}"
            f"{self._exponent_caveat(self.slope_population, self.slope_population_corrected)})."
            f" C = max sup_t D_t / BC = {self.constant_population:.3f}."
        )
        if has_batch and not math.isnan(self.slope_batch):
            text += (
                f" Finite-batch means: slope {self.slope_batch:.4f}, with Δ^k "
                f"{self.slope_batch_corrected:.4f} (k = {self.poly_exponent_batch:.2f}"
                f"{self._exponent_caveat(self.slope_batch, self.slope_batch_corrected)})."
            )
        return text

    def _exponent_caveat(self, slope: float, corrected: float) -> str:
        """A note for the fitted Δ^k when it means nothing: k is the polynomial factor of an
        overlap-gated law e^{−Δ²/8}·Δ^k, so it only reads as one when the drift follows such
        a law — a plain slope within half of −1/8 and a negative corrected slope. Otherwise
        (e.g. finite-batch drift at its SGD noise floor, flat in Δ) k just absorbs the misfit."""
        if math.isnan(slope) or math.isnan(corrected):
            return ""
        gated = corrected < 0.0 and abs(slope / self.theory_slope - 1.0) <= EXPONENT_FIT_TOLERANCE
        if gated:
            return ""
        return (
            "; not meaningful here: the drift does not follow the overlap-gated e^{−Δ²/8} law "
            "over these Δ (e.g. it sits at the SGD noise floor), so k only absorbs the misfit"
        )

    def plot(self, ax: Any = None) -> Any:
        """log sup_t D_t against Δ² (population and finite-batch mean with 95% bars) with the
        reference line C·e^{−Δ²/8} (C = :attr:`constant_population`). Returns the Axes."""
        ax = _axes(ax)
        sep = self.separations
        x = sep**2
        ax.plot(x, self.column("sup_drift_population"), "o-", color="C0", label="population flow")
        if "sup_drift_batch_mean" in self.rows[0]:
            mean = self.column("sup_drift_batch_mean")
            lo, hi = self.column("sup_drift_batch_lo"), self.column("sup_drift_batch_hi")
            err = np.vstack([np.maximum(mean - lo, 0.0), np.maximum(hi - mean, 0.0)])
            ax.errorbar(
                x,
                mean,
                yerr=err,
                fmt="s",
                color="C1",
                capsize=3,
                label=f"finite batch B={self.settings.get('batch_size')} (mean, 95%)",
            )
            ax.plot(
                x,
                self.column("sup_mean_path_drift"),
                "^:",
                color="C2",
                label="drift of the mean path",
            )
        grid = np.linspace(x.min(), x.max(), 200)
        ax.plot(
            grid,
            self.constant_population * np.exp(-grid / 8.0),
            "k--",
            label=f"C·exp(−Δ²/8), C = {self.constant_population:.2f}",
        )
        ax.set_yscale("log")
        ax.set_xlabel("Δ² (squared Mahalanobis separation)")
        ax.set_ylabel("sup_t D_t (old-mean drift)")
        ax.set_title(f"drift vs separation (slope {self.slope_population:.3f}, theory −0.125)")
        ax.legend(fontsize="small")
        return ax


def drift_vs_separation(
    separations: Sequence[float],
    objective: Optional[Objective] = None,
    *,
    old_weight: float = 0.75,
    start_offset: float = 2.0,
    dim: int = 1,
    cov: Any = 1.0,
    direction: Any = None,
    steps: int = 3000,
    lr: float = 0.1,
    record_every: int = 1,
    batch_size: int = 64,
    replicates: int = 200,
    fit_points: int = 4,
    rng: RngLike = 0,
    weight_param: str = "logit",
    lr_scale: Optional[dict[str, float]] = None,
    threads: Optional[int] = None,
    progress: bool = False,
) -> DriftSeparationStudy:
    """Old-component drift against separation: docs: theory-pred-drift (theory next to
    measurement).

    For each Δ in ``separations``: target p* = α* φ(·; 0, Σ) + (1−α*) φ(·; Δ·u, Σ) with
    u = ``direction`` (default e₁) scaled to unit Mahalanobis length, α* = ``old_weight``;
    standard start (docs: theory-model): old component correct (μ_o = 0, α = α*), new mean at
    (Δ + ``start_offset``)·u.

    *Choice of start.* With ``start_offset`` s > 0 the start's new mean lies s Mahalanobis
    units beyond the target's, away from the old mode: the initial new-task error is the same
    s for every Δ, and along the flow the model's new component never comes closer to the old
    one than the target's does, so every overlap gate of docs: theory-geometry (soft misassignment
    ≤ ½ sqrt(α/(1−α))·BC) is governed by BC(Δ) = e^{−Δ²/8} and sup_t D_t ≈ C·BC. A start
    placed *between* the modes (s < 0, e.g. μ_n* − 3σ) is also a standard start, but then the
    gate is set by the closest approach ``|Δ + s| < Δ`` and the drift scales like
    e^{−(Δ+s)²/8}: the slope against Δ² is then −(1 + s/Δ)/8, far from −1/8 at moderate Δ.

    Measured: the population flow (:func:`mixforget.population_flow`, exact,
    docs: theory-population) recorded every ``record_every`` steps, and, if ``replicates`` > 0,
    ``replicates`` finite-batch runs (:func:`mixforget.simulate`, batch ``batch_size``) with the
    same lr; for each replicate sup_t D_t over the records, then their mean and normal 95% interval.
    Default objective: ``ReverseKL(baseline="none")`` (the plain score-function estimator
    of docs: theory-reverse-kl); the loo baseline leaves the population flow unchanged but adds
    non-gated noise to the old-mean estimate in finite batches.

    Fits use the ``fit_points`` (>= 3) largest separations: least squares of log sup_t D_t on
    Δ² (theory −1/8), and of log sup_t D_t on (1, Δ², log Δ) to remove a polynomial factor.
    Separations whose drift is below float64 rounding are flagged and warned about.

    Note (measured, see the finite-batch columns): under finite batches sup_t D_t has a
    noise floor ∝ 1/sqrt(B) that is not overlap-gated — during the transient α_t ≠ α*, so
    log q − log p* ≈ log(α_t/α*) on the old mode and the old-mean estimate has mean-zero
    noise of that size — so the finite-batch mean follows C·BC only while C·BC is above the
    floor. The drift of the replicate-mean path tracks the population flow.

    Returns a :class:`DriftSeparationStudy`.
    """
    sep = _check_separations(separations)
    if objective is None:
        objective = ReverseKL(baseline="none")
    dim, fit_points = _check_drift_arguments(objective, dim, fit_points, start_offset, replicates)
    u, _ = _unit_direction(direction, dim, cov)
    origin = np.zeros(dim)
    root = resolve_rng(rng)
    children = root.spawn(sep.size)
    training: dict[str, Any] = {"steps": steps, "lr": lr, "record_every": record_every}
    training.update(weight_param=weight_param, lr_scale=lr_scale)

    rows: list[dict[str, Any]] = []
    for delta, child in zip(sep, children):
        target = TwoMode(origin, float(delta) * u, old_weight, cov)
        start = target.replace(new_mean=float(delta + start_offset) * u)
        if np.array_equal(start.new_mean, start.old_mean):
            raise ValueError(
                f"start_offset = {start_offset} puts the start's new mean on the old mean at Δ = "
                f"{delta}"
            )
        row = _population_columns(target, start, objective, float(delta), training)
        if replicates > 0:
            run = {"batch_size": batch_size, "replicates": int(replicates), "rng": child}
            run.update(threads=threads, progress=progress)
            row.update(
                _batch_columns(target, start, objective, row["bhattacharyya"], training, run)
            )
        rows.append(row)
    _flag_below_rounding(rows, lr, steps)
    n_fit = min(fit_points, sep.size)
    fits = _fit_slopes(sep, rows, n_fit, replicates > 0)
    settings = {
        "objective": objective.as_dict(),
        "old_weight": float(old_weight),
        "start_offset": float(start_offset),
        "dim": dim,
        "cov": np.asarray(cov, dtype=np.float64).tolist(),
        "direction": u.tolist(),
        "steps": int(steps),
        "lr": float(lr),
        "record_every": int(record_every),
        "batch_size": int(batch_size),
        "replicates": int(replicates),
        "fit_points": n_fit,
        "weight_param": weight_param,
        "lr_scale": lr_scale,
        "seed": seed_record(root),
    }
    return DriftSeparationStudy(
        rows=rows,
        fit_separations=tuple(float(s) for s in sep[-n_fit:]),
        constant_population=float(max(r["ratio_population"] for r in rows)),
        settings=settings,
        **fits,
    )


def _check_drift_arguments(
    objective: Any, dim: Any, fit_points: Any, start_offset: Any, replicates: Any
) -> tuple[int, int]:
    """The checks of drift_vs_separation's arguments (before any work); (dim, fit_points)."""
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a mixforget objective, got {describe_type(objective)}")
    dim = as_positive_int("dim", dim)
    fit_points = as_positive_int("fit_points", fit_points, minimum=3)  # a line needs 3 to fit
    if (
        isinstance(start_offset, bool)
        or not isinstance(start_offset, numbers.Real)
        or not math.isfinite(start_offset)
    ):
        raise ValueError(f"start_offset must be a finite number, got {start_offset!r}")
    if (
        isinstance(replicates, bool)
        or not isinstance(replicates, numbers.Integral)
        or replicates < 0
    ):
        raise ValueError(
            f"replicates must be an integer >= 0 (0: no finite-batch runs), got {replicates!r}"
        )
    return dim, fit_points


def _population_columns(
    target: TwoMode,
    start: TwoMode,
    objective: Objective,
    delta: float,
    training: dict[str, Any],
) -> dict[str, Any]:
    """The row of one separation Δ with its population-flow columns (exact drift)."""
    bc = float(math.exp(-delta * delta / 8.0))
    flow = population_flow(target, start, objective, **training)
    drift = flow.drift[0]
    k = int(np.argmax(drift))
    return {
        "separation": delta,
        "bhattacharyya": bc,
        "sup_drift_population": float(drift[k]),
        "ratio_population": float(drift[k]) / bc,
        "argsup_step_population": int(flow.steps[k]),
        "final_drift_population": float(drift[-1]),
        "final_new_error_population": float(flow.new_error[0, -1]),
        "final_weight_error_population": float(abs(flow.old_weight[0, -1] - target.old_weight)),
        "population_diverged": bool(flow.diverged[0]),
    }


def _batch_columns(
    target: TwoMode,
    start: TwoMode,
    objective: Objective,
    bc: float,
    training: dict[str, Any],
    run: dict[str, Any],
) -> dict[str, Any]:
    """The finite-batch columns of one separation: sup drift per replicate (mean and 95 %
    interval), the drift of the replicate-mean path, replicates kept and diverged."""
    traj = simulate(target, start, objective, **training, **run)
    keep = ~traj.excluded
    bdrift = traj.drift[keep]
    mean, lo, hi = mean_interval(bdrift.max(axis=1))
    mean_path = traj.old_mean[keep].mean(axis=0)  # (n_rec, d)
    return {
        "sup_drift_batch_mean": float(mean),
        "sup_drift_batch_lo": float(lo),
        "sup_drift_batch_hi": float(hi),
        "ratio_batch": float(mean) / bc,
        "sup_mean_path_drift": float(
            np.max(target.mahalanobis(mean_path - target.old_mean, "old"))
        ),
        "final_drift_batch_mean": float(bdrift[:, -1].mean()),
        "replicates": int(keep.sum()),
        "diverged": int(traj.excluded.sum()),
    }


def _flag_below_rounding(rows: list[dict[str, Any]], lr: float, steps: int) -> None:
    """Flag (``below_rounding``) and warn about the rows whose drift or BC is rounding noise."""
    # Rounding floor of the flow: each of the `steps` updates adds rounding errors of order
    # ε·lr·(gradient terms of order 1) to μ_o, whatever the overlap. A sup drift (or a BC)
    # below a few times that floor is rounding noise, not the overlap-gated drift.
    floor = _ROUNDING_FACTOR * np.finfo(np.float64).eps * float(lr) * int(steps)
    noisy = []
    for row in rows:
        row["below_rounding"] = bool(
            row["sup_drift_population"] <= floor or row["bhattacharyya"] <= floor
        )
        if row["below_rounding"]:
            noisy.append(row["separation"])
    if noisy:
        warnings.warn(
            f"drift_vs_separation: at separations {noisy} the population drift (or BC) is below "
            f"the rounding floor {floor:.1e} of {steps} float64 updates (16·ε·lr·steps): it is "
            "rounding noise, not overlap-gated drift (rows flagged 'below_rounding'); leave "
            "these separations out of the fit",
            RuntimeWarning,
            stacklevel=3,
        )


def _fit_slopes(
    sep: np.ndarray, rows: list[dict[str, Any]], n_fit: int, batch: bool
) -> dict[str, float]:
    """Slopes of log sup drift on Δ² over the ``n_fit`` largest separations, plain and with a
    polynomial factor removed, for the population flow and (``batch``) the finite batches."""
    if n_fit < 3:
        warnings.warn(
            f"drift_vs_separation: only {n_fit} separation(s) to fit; the corrected fit needs 3 "
            "(its slope and exponent are NaN)",
            RuntimeWarning,
            stacklevel=3,
        )
    fit_sep = sep[-n_fit:]
    log_pop = np.log(np.array([r["sup_drift_population"] for r in rows[-n_fit:]]))
    slope_pop, _ = _fit_line(fit_sep**2, log_pop)
    corr_pop, k_pop = _fit_poly_corrected(fit_sep, log_pop)
    slope_b = corr_b = k_b = math.nan
    if batch:
        log_b = np.log(np.array([r["sup_drift_batch_mean"] for r in rows[-n_fit:]]))
        slope_b, _ = _fit_line(fit_sep**2, log_b)
        corr_b, k_b = _fit_poly_corrected(fit_sep, log_b)
    return {
        "slope_population": slope_pop,
        "slope_population_corrected": corr_pop,
        "poly_exponent_population": k_pop,
        "slope_batch": slope_b,
        "slope_batch_corrected": corr_b,
        "poly_exponent_batch": k_b,
    }
