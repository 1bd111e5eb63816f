"""Studies that put the theory next to the measurement (docs: theory-geometry, theory-reverse-kl,
theory-starvation, theory-population, theory-pred-drift, theory-pred-starvation,
theory-pred-replay).

Three studies, each returning a small frozen result table that a paper would print:

- :func:`drift_vs_separation` — docs: theory-pred-drift: old-component drift under an
  on-policy objective (ReverseKL by default) is gated by the overlap of the modes,
  sup_t D_t ≤ C·BC with BC = e^{−Δ²/8}, so log sup_t D_t against Δ² has slope → −1/8.
  Population flow (docs: theory-population, exact) and finite-batch training
  (docs: theory-training-loop, mean over replicates with a 95% interval) side by side, with the
  fitted slopes.
- :func:`starvation` — docs: theory-starvation / docs: theory-pred-starvation, theory-pred-replay:
  predicted vs measured starvation rates (P = (1−α)^B on-policy, ((1−λ)(1−α))^B with bernoulli
  replay, 0 with stratified replay), and the variance of the old-mean gradient estimate with and
  without replay next to the (unchanged) population gradient.
- :func:`drop_vs_gain` — the trade-off of arXiv 2510.18874: forgetting of the old task
  (drop in overlap accuracy) at the first step where the new task's gain reaches a
  threshold, per objective and learning rate.

Result objects: :class:`DriftSeparationStudy`, :class:`StarvationStudy`,
:class:`DropGainStudy`, each with
``.rows`` (list of dicts), ``.to_pandas()`` (needs pandas), ``.to_markdown()`` and
``.plot(ax=None)`` (needs matplotlib, imported lazily; works with the Agg backend).

Public names: drift_vs_separation, starvation, drop_vs_gain, DriftSeparationStudy,
StarvationStudy, DropGainStudy, binomial_interval, objective_label, variance_with_stderr.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from . import theory
from ._defaults import REPLAY_SLOTS, Z95
from ._problem import check_models
from ._rng import RngLike, resolve_rng, seed_record
from ._validate import (
    as_fraction,
    as_positive_float,
    as_positive_int,
    as_probability,
    as_real,
)
from .mixture import TwoMode
from .objectives import SDFT, ForwardKL, Objective, ReverseKL
from .population import population_flow, population_gradient
from .results import mean_interval
from .simulate import estimate_gradient, simulate

__all__ = [
    "DriftSeparationStudy",
    "DropGainStudy",
    "StarvationStudy",
    "binomial_interval",
    "drift_vs_separation",
    "drop_vs_gain",
    "objective_label",
    "starvation",
    "variance_with_stderr",
]

_DASHES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))


# ---------------------------------------------------------------------------------------
# small statistics helpers
# ---------------------------------------------------------------------------------------
#: Rounding floor of drift_vs_separation, in units of ε·lr·steps.
_ROUNDING_FACTOR = 16.0


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


def _check_separations(separations: Any) -> np.ndarray:
    sep = np.asarray(separations, dtype=np.float64).reshape(-1)
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
            f"{self.poly_exponent_population:.2f})."
            f" C = max sup_t D_t / BC = {self.constant_population:.3f}."
        )
        if has_batch and not math.isnan(self.slope_batch):
            text += (
                f" Finite-batch means: slope {self.slope_batch:.4f}, with Δ^k "
                f"{self.slope_batch_corrected:.4f} (k = {self.poly_exponent_batch:.2f})."
            )
        return text

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
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a mixforget objective, got {type(objective).__name__}")
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
    u, _ = _unit_direction(direction, dim, cov)
    origin = np.zeros(dim)
    root = resolve_rng(rng)
    children = root.spawn(sep.size)

    rows: list[dict[str, Any]] = []
    for delta, child in zip(sep, children):
        target = TwoMode(origin, float(delta) * u, old_weight, cov)
        start = target.replace(new_mean=float(delta + start_offset) * u)
        if np.array_equal(start.new_mean, start.old_mean):
            raise ValueError(
                f"start_offset = {start_offset} puts the start's new mean on the old mean at Δ = "
                f"{delta}"
            )
        bc = float(math.exp(-delta * delta / 8.0))
        flow = population_flow(
            target,
            start,
            objective,
            steps=steps,
            lr=lr,
            record_every=record_every,
            weight_param=weight_param,
            lr_scale=lr_scale,
        )
        drift = flow.drift[0]
        k = int(np.argmax(drift))
        row: dict[str, Any] = {
            "separation": float(delta),
            "bhattacharyya": bc,
            "sup_drift_population": float(drift[k]),
            "ratio_population": float(drift[k]) / bc,
            "argsup_step_population": int(flow.steps[k]),
            "final_drift_population": float(drift[-1]),
            "final_new_error_population": float(flow.new_error[0, -1]),
            "final_weight_error_population": float(abs(flow.old_weight[0, -1] - target.old_weight)),
            "population_diverged": bool(flow.diverged[0]),
        }
        if replicates > 0:
            traj = simulate(
                target,
                start,
                objective,
                steps=steps,
                batch_size=batch_size,
                lr=lr,
                replicates=int(replicates),
                record_every=record_every,
                rng=child,
                weight_param=weight_param,
                lr_scale=lr_scale,
                threads=threads,
                progress=progress,
            )
            keep = ~traj.excluded
            bdrift = traj.drift[keep]
            sups = bdrift.max(axis=1)
            mean, lo, hi = mean_interval(sups)
            mean_path = traj.old_mean[keep].mean(axis=0)  # (n_rec, d)
            row.update(
                {
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
            )
        rows.append(row)

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
            stacklevel=2,
        )
    n_fit = min(fit_points, sep.size)
    if n_fit < 3:
        warnings.warn(
            f"drift_vs_separation: only {n_fit} separation(s) to fit; the corrected fit needs 3 "
            "(its slope and exponent are NaN)",
            RuntimeWarning,
            stacklevel=2,
        )
    fit_sep = sep[-n_fit:]
    log_pop = np.log(np.array([r["sup_drift_population"] for r in rows[-n_fit:]]))
    slope_pop, _ = _fit_line(fit_sep**2, log_pop)
    corr_pop, k_pop = _fit_poly_corrected(fit_sep, log_pop)
    slope_b = corr_b = k_b = math.nan
    if replicates > 0:
        log_b = np.log(np.array([r["sup_drift_batch_mean"] for r in rows[-n_fit:]]))
        slope_b, _ = _fit_line(fit_sep**2, log_b)
        corr_b, k_b = _fit_poly_corrected(fit_sep, log_b)
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
        fit_separations=tuple(float(s) for s in fit_sep),
        slope_population=slope_pop,
        slope_population_corrected=corr_pop,
        poly_exponent_population=k_pop,
        slope_batch=slope_b,
        slope_batch_corrected=corr_b,
        poly_exponent_batch=k_b,
        constant_population=float(max(r["ratio_population"] for r in rows)),
        settings=settings,
    )


# ---------------------------------------------------------------------------------------
# starvation and replay (docs: theory-reverse-kl, theory-starvation, theory-pred-starvation,
# theory-pred-replay)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StarvationStudy:
    """Result of :func:`starvation` (docs: theory-reverse-kl, theory-starvation,
    theory-pred-starvation, theory-pred-replay).

    ``rows``: one dict per (old weight α, batch size B, replay λ) with keys
    ``old_weight``, ``batch_size``, ``replay``, ``slots``, ``batches``;
    starvation of the on-policy estimator (λ = 0) and of the replay estimator:
    ``predicted_onpolicy`` = (1−α)^B, ``measured_onpolicy`` (fraction of starved batches),
    ``onpolicy_lo`` / ``onpolicy_hi`` (Wilson 95%), ``z_onpolicy`` ((measured − predicted) /
    binomial standard error sqrt(p(1−p)/n) at the predicted p), and the same with
    ``_replay`` (predicted ((1−λ)(1−α))^B, bernoulli, or 0 / (1−α)^B, stratified);
    the old-mean gradient component (first coordinate of μ_o, docs: theory-scores,
    theory-forward-kl, theory-reverse-kl) at the model: ``var_onpolicy`` / ``var_onpolicy_se``,
    ``var_replay`` / ``var_replay_se``, ``variance_ratio`` (on-policy / replay),
    ``log_variance_ratio_z`` (log ratio over its delta-method standard error), ``mean_onpolicy`` /
    ``mean_onpolicy_se``, ``mean_replay`` / ``mean_replay_se`` (estimator means),
    ``population_onpolicy`` / ``population_replay`` (exact population gradient, old-mean component)
    and ``population_max_abs_diff`` (max over all parameters of ``|∇L_replay − ∇L_on-policy|``; 0 up
    to quadrature error when the weights are uncapped, docs: theory-reverse-kl).
    ``settings``: the target, model and seed.
    """

    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """One numeric column of :attr:`rows` as an array."""
        return np.array([r[name] for r in self.rows], dtype=np.float64)

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        """Markdown table: predicted vs measured starvation with and without replay, and the
        variance of the old-mean gradient estimate."""
        header = [
            "α",
            "B",
            "λ",
            "P starved (1−α)^B",
            "measured [95%]",
            "P starved, replay",
            "measured [95%]",
            "Var ĝ_μo on-policy",
            "Var ĝ_μo replay",
            "ratio",
            "max diff. population ∇",
        ]
        lines = []
        for r in self.rows:
            lines.append(
                [
                    _fmt(r["old_weight"], 3),
                    _fmt(r["batch_size"]),
                    _fmt(r["replay"], 3),
                    _fmt(r["predicted_onpolicy"]),
                    f"{_fmt(r['measured_onpolicy'])} [{_fmt(r['onpolicy_lo'], 3)}, "
                    f"{_fmt(r['onpolicy_hi'], 3)}]",
                    _fmt(r["predicted_replay"]),
                    f"{_fmt(r['measured_replay'])} [{_fmt(r['replay_lo'], 3)}, "
                    f"{_fmt(r['replay_hi'], 3)}]",
                    _fmt(r["var_onpolicy"], 3),
                    _fmt(r["var_replay"], 3),
                    _fmt(r["variance_ratio"], 3),
                    _fmt(r["population_max_abs_diff"], 2),
                ]
            )
        s = self.settings
        note = (
            f"\n\n{s.get('batches')} batches per setting; slots = {s.get('slots')}; target Δ = "
            f"{_fmt(s.get('separation'), 3)}, model old mean offset "
            f"{_fmt(s.get('old_mean_offset'), 3)}σ "
            f"(so the old-mean gradient is non-zero)."
        )
        return _markdown(header, lines) + note

    def plot(self, ax: Any = None) -> Any:
        """Starvation rate against batch size (log scale): measured rates with 95% bars and the
        predicted curves (1−α)^B (solid) and ((1−λ)(1−α))^B (dashed, bernoulli replay), one
        colour per α. Measured zeros cannot be drawn on the log scale and are omitted.
        Returns the Axes."""
        ax = _axes(ax)
        alphas = sorted({r["old_weight"] for r in self.rows})
        b_all = self.column("batch_size")
        grid = np.unique(np.round(np.geomspace(max(1.0, b_all.min()), b_all.max(), 100)))
        bernoulli = self.settings.get("slots", "bernoulli") == "bernoulli"
        for i, a in enumerate(alphas):
            colour = f"C{i % 10}"
            sub = [r for r in self.rows if r["old_weight"] == a]
            ax.plot(
                grid,
                theory.starvation_probability(a, grid.astype(np.int64)),
                "-",
                color=colour,
                label=f"(1−α)^B, α={_fmt(a, 3)}",
            )
            onpolicy = {r["batch_size"]: r for r in sub}  # one point per B
            self._points(ax, list(onpolicy.values()), "onpolicy", colour, "o")
            for j, lam in enumerate(sorted({r["replay"] for r in sub if r["replay"] > 0})):
                if bernoulli:
                    ax.plot(
                        grid,
                        theory.starvation_probability(a, grid.astype(np.int64), lam),
                        linestyle=_DASHES[j % len(_DASHES)],
                        color=colour,
                        label=f"((1−λ)(1−α))^B, α={_fmt(a, 3)}, λ={_fmt(lam, 3)}",
                    )
                self._points(ax, [r for r in sub if r["replay"] == lam], "replay", colour, "s")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        # below ~0.1/batches nothing can be measured: do not stretch the axis to 1e-16
        floor = 0.1 / float(self.settings.get("batches", 1e5))
        ax.set_ylim(bottom=floor, top=1.5)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("P(batch starved of old samples)")
        ax.set_title("old-mode starvation: measured (markers, 95%) vs predicted (lines)")
        ax.legend(fontsize="x-small")
        return ax

    @staticmethod
    def _points(ax: Any, rows: list[dict[str, Any]], which: str, colour: str, marker: str) -> None:
        b = np.array([r["batch_size"] for r in rows], dtype=np.float64)
        m = np.array([r[f"measured_{which}"] for r in rows])
        lo = np.array([r[f"{which}_lo"] for r in rows])
        hi = np.array([r[f"{which}_hi"] for r in rows])
        ok = m > 0
        if ok.any():
            err = np.vstack([m[ok] - lo[ok], hi[ok] - m[ok]])
            ax.errorbar(
                b[ok],
                m[ok],
                yerr=err,
                fmt=marker,
                color=colour,
                capsize=3,
                mfc="none" if which == "replay" else colour,
            )


def _as_list(name: str, values: Any) -> list[Any]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {values!r}")
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence, got {values!r}")
    return arr.tolist()


def starvation(
    old_weights: Sequence[float] | float,
    batch_sizes: Sequence[int] | int,
    replay: Sequence[float] | float = 0.25,
    *,
    objective: Optional[ReverseKL] = None,
    slots: str = "bernoulli",
    separation: float = 4.0,
    old_mean_offset: float = 0.3,
    dim: int = 1,
    cov: Any = 1.0,
    batches: int = 100_000,
    rng: RngLike = 0,
    weight_param: str = "logit",
    threads: Optional[int] = None,
) -> StarvationStudy:
    """Old-mode starvation and the effect of replay on the old-mean gradient
    (docs: theory-reverse-kl, theory-starvation, docs: theory-pred-starvation, theory-pred-replay).

    For each α in ``old_weights``, B in ``batch_sizes`` and λ in ``replay``: target
    p* = α φ(·; 0, Σ) + (1−α) φ(·; Δ·u, Σ) (Δ = ``separation``, u = e₁ at unit Mahalanobis
    length); the model equals the target except its old mean, moved by ``old_mean_offset``
    (Mahalanobis units, along u) so that the old-mean gradient is non-zero. Its old weight is
    α, so a batch is starved with probability (docs: theory-starvation)
    (1−α)^B on-policy, ((1−λ)(1−α))^B with bernoulli replay, 0 with stratified replay
    (round(λB) ≥ 1) — ``predicted_*`` from :func:`mixforget.theory.starvation_probability`.

    Measured with :func:`mixforget.estimate_gradient` (``batches`` independent batches): the
    fraction of starved batches (no old-labelled sample; replay draws count as old) with a
    Wilson 95% interval, and the variance of the old-mean component of ĝ (with its standard
    error from the fourth moment) for the on-policy estimator (``objective`` with replay 0)
    and the replay estimator (replay λ, importance weights q/m, docs: theory-reverse-kl). The exact
    population gradients of both (:func:`mixforget.population_gradient`) are reported: with
    uncapped weights replay leaves them unchanged (docs: theory-reverse-kl, theory-pred-replay)
    while the variance of the estimate drops on starvation-prone settings (small α, small B).

    ``objective``: a :class:`~mixforget.ReverseKL` template (default ``ReverseKL()``, loo
    baseline; its replay fields are overridden). Returns a :class:`StarvationStudy`.
    """
    alphas = [as_probability("old_weights", a) for a in _as_list("old_weights", old_weights)]
    sizes_raw = _as_list("batch_sizes", batch_sizes)
    sizes = []
    for b in sizes_raw:
        if isinstance(b, numbers.Real) and not isinstance(b, bool) and float(b).is_integer():
            b = int(float(b))
        sizes.append(as_positive_int("batch_sizes", b))
    lams = [as_fraction("replay", v) for v in _as_list("replay", replay)]
    separation = as_positive_float("separation", separation)
    old_mean_offset = as_real("old_mean_offset", old_mean_offset)
    if slots not in REPLAY_SLOTS:
        raise ValueError(f"slots must be 'bernoulli' or 'stratified', got {slots!r}")
    if objective is None:
        objective = ReverseKL()
    if not isinstance(objective, ReverseKL):
        raise TypeError(
            f"objective must be a mixforget.ReverseKL template, got {type(objective).__name__}"
        )
    batches = as_positive_int("batches", batches, minimum=2)  # variances need two batches
    dim = as_positive_int("dim", dim)
    u, _ = _unit_direction(None, dim, cov)
    root = resolve_rng(rng)
    on_obj = dataclasses.replace(objective, replay=0.0, replay_slots=slots)

    grid = [(a, b) for a in alphas for b in sizes]
    children = root.spawn(len(grid))
    rows: list[dict[str, Any]] = []
    for (a, b), child in zip(grid, children):
        target = TwoMode(np.zeros(dim), separation * u, a, cov)
        model = target.replace(old_mean=old_mean_offset * u)
        streams = child.spawn(1 + len(lams))
        on_est = estimate_gradient(
            target,
            model,
            on_obj,
            batch_size=b,
            batches=batches,
            rng=streams[0],
            weight_param=weight_param,
            threads=threads,
        )
        on_pop = population_gradient(target, model, on_obj, weight_param=weight_param)
        on_flat = _flat_gradient(on_pop)
        g_on = on_est.gradients[:, 1]
        var_on, var_on_se = variance_with_stderr(g_on)
        k_on = int(on_est.starved.sum())
        p_on = float(theory.starvation_probability(a, b))
        for lam, stream in zip(lams, streams[1:]):
            rep_obj = dataclasses.replace(objective, replay=lam, replay_slots=slots)
            if lam == 0.0:
                rep_est, rep_pop = on_est, on_pop
            else:
                rep_est = estimate_gradient(
                    target,
                    model,
                    rep_obj,
                    batch_size=b,
                    batches=batches,
                    rng=stream,
                    weight_param=weight_param,
                    threads=threads,
                )
                rep_pop = population_gradient(target, model, rep_obj, weight_param=weight_param)
            rep_flat = _flat_gradient(rep_pop)
            g_rep = rep_est.gradients[:, 1]
            var_rep, var_rep_se = variance_with_stderr(g_rep)
            k_rep = int(rep_est.starved.sum())
            p_rep = float(theory.starvation_probability(a, b, lam, slots))
            ratio = var_on / var_rep if var_rep > 0 else math.inf
            log_se = (
                math.hypot(var_on_se / var_on, var_rep_se / var_rep)
                if var_on > 0 and var_rep > 0
                else math.nan
            )
            on_lo, on_hi = binomial_interval(k_on, batches)
            rep_lo, rep_hi = binomial_interval(k_rep, batches)
            rows.append(
                {
                    "old_weight": a,
                    "batch_size": b,
                    "replay": lam,
                    "slots": slots,
                    "batches": batches,
                    "predicted_onpolicy": p_on,
                    "measured_onpolicy": k_on / batches,
                    "onpolicy_lo": on_lo,
                    "onpolicy_hi": on_hi,
                    "z_onpolicy": _binomial_z(k_on, batches, p_on),
                    "predicted_replay": p_rep,
                    "measured_replay": k_rep / batches,
                    "replay_lo": rep_lo,
                    "replay_hi": rep_hi,
                    "z_replay": _binomial_z(k_rep, batches, p_rep),
                    "var_onpolicy": var_on,
                    "var_onpolicy_se": var_on_se,
                    "var_replay": var_rep,
                    "var_replay_se": var_rep_se,
                    "variance_ratio": ratio,
                    "log_variance_ratio_z": (math.log(ratio) / log_se)
                    if log_se and log_se > 0
                    else math.nan,
                    "mean_onpolicy": float(g_on.mean()),
                    "mean_onpolicy_se": float(g_on.std(ddof=1) / math.sqrt(batches)),
                    "mean_replay": float(g_rep.mean()),
                    "mean_replay_se": float(g_rep.std(ddof=1) / math.sqrt(batches)),
                    "population_onpolicy": float(on_flat[1]),
                    "population_replay": float(rep_flat[1]),
                    "population_max_abs_diff": float(np.max(np.abs(rep_flat - on_flat))),
                }
            )
    settings = {
        "objective": objective.as_dict(),
        "slots": slots,
        "separation": float(separation),
        "old_mean_offset": float(old_mean_offset),
        "dim": dim,
        "cov": np.asarray(cov, dtype=np.float64).tolist(),
        "batches": batches,
        "weight_param": weight_param,
        "seed": seed_record(root),
    }
    return StarvationStudy(rows=rows, settings=settings)


def _flat_gradient(grad: dict[str, Any]) -> np.ndarray:
    """(weight, old_mean…, new_mean…) as one vector, the order of GradientEstimates."""
    return np.concatenate(
        [
            np.atleast_1d(np.asarray(grad[k], dtype=np.float64))
            for k in ("weight", "old_mean", "new_mean")
        ]
    )


def _binomial_z(successes: int, trials: int, p: float) -> float:
    """(k/n − p) / sqrt(p(1−p)/n); with p ∈ {0, 1} it is 0 if k/n == p and ±inf otherwise."""
    diff = successes / trials - p
    var = p * (1.0 - p) / trials
    if var <= 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(var)


# ---------------------------------------------------------------------------------------
# drop vs gain (the trade-off of arXiv 2510.18874)
# ---------------------------------------------------------------------------------------
def objective_label(objective: Objective) -> str:
    """Compact name of an objective, e.g. ``"ForwardKL"``, ``"ReverseKL(replay=0.25)"``:
    :attr:`mixforget.Objective.label`."""
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a mixforget objective, got {type(objective).__name__}")
    return objective.label


def _family(objective: Objective) -> str:
    """'forward' for forward-KL training on data (ForwardKL, SDFT(direction='forward')),
    'reverse' for the on-policy / RL objectives (everything else)."""
    if isinstance(objective, ForwardKL) or (
        isinstance(objective, SDFT) and objective.direction == "forward"
    ):
        return "forward"
    return "reverse"


@dataclass(frozen=True)
class DropGainStudy:
    """Result of :func:`drop_vs_gain`.

    With the overlap accuracies of :func:`mixforget.theory.overlap_accuracy`,
    drop(t) = acc_old(0) − acc_old(t) and gain(t) = acc_new(t) − acc_new(0) per replicate
    (:meth:`mixforget.Trajectory.drop`, :meth:`mixforget.Trajectory.gain`).

    ``rows``: one dict per (objective, learning rate, threshold g) with keys
    ``objective`` (compact label, :func:`objective_label`), ``family`` ('forward' or
    'reverse'), ``lr``, ``threshold``, ``replicates`` (non-diverged replicates used),
    ``diverged``, ``reached`` / ``never_reached`` (replicates whose gain did / did not reach
    g within the run), ``drop_at_threshold_mean`` / ``_lo`` / ``_hi`` (drop at each
    reaching replicate's first recorded step with gain ≥ g: mean and 95% interval over the
    replicates that reached it; NaN when none did, the interval collapses to the mean with
    one), ``step_at_threshold_mean`` / ``_lo`` / ``_hi`` (that first step), and the run's
    end: ``final_drop_mean`` / ``_lo`` / ``_hi``, ``final_gain_mean`` / ``_lo`` / ``_hi``
    (over all non-diverged replicates; repeated on each threshold's row).

    ``paths``: one dict per (objective, learning rate) with ``objective``, ``family``,
    ``lr``, ``steps`` (n_rec,), ``drop_mean`` and ``gain_mean`` (n_rec,) — the mean drop and
    gain over the non-diverged replicates at every step (what :meth:`plot` draws).
    ``settings``: the target, the start, the objectives, the run settings and the seed.
    """

    rows: list[dict[str, Any]]
    paths: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """One numeric column of :attr:`rows` as an array."""
        return np.array([r[name] for r in self.rows], dtype=np.float64)

    def select(
        self,
        objective: Optional[str] = None,
        lr: Optional[float] = None,
        threshold: Optional[float] = None,
    ) -> list[dict[str, Any]]:
        """The rows matching the given label / learning rate / threshold (None: any)."""
        return [
            r
            for r in self.rows
            if (objective is None or r["objective"] == objective)
            and (lr is None or r["lr"] == lr)
            and (threshold is None or r["threshold"] == threshold)
        ]

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        """Markdown table, one line per (objective, learning rate, threshold): drop at the first
        step with gain ≥ threshold, that step, how many replicates never reached it, and the
        final drop and gain (means with 95% intervals)."""
        header = [
            "objective",
            "lr",
            "gain ≥",
            "drop at threshold [95%]",
            "first step [95%]",
            "never reached",
            "final drop [95%]",
            "final gain [95%]",
        ]

        def ci(r: dict[str, Any], key: str) -> str:
            mean = r[f"{key}_mean"]
            if math.isnan(mean):
                return "–"
            return f"{_fmt(mean, 3)} [{_fmt(r[f'{key}_lo'], 3)}, {_fmt(r[f'{key}_hi'], 3)}]"

        lines = [
            [
                r["objective"],
                _fmt(r["lr"], 3),
                _fmt(r["threshold"], 3),
                ci(r, "drop_at_threshold"),
                ci(r, "step_at_threshold"),
                f"{r['never_reached']}/{r['replicates']}",
                ci(r, "final_drop"),
                ci(r, "final_gain"),
            ]
            for r in self.rows
        ]
        s = self.settings
        note = (
            f"\n\n{s.get('replicates')} replicates per run, {s.get('steps')} steps, batch "
            f"{s.get('batch_size')}; drop = acc_old(0) − acc_old(t), gain = acc_new(t) − "
            "acc_new(0) (overlap accuracy); intervals are normal 95% over the replicates that "
            "reached the threshold."
        )
        return _markdown(header, lines) + note

    def plot(self, ax: Any = None) -> Any:
        """The trade-off figure: drop against gain. Per (objective, learning rate) the mean
        path (gain(t), drop(t)) over the run (line); at each threshold g the mean drop
        at the first step with gain ≥ g (filled marker at x = g, 95% bar); the final
        (gain, drop) of each learning rate (hollow marker), joined across learning rates by
        a dotted line per objective. Forward objectives: warm colours and solid lines; reverse /
        on-policy ones: cool colours and dashed lines; marker shape = learning rate.
        Returns the Axes."""
        ax = _axes(ax)
        labels = list(dict.fromkeys(p["objective"] for p in self.paths))
        lrs = sorted({p["lr"] for p in self.paths})
        markers = ("o", "s", "^", "D", "v", "P", "X", "*")
        warm = ("tab:red", "tab:orange", "tab:brown", "gold", "tab:pink")
        cool = ("tab:blue", "tab:purple", "tab:cyan", "tab:green", "navy")
        colours: dict[str, str] = {}
        counts = {"forward": 0, "reverse": 0}
        for label in labels:
            fam = next(p["family"] for p in self.paths if p["objective"] == label)
            palette = warm if fam == "forward" else cool
            colours[label] = palette[counts[fam] % len(palette)]
            counts[fam] += 1
        for label in labels:
            colour = colours[label]
            runs = [p for p in self.paths if p["objective"] == label]
            style = "-" if runs[0]["family"] == "forward" else "--"
            finals = []
            for p in sorted(runs, key=lambda p: p["lr"]):
                marker = markers[lrs.index(p["lr"]) % len(markers)]
                ax.plot(p["gain_mean"], p["drop_mean"], style, color=colour, lw=1.5, alpha=0.6)
                for r in self.select(label, p["lr"]):
                    mean = r["drop_at_threshold_mean"]
                    if math.isnan(mean):
                        continue
                    err = [[max(mean - r["drop_at_threshold_lo"], 0.0)]]
                    err.append([max(r["drop_at_threshold_hi"] - mean, 0.0)])
                    ax.errorbar(
                        [r["threshold"]],
                        [mean],
                        yerr=np.array(err),
                        fmt=marker,
                        color=colour,
                        capsize=3,
                        ms=7,
                    )
                row = self.select(label, p["lr"])[0]
                finals.append((row["final_gain_mean"], row["final_drop_mean"]))
                ax.plot(
                    [row["final_gain_mean"]],
                    [row["final_drop_mean"]],
                    marker,
                    color=colour,
                    mfc="none",
                    ms=8,
                    mew=1.5,
                )
            xs, ys = zip(*finals)
            ax.plot(xs, ys, ":", color=colour, lw=1.0, alpha=0.8)
            ax.plot([], [], style, color=colour, lw=1.5, label=label)
        for i, lr in enumerate(lrs):
            ax.plot([], [], markers[i % len(markers)], color="0.4", label=f"lr = {_fmt(lr, 3)}")
        ax.plot([], [], "o", color="0.4", label="drop at first gain ≥ threshold")
        ax.plot([], [], "o", color="0.4", mfc="none", label="end of run")
        ax.axhline(0.0, color="0.7", lw=0.8, zorder=0)
        ax.set_xlabel("gain = acc_new(t) − acc_new(0)")
        ax.set_ylabel("drop = acc_old(0) − acc_old(t)")
        thr = ", ".join(_fmt(t, 3) for t in self.settings.get("thresholds", []))
        ax.set_title(f"forgetting vs learning (gain thresholds {thr})")
        ax.legend(fontsize="x-small")
        return ax


def _as_objectives(objectives: Any) -> list[Objective]:
    items = [objectives] if isinstance(objectives, Objective) else objectives
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
        raise TypeError(
            "objectives must be a mixforget objective or a non-empty sequence of them, "
            f"got {objectives!r}"
        )
    out = list(items)
    for obj in out:
        if not isinstance(obj, Objective):
            raise TypeError(f"objectives must hold mixforget objectives, got {type(obj).__name__}")
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"objectives must be distinct, got {labels}")
    return out


def _as_lr_grid(lrs: Any, n_objectives: int) -> list[list[float]]:
    """One list of learning rates per objective, from a shared list or one list each."""

    def check(values: Any) -> list[float]:
        out = []
        for v in _as_list("lrs", values):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"lrs must hold numbers, got {v!r}")
            lr = float(v)
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"lrs must be finite numbers > 0, got {v!r}")
            out.append(lr)
        if len(set(out)) != len(out):
            raise ValueError(f"lrs must not repeat a value, got {out}")
        return out

    if isinstance(lrs, Sequence) and len(lrs) > 0 and all(isinstance(v, Sequence) for v in lrs):
        if len(lrs) != n_objectives:
            raise ValueError(
                f"lrs given per objective must have one list per objective ({n_objectives}), "
                f"got {len(lrs)}"
            )
        return [check(v) for v in lrs]
    shared = check(lrs)
    return [shared] * n_objectives


def _as_thresholds(thresholds: Any) -> list[float]:
    out = []
    for v in _as_list("thresholds", thresholds):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"thresholds must hold numbers, got {v!r}")
        g = float(v)
        if not (math.isfinite(g) and 0.0 < g <= 1.0):
            raise ValueError(f"thresholds must lie in (0, 1] (gains of accuracy), got {v!r}")
        out.append(g)
    if len(set(out)) != len(out):
        raise ValueError(f"thresholds must not repeat a value, got {out}")
    return sorted(out)


def _interval_dict(prefix: str, values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {f"{prefix}_mean": math.nan, f"{prefix}_lo": math.nan, f"{prefix}_hi": math.nan}
    mean, lo, hi = mean_interval(values)
    return {f"{prefix}_mean": float(mean), f"{prefix}_lo": float(lo), f"{prefix}_hi": float(hi)}


def _first_reaching(gain: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the first record with gain ≥ threshold per replicate (rows of ``gain``,
    shape (R, n_rec)); −1 where it is never reached."""
    reached = np.asarray(gain) >= threshold
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), first, -1)


