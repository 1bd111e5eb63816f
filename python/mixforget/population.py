"""Population (infinite-batch) flow and exact gradients (docs: theory-population)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Optional

import numpy as np

from . import _core
from ._chunks import timed_chunks
from ._problem import (
    build_problem,
    check_lr,
    check_lr_scale,
    check_models,
    check_objective,
    check_steps,
    check_train_scales,
    check_weight_param,
    population_flow_bytes,
)
from ._validate import check_output_size
from .mixture import TwoMode, component_scales
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
    objective = check_objective(objective)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    problem = build_problem(
        target,
        model,
        objective,
        weight_param,
        1.0,
        check_lr_scale(None, train_scales),
        train_scales,
        scale_param,
    )
    flat = _core.population_gradient(problem)
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
    lr: float = 0.05,
    record_every: int = 10,
    weight_param: str = "logit",
    lr_scale: Optional[Mapping[str, float]] = None,
    train_scales: bool = False,
    scale_param: str = "direct",
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
    NotImplementedError for d > 1 (each step would need a quadrature over all d dimensions)."""
    check_models(target, start)
    objective = check_objective(objective)
    steps, record_every = check_steps(steps, record_every)
    lr = check_lr(lr)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    scale = check_lr_scale(lr_scale, train_scales)
    if train_scales and target.dim > 1:
        raise NotImplementedError(
            "population_flow with train_scales=True is implemented for d = 1 only (every step "
            f"would need a quadrature over all d dimensions), got d = {target.dim}; "
            "population_gradient supports d <= 3"
        )
    check_output_size(
        "the recorded flow and quadrature buffers",
        population_flow_bytes(target.dim, steps, record_every),
        f"raise record_every (now {record_every}) or lower steps (now {steps})",
    )
    problem = build_problem(
        target, start, objective, weight_param, lr, scale, train_scales, scale_param
    )
    began = time.perf_counter()
    d = target.dim
    n_records = steps // record_every + 1
    # the whole output up front: an impossible size fails here (MemoryError) before any work
    old_weight = np.empty((1, n_records))
    old_mean = np.empty((1, n_records, d))
    new_mean = np.empty((1, n_records, d))
    old_weight[:, 0] = start.old_weight
    old_mean[:, 0] = start.old_mean
    new_mean[:, 0] = start.new_mean
    scales = np.empty((1, n_records, 2))
    scales[:, :] = np.array(component_scales(start))
    flow = _core.PopulationFlow(problem)
    k = 1
    for n in timed_chunks(steps, 1):
        rec = flow.advance(n, record_every)
        w, o, nw, sc = rec.weight, rec.old_mean, rec.new_mean, rec.scale
        m = w.shape[1]
        old_weight[:, k : k + m] = w
        old_mean[:, k : k + m] = o
        new_mean[:, k : k + m] = nw
        if train_scales:
            scales[:, k : k + m] = sc
        k += m
    return Trajectory(
        steps=np.arange(0, steps + 1, record_every),
        old_weight=old_weight,
        old_mean=old_mean,
        new_mean=new_mean,
        starved=np.zeros((1, n_records), dtype=np.int64),
        diverged=np.array([flow.diverged()]),
        target=target,
        old_scale=scales[:, :, 0],
        new_scale=scales[:, :, 1],
        meta={
            "objective": objective.as_dict(),
            "start": start.to_dict(),
            "steps": steps,
            "lr": lr,
            "record_every": record_every,
            "weight_param": weight_param,
            "lr_scale": scale,
            "train_scales": train_scales,
            "scale_param": scale_param,
            "population": True,
            "wall_time": time.perf_counter() - began,
        },
    )
