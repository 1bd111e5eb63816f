"""The KL-regularised RL studies (docs: theory-kl-regularized, theory-kl-studies): what β, the
KL direction, the per-sample KL estimator and the advantage do to the old mass and to the
gradient, measured beside the closed forms.

- :func:`kl_old_weight_vs_beta` — the old weight at convergence against β for both KL
  directions (label rewards, well-separated K = 2): the closed forms
  (:func:`~mixforget.theory.reverse_kl_regularized_weights`,
  :func:`~mixforget.theory.forward_kl_regularized_weights`), the population flow and
  finite-batch means with 95% intervals.
- :func:`kl_estimator_bias` — the one-step gradient at small batch sizes B for the k1, k3
  and exact KL estimators under leave-one-out and group advantages: mean, bias and variance
  of :func:`mixforget.estimate_gradient` against the exact gradient of E_q[r] − β KL
  (:func:`mixforget.population_gradient` of the unbiased estimator) and against each
  estimator's own population limit.

Three-component selection (w_2/w_3 under plain vs natural steps) needs the K-component engine
and is not here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._rng import RngLike, resolve_rng, seed_record
from .._stats import mean_interval
from .._validate import as_positive_float, as_positive_int, as_probability
from ..mixture import TwoMode
from ..objectives import KLRegularizedRL
from ..population import population_flow, population_gradient
from ..simulate import estimate_gradient, simulate
from ..theory import kl_regularized_old_weight
from ._shared import _as_list, _axes, _fmt, _markdown, _to_pandas

__all__ = [
    "KLBetaStudy",
    "KLEstimatorStudy",
    "kl_estimator_bias",
    "kl_old_weight_vs_beta",
]

_KLS = ("reverse", "forward")


@dataclass(frozen=True)
class KLBetaStudy:
    """Old weight at convergence against β (:func:`kl_old_weight_vs_beta`). ``rows``: one per
    (kl, beta) with ``closed_form``, ``population`` (the flow's final α), ``batch_mean``,
    ``batch_lo``, ``batch_hi`` (95% interval over replicates), ``batch_se``, the step ``lr``
    and ``diverged`` (replicates that left the runaway bound, excluded from the mean)."""

    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> Any:
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        header = ["KL", "β", "closed form α*", "population flow", "finite batch (95% CI)"]
        lines = [
            [
                r["kl"],
                _fmt(r["beta"]),
                _fmt(r["closed_form"], 6),
                _fmt(r["population"], 6),
                f"{_fmt(r['batch_mean'], 6)} [{_fmt(r['batch_lo'], 6)}, {_fmt(r['batch_hi'], 6)}]",
            ]
            for r in self.rows
        ]
        return _markdown(header, lines)

    def plot(self, ax: Any = None) -> Any:
        """α at convergence against β (log axes): closed forms as lines, the population flow
        as open markers, finite-batch means with their 95% intervals as error bars."""
        ax = _axes(ax)
        for kl, colour in zip(_KLS, ("C0", "C3")):
            rows = [r for r in self.rows if r["kl"] == kl]
            if not rows:
                continue
            beta = np.array([r["beta"] for r in rows])
            fine = np.geomspace(beta.min(), beta.max(), 200)
            s = self.settings
            closed = [
                kl_regularized_old_weight(s["reference_weight"], s["reward_gap"], b, kl)
                for b in fine
            ]
            ax.plot(fine, closed, color=colour, label=f"{kl} KL: closed form")
            ax.plot(
                beta,
                [r["population"] for r in rows],
                "o",
                mfc="none",
                color=colour,
                label=f"{kl} KL: population flow",
            )
            mean = np.array([r["batch_mean"] for r in rows])
            err = np.array([[m - r["batch_lo"], r["batch_hi"] - m] for m, r in zip(mean, rows)])
            ax.errorbar(
                beta,
                mean,
                yerr=err.T,
                fmt="x",
                color=colour,
                capsize=3,
                label=f"{kl} KL: finite batch (B = {s['batch_size']})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        betas = sorted({r["beta"] for r in self.rows})
        ax.set_xticks(betas, [f"{b:g}" for b in betas])
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
        ax.set_xlabel("β (KL weight)")
        ax.set_ylabel("old weight α at convergence")
        ax.axhline(
            self.settings["reference_weight"],
            color="grey",
            lw=0.8,
            ls=":",
            label="reference old weight",
        )
        ax.set_title("KL-regularised RL: old mass kept against β")
        ax.legend(fontsize="small")
        return ax


def kl_old_weight_vs_beta(
    betas: Sequence[float] = (0.2, 0.5, 1.0, 2.0, 5.0),
    kls: Sequence[str] = _KLS,
    reference_weight: float = 0.75,
    reward_gap: float = 1.0,
    separation: float = 12.0,
    steps: int = 1000,
    lr: float = 0.5,
    batch_size: int = 16,
    replicates: int = 64,
    rng: RngLike = 0,
    update: str = "natural",
) -> KLBetaStudy:
    """The old weight at convergence of ``KLRegularizedRL`` (label rewards r_old = 0,
    r_new = ``reward_gap``, reference = start = the target with old weight
    ``reference_weight``, modes ``separation`` σ apart in d = 1) for each β and KL direction:
    the closed form, the population flow and ``replicates`` finite-batch runs after ``steps``
    steps (``update='natural'`` by default: plain steps need ~10⁵ steps at small β, docs:
    theory-natural-gradient). The natural field contracts the logit at rate ≈ β about the
    optimum, so the step at β is lr·min(1, 1/β) (stable for lr < 2). Natural finite-batch
    steps are unstable where B·α* ≪ 1 (β = 0.1: α* = 1.4e-4; a batch with one old sample
    moves η by ~lr/(B α)), which is why the default β start at 0.2 (docs: theory-kl-studies).
    Returns a :class:`KLBetaStudy`."""
    beta_values = [as_positive_float("betas", b) for b in _as_list("betas", betas)]
    kl_values = list(kls)
    for kl in kl_values:
        if kl not in _KLS:
            raise ValueError(f"kls must hold 'reverse' and/or 'forward', got {kl!r}")
    alpha = as_probability("reference_weight", reference_weight)
    gap = as_positive_float("reward_gap", reward_gap)
    half = 0.5 * as_positive_float("separation", separation)
    world = TwoMode(old_mean=[-half], new_mean=[half], old_weight=alpha)
    seq = resolve_rng(rng)
    seeds = seq.spawn(len(beta_values) * len(kl_values))
    rows = []
    for i, (kl, beta) in enumerate((k, b) for k in kl_values for b in beta_values):
        objective = KLRegularizedRL(reward_new=gap, beta=beta, kl=kl)
        step = lr * min(1.0, 1.0 / beta)
        common: dict[str, Any] = {
            "steps": steps,
            "lr": step,
            "record_every": steps,
            "update": update,
        }
        flow = population_flow(world, world, objective, **common)
        run = simulate(
            world,
            world,
            objective,
            batch_size=batch_size,
            replicates=replicates,
            rng=seeds[i],
            **common,
        )
        kept = run.old_weight[~run.diverged, -1]
        mean, lo, hi = mean_interval(kept) if kept.size else (math.nan,) * 3
        se = float(kept.std(ddof=1) / math.sqrt(kept.size)) if kept.size > 1 else math.nan
        rows.append(
            {
                "kl": kl,
                "beta": beta,
                "closed_form": kl_regularized_old_weight(alpha, gap, beta, kl),
                "population": float(flow.old_weight[0, -1]),
                "batch_mean": float(mean),
                "batch_lo": float(lo),
                "batch_hi": float(hi),
                "batch_se": se,
                "lr": step,
                "diverged": int(run.diverged.sum()),
            }
        )
    settings = {
        "reference_weight": alpha,
        "reward_gap": gap,
        "separation": 2 * half,
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "replicates": replicates,
        "update": update,
        "seed": seed_record(seq),
    }
    return KLBetaStudy(rows, settings)


#: (kl_estimator, advantage) pairs of the estimator study.
ESTIMATORS = (("exact", "loo"), ("k1", "loo"), ("k3", "loo"), ("exact", "group"), ("k1", "group"))


@dataclass(frozen=True)
class KLEstimatorStudy:
    """One-step gradient of the weight at small B (:func:`kl_estimator_bias`). ``rows``: one
    per (kl_estimator, advantage, batch_size) with the weight entry's ``mean`` and ``se``
    over the batches, ``limit`` (that estimator's population limit), ``true`` (the exact
    gradient of E_q[r] − β KL), ``bias`` = mean − true and its ``z`` = bias/se,
    ``finite_batch_bias`` = mean − limit, ``variance`` of the weight entry and
    ``total_variance`` (the trace over every entry)."""

    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> Any:
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        header = [
            "estimator",
            "advantage",
            "B",
            "mean ĝ_η (± SE)",
            "limit",
            "bias vs exact",
            "z",
            "Var ĝ_η",
            "tr Var ĝ",
        ]
        lines = [
            [
                r["kl_estimator"],
                r["advantage"],
                str(r["batch_size"]),
                f"{_fmt(r['mean'], 5)} ± {_fmt(r['se'], 2)}",
                _fmt(r["limit"], 5),
                _fmt(r["bias"], 3),
                f"{r['z']:.1f}",
                _fmt(r["variance"], 4),
                _fmt(r["total_variance"], 4),
            ]
            for r in self.rows
        ]
        return _markdown(header, lines)


def kl_estimator_bias(
    target: TwoMode | None = None,
    model: TwoMode | None = None,
    batch_sizes: Sequence[int] = (2, 4, 8, 16),
    estimators: Sequence[tuple[str, str]] = ESTIMATORS,
    beta: float = 0.5,
    batches: int = 20_000,
    rng: RngLike = 0,
) -> KLEstimatorStudy:
    """Bias and variance of the one-step gradient of ``KLRegularizedRL(reference='target',
    beta=beta)`` at ``model`` (label rewards; the target p* as a fixed reference away from the
    model, so that the KL estimators differ) for each (kl_estimator, advantage) of
    ``estimators`` and each batch size: ``batches`` estimates from
    :func:`mixforget.estimate_gradient` against :func:`mixforget.population_gradient` of the
    same estimator (its limit) and of the unbiased one ('exact', 'loo': the true gradient).
    Default problem: the overlapping 1-d pair of tests/test_kl_regularized.py. Returns a
    :class:`KLEstimatorStudy`."""
    if target is None:
        target = TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.6)
    if model is None:
        model = target.replace(old_mean=[-1.7], new_mean=[0.5], old_weight=0.5)
    sizes = [as_positive_int("batch_sizes", b) for b in _as_list("batch_sizes", batch_sizes)]
    beta = as_positive_float("beta", beta)
    batches = as_positive_int("batches", batches, minimum=2)
    seq = resolve_rng(rng)
    seeds = iter(seq.spawn(len(sizes) * len(estimators)))

    def objective(kl_estimator: str, advantage: str) -> KLRegularizedRL:
        return KLRegularizedRL(
            reference="target", beta=beta, kl_estimator=kl_estimator, advantage=advantage
        )

    true = float(population_gradient(target, model, objective("exact", "loo"))["weight"])
    rows = []
    for kl_estimator, advantage in estimators:
        o = objective(kl_estimator, advantage)
        limit = float(population_gradient(target, model, o)["weight"])
        for b in sizes:
            est = estimate_gradient(
                target, model, o, batch_size=b, batches=batches, rng=next(seeds)
            )
            g = est.gradients
            mean, se = float(g[:, 0].mean()), float(g[:, 0].std(ddof=1) / math.sqrt(len(g)))
            rows.append(
                {
                    "kl_estimator": kl_estimator,
                    "advantage": advantage,
                    "batch_size": b,
                    "mean": mean,
                    "se": se,
                    "limit": limit,
                    "true": true,
                    "bias": mean - true,
                    "z": (mean - true) / se,
                    "finite_batch_bias": mean - limit,
                    "variance": float(g[:, 0].var(ddof=1)),
                    "total_variance": float(g.var(axis=0, ddof=1).sum()),
                }
            )
    settings = {
        "beta": beta,
        "batches": batches,
        "target": target.to_dict(),
        "model": model.to_dict(),
        "seed": seed_record(seq),
    }
    return KLEstimatorStudy(rows, settings)
