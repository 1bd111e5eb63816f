"""Population (infinite-batch) flow and exact gradients (docs: theory-population): the front
doors of the G → ∞ limit, run by the engine's driver with the Rust population stepper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from ._defaults import DEFAULT_LR
from ._mixture_population import MixturePopulationFlow, mixture_population_gradient
from ._problem import check_models, check_objective, check_train_scales, check_weight_param
from .engine import check_flow, drive
from .engine._mixture_plan import plan_mixture_gradient, plan_mixture_run
from .engine._mixture_route import two_mode_models
from .engine._rust import RustPopulationFlow, rust_population_gradient
from .mixture import Mixture, TwoMode
from .objectives import Objective
from .reference.mixture_engine import Components, MixtureParams, TargetSources
from .results import MixtureTrajectory, Trajectory

__all__ = ["population_flow", "population_gradient"]


def population_gradient(
    target: TwoMode | Mixture,
    model: TwoMode | Mixture,
    objective: Objective,
    weight_param: str = "logit",
    train_scales: bool = False,
    scale_param: str = "direct",
    new_components: Optional[Sequence[int]] = None,
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

    Mixtures (docs: theory-k-components): K = 2 gives the TwoMode's numbers; K ≥ 3
    (ForwardKL, ReverseKL) returns {logits (K−1,), means (K, d)}, the gradient with respect
    to the free softmax logits η and the means, by Gauss–Hermite quadrature on the span of
    the means (up to 3-D; NotImplementedError beyond).
    """
    models = two_mode_models(target, model, objective, new_components, "sgd", "model")
    if models is None:
        plan = plan_mixture_gradient(
            target,
            model,
            objective,
            new_components=new_components,
            weight_param=weight_param,
            train_scales=train_scales,
        )
        params = MixtureParams.of(plan.start, 1)
        g_eta, g_mu = mixture_population_gradient(
            plan, params, Components.of(plan.start), TargetSources(plan)
        )
        return {"logits": g_eta[0], "means": g_mu[0]}
    target, model = models
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
    target: TwoMode | Mixture,
    start: TwoMode | Mixture,
    objective: Objective,
    steps: int = 2000,
    lr: float = DEFAULT_LR,
    record_every: int = 10,
    weight_param: str = "logit",
    lr_scale: Optional[Mapping[str, float]] = None,
    train_scales: bool = False,
    scale_param: str = "direct",
    new_components: Optional[Sequence[int]] = None,
    update: str = "sgd",
) -> Trajectory | MixtureTrajectory:
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
    current model, as in :func:`mixforget.simulate` (docs: theory-natural-gradient).

    Mixtures as in :func:`mixforget.simulate`: K = 2 runs as the TwoMode, bit for bit; K ≥ 3
    (ForwardKL, ReverseKL; ``new_components``, ``update`` 'sgd' or 'natural') steps with
    the quadrature gradient of :func:`population_gradient` (same lr, steps, record_every)
    and returns a one-replicate :class:`~mixforget.results.MixtureTrajectory`."""
    models = two_mode_models(target, start, objective, new_components, update)
    if models is None:
        kplan = plan_mixture_run(
            target,
            start,
            objective,
            new_components=new_components,
            steps=steps,
            record_every=record_every,
            lr=lr,
            lr_scale=lr_scale,
            update=update,
            weight_param=weight_param,
            train_scales=train_scales,
        )
        return drive(kplan, lambda: MixturePopulationFlow(kplan))
    target, start = models
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
