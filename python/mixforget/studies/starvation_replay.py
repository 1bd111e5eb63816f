"""The starvation study (docs: theory-starvation, theory-pred-starvation, theory-pred-replay):
predicted vs measured starvation rates with and without replay, and the variance of the
old-mean gradient estimate next to the population gradient."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .. import theory
from .._defaults import REPLAY_SLOTS
from .._rng import RngLike, resolve_rng, seed_record
from .._validate import (
    as_fraction,
    as_positive_float,
    as_positive_int,
    as_probability,
    as_real,
)
from ..mixture import TwoMode
from ..objectives import ReverseKL
from ..population import population_gradient
from ..simulate import estimate_gradient
from ._shared import (
    _as_list,
    _axes,
    _fmt,
    _markdown,
    _to_pandas,
    _unit_direction,
    binomial_interval,
    variance_with_stderr,
)

_DASHES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))


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
    alphas, sizes, lams = _check_grid(old_weights, batch_sizes, replay)
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

        cell = (target, model, b, batches, weight_param, threads)
        on_est, on_pop = _measure(*cell, on_obj, streams[0])
        on = _estimator_summary(on_est, on_pop, batches, theory.starvation_probability(a, b))
        for lam, stream in zip(lams, streams[1:]):
            rep_obj = dataclasses.replace(objective, replay=lam, replay_slots=slots)
            # without replay the replay estimator is the on-policy one: reuse its batches
            rep_est, rep_pop = (on_est, on_pop) if lam == 0.0 else _measure(*cell, rep_obj, stream)
            p_rep = theory.starvation_probability(a, b, lam, slots)
            rep = _estimator_summary(rep_est, rep_pop, batches, p_rep)
            rows.append(
                {
                    "old_weight": a,
                    "batch_size": b,
                    "replay": lam,
                    "slots": slots,
                    "batches": batches,
                    **_comparison_columns(on, rep, batches),
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


def _measure(
    target: TwoMode,
    model: TwoMode,
    batch_size: int,
    batches: int,
    weight_param: str,
    threads: Optional[int],
    objective: ReverseKL,
    stream: np.random.SeedSequence,
) -> tuple[Any, Any]:
    """The gradient estimates of ``objective`` at ``model`` (``batches`` batches drawn from
    ``stream``) and its population gradient."""
    est = estimate_gradient(
        target,
        model,
        objective,
        batch_size=batch_size,
        batches=batches,
        rng=stream,
        weight_param=weight_param,
        threads=threads,
    )
    return est, population_gradient(target, model, objective, weight_param=weight_param)


def _check_grid(
    old_weights: Any, batch_sizes: Any, replay: Any
) -> tuple[list[float], list[int], list[float]]:
    """The study's grid, checked: old weights in (0, 1), batch sizes >= 1 (integral floats
    accepted), replay fractions in [0, 1)."""
    alphas = [as_probability("old_weights", a) for a in _as_list("old_weights", old_weights)]
    sizes = []
    for b in _as_list("batch_sizes", batch_sizes):
        if isinstance(b, numbers.Real) and not isinstance(b, bool) and float(b).is_integer():
            b = int(float(b))
        sizes.append(as_positive_int("batch_sizes", b))
    lams = [as_fraction("replay", v) for v in _as_list("replay", replay)]
    return alphas, sizes, lams


def _estimator_summary(est: Any, pop: Any, batches: int, predicted: Any) -> dict[str, Any]:
    """One estimator of a study cell: its old-mean gradient samples and their variance, its
    starved batches with their Wilson interval and predicted rate, its population gradient."""
    g = est.gradients[:, 1]
    var, var_se = variance_with_stderr(g)
    starved = int(est.starved.sum())
    lo, hi = binomial_interval(starved, batches)
    return {
        "g": g,
        "var": var,
        "var_se": var_se,
        "starved": starved,
        "lo": lo,
        "hi": hi,
        "predicted": float(predicted),
        "population": _flat_gradient(pop),
    }


def _comparison_columns(on: dict[str, Any], rep: dict[str, Any], batches: int) -> dict[str, Any]:
    """The columns of one row: on-policy vs replay starvation (predicted, measured, interval,
    z), gradient variances and their ratio, gradient means and population gradients."""
    ratio = on["var"] / rep["var"] if rep["var"] > 0 else math.inf
    log_se = (
        math.hypot(on["var_se"] / on["var"], rep["var_se"] / rep["var"])
        if on["var"] > 0 and rep["var"] > 0
        else math.nan
    )
    return {
        "predicted_onpolicy": on["predicted"],
        "measured_onpolicy": on["starved"] / batches,
        "onpolicy_lo": on["lo"],
        "onpolicy_hi": on["hi"],
        "z_onpolicy": _binomial_z(on["starved"], batches, on["predicted"]),
        "predicted_replay": rep["predicted"],
        "measured_replay": rep["starved"] / batches,
        "replay_lo": rep["lo"],
        "replay_hi": rep["hi"],
        "z_replay": _binomial_z(rep["starved"], batches, rep["predicted"]),
        "var_onpolicy": on["var"],
        "var_onpolicy_se": on["var_se"],
        "var_replay": rep["var"],
        "var_replay_se": rep["var_se"],
        "variance_ratio": ratio,
        "log_variance_ratio_z": (math.log(ratio) / log_se) if log_se and log_se > 0 else math.nan,
        "mean_onpolicy": float(on["g"].mean()),
        "mean_onpolicy_se": float(on["g"].std(ddof=1) / math.sqrt(batches)),
        "mean_replay": float(rep["g"].mean()),
        "mean_replay_se": float(rep["g"].std(ddof=1) / math.sqrt(batches)),
        "population_onpolicy": float(on["population"][1]),
        "population_replay": float(rep["population"][1]),
        "population_max_abs_diff": float(np.max(np.abs(rep["population"] - on["population"]))),
    }


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
