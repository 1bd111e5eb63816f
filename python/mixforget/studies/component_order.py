"""Which old component goes first (docs: theory-k-components, issue 20): a K = 3 model with
two old skills — one far from the new task, one at Mahalanobis distance Δ from it — trained
on new-task data by forward KL (or any K-component objective), in the population limit.

Each old component j is timed by its *mass half-life*, the first step at which w_j falls to
half its start, and by the *drift* ‖μ_j − μ*_j‖ of its mean at the end. Far from the new task
(Δ large) both old components lose mass at the rate of their own weight (the logit ODE of
docs: theory-k-components); close to it, the near component absorbs responsibility for new
data: its mass is kept (or grows) while its mean drifts toward the new task — forgetting by
drift instead of by mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..mixture import Mixture
from ..objectives import ForwardKL, ReverseKL
from ._shared import _as_list, _axes, _fmt, _markdown, _to_pandas

__all__ = ["ComponentOrderStudy", "which_component_goes_first"]

#: distance of the far old component from the new task (Mahalanobis units)
FAR = 10.0

_COLUMNS = (
    "separation",
    "near_weight",
    "far_weight",
    "half_life_far",
    "half_life_near",
    "first",
    "final_weight_far",
    "final_weight_near",
    "drift_near",
)


@dataclass(frozen=True)
class ComponentOrderStudy:
    """Rows (one per separation × near weight) of :func:`which_component_goes_first`:
    ``half_life_far`` / ``half_life_near`` the first step with w_j ≤ w_j(0)/2 (NaN if never
    within ``steps``), ``first`` which old component reached it first ('far', 'near', 'tie'
    or 'neither'), the final weights and the near component's final drift."""

    rows: list[dict[str, Any]]
    objective: str
    steps: int
    lr: float

    def to_pandas(self) -> Any:
        return _to_pandas(self.rows)

    def to_markdown(self) -> str:
        lines = [[_fmt(row[c]) for c in _COLUMNS] for row in self.rows]
        return _markdown(_COLUMNS, lines)

    def plot(self, ax: Any = None) -> Any:
        """Half-lives against Δ, one colour per near weight: solid the near component,
        dashed the far one (a missing point: mass never halved within the run)."""
        ax = _axes(ax)
        weights = sorted({row["near_weight"] for row in self.rows})
        colours = [f"C{i}" for i in range(len(weights))]
        for w, colour in zip(weights, colours):
            rows = [r for r in self.rows if r["near_weight"] == w]
            sep = [r["separation"] for r in rows]
            ax.plot(sep, [r["half_life_near"] for r in rows], "o-", color=colour,
                    label=f"near old component, w = {w:g}")  # fmt: skip
            ax.plot(sep, [r["half_life_far"] for r in rows], "s--", color=colour,
                    label=f"far old component, w = {rows[0]['far_weight']:g}")  # fmt: skip
        ax.set_xlabel("separation Δ of the near old component from the new task")
        ax.set_ylabel("mass half-life (steps)")
        ax.set_title(f"which old component goes first ({self.objective}, population flow)")
        ax.legend(fontsize=8)
        return ax


def _half_life(steps: np.ndarray, weights: np.ndarray) -> float:
    below = np.nonzero(weights <= weights[0] / 2.0)[0]
    return float(steps[below[0]]) if below.size else math.nan


def which_component_goes_first(
    separations: Any = (1.0, 2.0, 3.0, 5.0, 8.0),
    near_weights: Any = (0.1, 0.2, 0.3),
    old_mass: float = 0.4,
    objective: Optional[ForwardKL | ReverseKL] = None,
    steps: int = 4000,
    lr: float = 0.05,
    record_every: int = 10,
) -> ComponentOrderStudy:
    """Mass half-life and drift of two old components under training on a new task (docs:
    theory-k-components), population flow of :func:`mixforget.population_flow`.

    The target and start are the same K = 3 mixture in d = 1 with unit variances: the new
    task's component at 0 (weight 1 − ``old_mass``), the far old component at −10, the near
    one at −Δ; the old mass splits as (``old_mass`` − w_near, w_near). The objective
    (default ``ForwardKL()``, training on the new component only) trains all three.

    Parameters
    ----------
    separations : sequence of float
        Δ > 0, the near old component's distance from the new task.
    near_weights : sequence of float
        The near component's weight, each in (0, old_mass).
    old_mass : float
        The two old components' total weight, in (0, 1).
    objective : ForwardKL or ReverseKL, optional
        Any K-component objective (replay spreads over the two old components).
    steps, lr, record_every
        The flow's length, step size and record interval (half-lives are on this grid).
    """
    seps = [float(v) for v in _as_list("separations", separations)]
    nears = [float(v) for v in _as_list("near_weights", near_weights)]
    if not all(math.isfinite(s) and 0.0 < s < FAR for s in seps):
        raise ValueError(f"separations must lie in (0, {FAR:g}), got {seps}")
    if not (isinstance(old_mass, (int, float)) and 0.0 < float(old_mass) < 1.0):
        raise ValueError(f"old_mass must lie in (0, 1), got {old_mass!r}")
    if not all(0.0 < w < old_mass for w in nears):
        raise ValueError(f"near_weights must lie in (0, old_mass = {old_mass:g}), got {nears}")
    objective = ForwardKL() if objective is None else objective
    if not isinstance(objective, (ForwardKL, ReverseKL)):
        raise TypeError(
            f"objective must be ForwardKL or ReverseKL (K = 3), got {type(objective).__name__}"
        )
    from ..population import population_flow

    rows: list[dict[str, Any]] = []
    for sep in seps:
        for w_near in nears:
            w_far = float(old_mass) - w_near
            mixture = Mixture([w_far, w_near, 1.0 - old_mass], [[-FAR], [-sep], [0.0]], 1.0)
            run = population_flow(
                mixture, mixture, objective, steps=steps, lr=lr, record_every=record_every
            )
            w = run.weights[0]
            t_far, t_near = _half_life(run.steps, w[:, 0]), _half_life(run.steps, w[:, 1])
            if math.isnan(t_far) and math.isnan(t_near):
                first = "neither"
            elif t_far == t_near:
                first = "tie"
            elif math.isnan(t_near) or (not math.isnan(t_far) and t_far < t_near):
                first = "far"
            else:
                first = "near"
            rows.append(
                dict(
                    separation=sep,
                    near_weight=w_near,
                    far_weight=w_far,
                    half_life_far=t_far,
                    half_life_near=t_near,
                    first=first,
                    final_weight_far=float(w[-1, 0]),
                    final_weight_near=float(w[-1, 1]),
                    drift_near=float(abs(run.means[0, -1, 1, 0] + sep)),
                )
            )
    return ComponentOrderStudy(rows, objective.label, int(steps), float(lr))
