"""Population (infinite-batch) flow and exact gradients (docs: theory-population): the front
doors of the G → ∞ limit, run by the engine's driver with the Rust population stepper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np

from ._defaults import DEFAULT_LR
from ._problem import check_models, check_objective, check_train_scales, check_weight_param
from .engine import check_flow, drive
from .engine._rust import RustPopulationFlow, rust_population_gradient
from .mixture import TwoMode
from .objectives import Objective
from .results import Trajectory

__all__ = ["population_flow", "population_gradient"]


def population_gradient(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    weight_param: str = "logit",
    train_scales: bool = False,
    scale_param: str = "direct",
) -> dict[str, np.ndarray | float]:
    """Exact gradient of the objective's loss at ``model`` (the G → ∞ limit of its estimator).

    Equal covariance: expectations are quadratures on the affine span of the means in
    whitened coordinates (k ≤ 3 dimensions), exact in the other directions
    (docs: theory-population); accuracy ~1e-11 for smooth integrands (trapezoidal rule with
    spacing ≤ 0.75/(Δ|u_j|) per axis for each mixture's separation Δ along u); the
    discontinuous ``new_indicator`` reward (d = 1) is integrated second-order across its jump
    (~1e-8), and a ``weight_cap`` puts a kink in the integrand (~1e-6). Unequal covariance:
    d = 1 only, else NotImplementedError. TTT-Discover with adaptive β or the indicator reward,
    and OAPL with the indicator reward, have a closed-form limit only when the means span all d
    dimensions (NotImplementedError otherwise). Returns {weight, old_mean (d,), new_mean (d,)}.

    ``train_scales=True`` (see :func:`mixforget.simulate`) adds ``old_scale`` and
    ``new_scale``, the derivatives with respect to σ_k ('direct') or log σ_k ('log'); the
    expectations are then quadratures over all d dimensions (no span reduction, since the
    scale score depends on every direction), available for d <= 3 (NotImplementedError
    beyond).
    """
    check_models(target, model, "model")
    objective = check_objective(objective, dim=target.dim)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    flat = rust_population_gradient(
        target, model, objective, weight_param, train_scales, scale_param
    )
    d = target.dim
    out: dict[str, np.ndarray | float] = {
        "weight": float(flat[0]),
        "old_mean": flat[1 : 1 + d],
        "new_mean": flat[1 + d : 1 + 2 * d],
    }
    if train_scales:
        out["old_scale"] = float(flat[1 + 2 * d])
        out["new_scale"] = float(flat[2 + 2 * d])
    return out


def population_flow(
    target: TwoMode,
    start: TwoMode,
    objective: Objective,
    steps: int = 2000,
    lr: float = DEFAULT_LR,
    record_every: int = 10,
    weight_param: str = "logit",
    lr_scale: Optional[Mapping[str, float]] = None,
    train_scales: bool = False,
    scale_param: str = "direct",
    update: str = "sgd",
) -> Trajectory:
    """Deterministic flow θ ← θ − lr·m⊙∇L(θ) with the exact gradients of
    :func:`population_gradient` (docs: theory-population), including the objective's extra state
    (SDFT teacher EMA, OAPL lag refresh). The reference that finite-batch means track.
    Returns a Trajectory with one replicate (starved counts are 0); ``diverged`` when the
    parameters became non-finite or left the runaway bound (see :func:`mixforget.simulate`).
    Raises ValueError before any work when the records plus the quadrature buffer (at most
    ~460 MB) would exceed the memory limit (:func:`mixforget.set_memory_limit`). Runs in
    calls of about 0.1 s (the same numbers for any cut): Ctrl-C raises KeyboardInterrupt
    within about 0.5 s.

    ``train_scales=True`` (see :func:`mixforget.simulate`) is exact for d = 1 and raises
    NotImplementedError for d > 1 (each step would need a quadrature over all d dimensions).

    ``update='natural'`` preconditions every step with the complete-data Fisher of the
    current model, as in :func:`mixforget.simulate` (docs: theory-natural-gradient)."""
    plan = check_flow(
        target,
        start,
        objective,
        steps,
        lr,
        record_every,
        weight_param,
        lr_scale,
        train_scales,
        scale_param,
        update,
    )
    return drive(plan, lambda: RustPopulationFlow(plan))