def drop_vs_gain(
    target: TwoMode,
    start: TwoMode,
    objectives: Objective | Sequence[Objective],
    lrs: Sequence[float] | Sequence[Sequence[float]] | float,
    thresholds: Sequence[float] | float = 0.9,
    *,
    steps: int = 200,
    batch_size: int = 1000,
    replicates: int = 200,
    rng: RngLike = 0,
    weight_param: str = "logit",
    lr_scale: Optional[dict[str, float]] = None,
    threads: Optional[int] = None,
    progress: bool = False,
    **simulate_kwargs: Any,
) -> DropGainStudy:
    """Forgetting against learning, the trade-off of arXiv 2510.18874 ("Retaining by Doing"):
    how much of the old task an objective has lost by the time it has learnt the new one.

    For each objective and each learning rate, :func:`mixforget.simulate` trains
    ``replicates`` copies of ``start`` for ``steps`` steps with every step recorded
    (``record_every=1``, so that "first step" is exact), and per replicate the overlap
    accuracies (:func:`mixforget.theory.overlap_accuracy`)

        acc_old = ∫ min(α* p*_old, α q_old) dx / α*,
        acc_new = ∫ min((1 − α*) p*_new, (1 − α) q_new) dx / (1 − α*)

    give drop(t) = acc_old(0) − acc_old(t) and gain(t) = acc_new(t) − acc_new(0). For each
    threshold g the drop at the first recorded step with gain ≥ g is averaged over the
    replicates that reach g (95% interval), and the replicates that never do are counted.
    Diverged replicates (:attr:`mixforget.Trajectory.diverged`) are left out and counted.

    Parameters
    ----------
    target, start : TwoMode
        The world p* and the start model q_0.
    objectives : Objective or sequence of Objective
        The objectives to compare (distinct); labelled by :func:`objective_label`.
    lrs : float, sequence of float, or one sequence per objective
        Learning rates: shared by every objective, or ``lrs[i]`` for ``objectives[i]``
        (e.g. ``[[0.15, 0.01], [0.01]]`` for the reference's forward and RL runs).
    thresholds : float or sequence of float in (0, 1]
        Gain thresholds g.
    steps, batch_size, replicates, rng, weight_param, lr_scale, threads, progress
        As in :func:`mixforget.simulate`; each run gets its own stream spawned from ``rng``.
    **simulate_kwargs
        Further keyword arguments of :func:`mixforget.simulate` (e.g. ``memory_limit``);
        ``record_every`` is fixed to 1.

    Returns
    -------
    DropGainStudy
    """
    check_models(target, start)
    objs = _as_objectives(objectives)
    lr_grid = _as_lr_grid(lrs, len(objs))
    thr = _as_thresholds(thresholds)
    steps = as_positive_int("steps", steps)
    replicates = as_positive_int("replicates", replicates)
    if "record_every" in simulate_kwargs:
        raise ValueError("drop_vs_gain records every step; do not pass record_every")
    root = resolve_rng(rng)
    runs = [(obj, lr) for obj, lrs_obj in zip(objs, lr_grid) for lr in lrs_obj]
    children = root.spawn(len(runs))
    rows: list[dict[str, Any]] = []
    paths: list[dict[str, Any]] = []
    for (obj, lr), child in zip(runs, children):
        traj = simulate(
            target,
            start,
            obj,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            replicates=replicates,
            record_every=1,
            rng=child,
            weight_param=weight_param,
            lr_scale=lr_scale,
            threads=threads,
            progress=progress,
            **simulate_kwargs,
        )
        keep = ~traj.diverged
        acc = traj.overlap_accuracy()[keep]
        drop = acc[:, :1, 0] - acc[:, :, 0]
        gain = acc[:, :, 1] - acc[:, :1, 1]
        label, fam = obj.label, _family(obj)
        final = {
            **_interval_dict("final_drop", drop[:, -1]),
            **_interval_dict("final_gain", gain[:, -1]),
        }
        for g in thr:
            first = _first_reaching(gain, g)
            hit = first >= 0
            drop_at = drop[np.flatnonzero(hit), first[hit]]
            rows.append(
                {
                    "objective": label,
                    "family": fam,
                    "lr": lr,
                    "threshold": g,
                    "replicates": int(keep.sum()),
                    "diverged": int(traj.diverged.sum()),
                    "reached": int(hit.sum()),
                    "never_reached": int((~hit).sum()),
                    **_interval_dict("drop_at_threshold", drop_at),
                    **_interval_dict("step_at_threshold", traj.steps[first[hit]].astype(float)),
                    **final,
                }
            )
        paths.append(
            {
                "objective": label,
                "family": fam,
                "lr": lr,
                "steps": traj.steps,
                "drop_mean": drop.mean(axis=0) if drop.size else np.full(traj.steps.size, np.nan),
                "gain_mean": gain.mean(axis=0) if gain.size else np.full(traj.steps.size, np.nan),
            }
        )
    settings = {
        "target": target.to_dict(),
        "start": start.to_dict(),
        "objectives": [o.as_dict() for o in objs],
        "lrs": lr_grid,
        "thresholds": thr,
        "steps": steps,
        "batch_size": int(batch_size),
        "replicates": replicates,
        "weight_param": weight_param,
        "lr_scale": lr_scale,
        "simulate_kwargs": dict(simulate_kwargs),
        "seed": seed_record(root),
    }
    return DropGainStudy(rows=rows, paths=paths, settings=settings)
