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
from .._problem import check_models
from .._rng import RngLike, resolve_rng, seed_record
from .._validate import (
    as_fraction,
    as_positive_float,
    as_positive_int,
    as_probability,
    as_real,
    describe_type,
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
        if s.get("problem") == "user":
            target, start = TwoMode(**s["target"]), TwoMode(**s["start"])
            problem = f"your problem: target {target!r}, model {start!r}"
        else:
            problem = (
                f"target Δ = {_fmt(s.get('separation'), 3)}, model old mean offset "
                f"{_fmt(s.get('old_mean_offset'), 3)}σ (so the old-mean gradient is non-zero)"
            )
        note = f"\n\n{s.get('batches')} batches per setting; slots = {s.get('slots')}; {problem}."
        return _markdown(header, lines) + note

    def plot(self, ax: Any = None, against: Optional[str] = None) -> Any:
        """Measured starvation rates (markers, Wilson 95% bars) with the theory curves,
        drawn by :func:`mixforget.plot.plot_starvation` from :attr:`rows` (the same function
        and the same column names).

        ``against``: the x axis, ``"batch_size"``, ``"old_weight"`` or ``"replay"``; by
        default the batch size when the study has several, else the old weight when it has
        several, else the replay fraction (the on-policy rate is the point at λ = 0), so a
        study at one batch size still shows the theory as a curve. Returns the Axes."""
        from ..plot import plot_starvation

        return plot_starvation(
            self.rows, ax=_axes(ax), slots=self.settings.get("slots", "bernoulli"), against=against
        )


#: The old weight of the built-in problem when none is given: a batch of B = 8 misses the old
#: mode with probability (1 − 0.05)^8 ≈ 0.66, so the default study starves visibly.
DEFAULT_OLD_WEIGHT = 0.05
#: Independent batches per setting when neither ``replicates`` nor ``batches`` is given.
DEFAULT_REPLICATES = 100_000


def starvation(
    old_weights: Sequence[float] | float | None = None,
    batch_sizes: Sequence[int] | int = 8,
    replay: Sequence[float] | float = 0.25,
    *,
    target: Optional[TwoMode] = None,
    start: Optional[TwoMode] = None,
    replicates: Optional[int] = None,
    objective: Optional[ReverseKL] = None,
    slots: str = "bernoulli",
    separation: Optional[float] = None,
    old_mean_offset: Optional[float] = None,
    dim: Optional[int] = None,
    cov: Any = None,
    batches: Optional[int] = None,
    rng: RngLike = 0,
    weight_param: str = "logit",
    threads: Optional[int] = None,
) -> StarvationStudy:
    """Old-mode starvation and the effect of replay on the old-mean gradient
    (docs: theory-reverse-kl, theory-starvation, theory-pred-starvation, theory-pred-replay).

    On your own problem, e.g. 10 000 batches of B = 8 with replay 0.1::

        target = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.05, cov=1.0)
        start = target.replace(new_mean=[0.5])
        study = mf.studies.starvation(target=target, start=start, batch_sizes=8,
                                      replay=0.1, replicates=10_000)
        print(study.to_markdown())
        study.plot()

    **What makes a batch starve** is the old weight α of the model the batches are drawn
    from (``start.old_weight``): a batch of B samples holds no old-mode sample with
    probability (1−α)^B on-policy, ((1−λ)(1−α))^B with bernoulli replay λ, 0 with stratified
    replay (round(λB) ≥ 1) — ``predicted_*`` from
    :func:`mixforget.theory.starvation_probability` (docs: theory-starvation). At B = 8 that is
    0.66 for α = 0.05 but 1.5e-5 for the docs' default problem (α = 0.75): starvation is a
    small-α, small-B effect.

    The problem, two ways:

    - ``target`` (and ``start``, the model the gradient is estimated at; default the
      target itself): your :class:`~mixforget.TwoMode` problem. ``old_weights``, if given,
      replaces the model's old weight (one setting per α); by default it is
      ``start.old_weight``.
    - no ``target``: a built-in problem per α in ``old_weights`` (default
      :data:`DEFAULT_OLD_WEIGHT` = 0.05): target p* = α φ(·; 0, Σ) + (1−α) φ(·; Δ·u, Σ)
      (Δ = ``separation``, default 4; u = e₁ at unit Mahalanobis length; ``dim`` default 1;
      ``cov`` default 1) and a model equal to the target except its old mean, moved by
      ``old_mean_offset`` (default 0.3, Mahalanobis units, along u) so that the old-mean
      gradient is non-zero.

    Measured with :func:`mixforget.estimate_gradient` (``replicates`` independent batches per
    setting, default 100 000; ``batches`` is the older name of the same number, still
    accepted): the fraction of starved batches (no old-labelled sample; replay draws count as
    old) with a Wilson 95% interval, and the variance of the old-mean component of ĝ (with its
    standard error from the fourth moment) for the on-policy estimator (``objective`` with
    replay 0) and the replay estimator (replay λ, importance weights q/m,
    docs: theory-reverse-kl). The exact population gradients of both
    (:func:`mixforget.population_gradient`) are reported: with uncapped weights replay leaves
    them unchanged (docs: theory-reverse-kl, theory-pred-replay) while the variance of the
    estimate drops on starvation-prone settings (small α, small B).

    ``objective``: a :class:`~mixforget.ReverseKL` instance used as a template (default
    ``ReverseKL()``, loo baseline; its replay fields are overridden). Returns a
    :class:`StarvationStudy`.
    """
    sizes, lams = _check_sizes_and_replay(batch_sizes, replay)
    if slots not in REPLAY_SLOTS:
        raise ValueError(f"slots must be 'bernoulli' or 'stratified', got {slots!r}")
    objective = _check_template(objective)
    n = _replicates(replicates, batches)
    builtin = {"separation": separation, "old_mean_offset": old_mean_offset, "dim": dim}
    builtin["cov"] = cov
    if target is None:
        if start is not None:
            raise ValueError("start needs its target: pass target=… as well")
        problems, problem_settings = _builtin_problems(old_weights, **builtin)
    else:
        given = sorted(k for k, v in builtin.items() if v is not None)
        if given:
            raise ValueError(
                f"{', '.join(given)} describe the built-in problem; with target=… they do not "
                "apply (build the TwoMode you want instead)"
            )
        problems, problem_settings = _user_problems(target, start, old_weights)
    root = resolve_rng(rng)
    on_obj = dataclasses.replace(objective, replay=0.0, replay_slots=slots)
    grid = [(p, b) for p in problems for b in sizes]
    rows: list[dict[str, Any]] = []
    for ((tgt, model), b), child in zip(grid, root.spawn(len(grid))):
        streams = child.spawn(1 + len(lams))
        a = model.old_weight
        cell = (tgt, model, b, n, weight_param, threads)
        on_est, on_pop = _measure(*cell, on_obj, streams[0])
        on = _estimator_summary(on_est, on_pop, n, theory.starvation_probability(a, b))
        for lam, stream in zip(lams, streams[1:]):
            rep_obj = dataclasses.replace(objective, replay=lam, replay_slots=slots)
            # without replay the replay estimator is the on-policy one: reuse its batches
            rep_est, rep_pop = (on_est, on_pop) if lam == 0.0 else _measure(*cell, rep_obj, stream)
            rep = _estimator_summary(
                rep_est, rep_pop, n, theory.starvation_probability(a, b, lam, slots)
            )
            rows.append(
                {
                    "old_weight": a,
                    "batch_size": b,
                    "replay": lam,
                    "slots": slots,
                    "batches": n,
                    **_comparison_columns(on, rep, n),
                }
            )
    settings = {
        "objective": objective.as_dict(),
        "slots": slots,
        **problem_settings,
        "batches": n,
        "replicates": n,
        "weight_param": weight_param,
        "seed": seed_record(root),
    }
    return StarvationStudy(rows=rows, settings=settings)


def _check_template(objective: Any) -> ReverseKL:
    """The ReverseKL template of the study (``ReverseKL()`` when None)."""
    if objective is None:
        return ReverseKL()
    if not isinstance(objective, ReverseKL):
        raise TypeError(
            f"objective must be a mixforget.ReverseKL template, got {describe_type(objective)}"
        )
    return objective


def _replicates(replicates: Optional[int], batches: Optional[int]) -> int:
    """The number of batches per setting: ``replicates``, or its older name ``batches``."""
    if replicates is not None and batches is not None and replicates != batches:
        raise ValueError(
            f"replicates and batches name the same number; got replicates={replicates!r}, "
            f"batches={batches!r}"
        )
    name, value = ("batches", batches) if replicates is None else ("replicates", replicates)
    if value is None:
        return DEFAULT_REPLICATES
    return as_positive_int(name, value, minimum=2)  # variances need two batches


def _builtin_problems(
    old_weights: Any, separation: Any, old_mean_offset: Any, dim: Any, cov: Any
) -> tuple[list[tuple[TwoMode, TwoMode]], dict[str, Any]]:
    """(target, model) per α of the built-in problem, and its settings."""
    weights = DEFAULT_OLD_WEIGHT if old_weights is None else old_weights
    alphas = [as_probability("old_weights", a) for a in _as_list("old_weights", weights)]
    separation = as_positive_float("separation", 4.0 if separation is None else separation)
    offset = as_real("old_mean_offset", 0.3 if old_mean_offset is None else old_mean_offset)
    dim = as_positive_int("dim", 1 if dim is None else dim)
    cov = 1.0 if cov is None else cov
    u, _ = _unit_direction(None, dim, cov)
    problems = []
    for a in alphas:
        target = TwoMode(np.zeros(dim), separation * u, a, cov)
        problems.append((target, target.replace(old_mean=offset * u)))
    settings = {
        "problem": "built-in",
        "separation": float(separation),
        "old_mean_offset": float(offset),
        "dim": dim,
        "cov": np.asarray(cov, dtype=np.float64).tolist(),
    }
    return problems, settings


def _user_problems(
    target: Any, start: Any, old_weights: Any
) -> tuple[list[tuple[TwoMode, TwoMode]], dict[str, Any]]:
    """(target, model) per α of the user's problem (the start's own α by default), and its
    settings."""
    start = target if start is None else start
    check_models(target, start)
    if old_weights is None:
        models = [start]
    else:
        alphas = [as_probability("old_weights", a) for a in _as_list("old_weights", old_weights)]
        models = [start.replace(old_weight=a) for a in alphas]
    settings = {
        "problem": "user",
        "target": target.to_dict(),
        "start": start.to_dict(),
        "dim": target.dim,
    }
    return [(target, m) for m in models], settings


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


def _check_sizes_and_replay(batch_sizes: Any, replay: Any) -> tuple[list[int], list[float]]:
    """The study's batch sizes (>= 1, integral floats accepted) and replay fractions in
    [0, 1), checked."""
    sizes = []
    for b in _as_list("batch_sizes", batch_sizes):
        if isinstance(b, numbers.Real) and not isinstance(b, bool) and float(b).is_integer():
            b = int(float(b))
        sizes.append(as_positive_int("batch_sizes", b))
    lams = [as_fraction("replay", v) for v in _as_list("replay", replay)]
    return sizes, lams


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
