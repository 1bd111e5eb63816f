"""Turning validated Python objects into the Rust engine's TrainingProblem (one place for
every entry point: simulate, estimate_gradient, population_flow, population_gradient)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import _core
from ._validate import (
    QUADRATURE_BYTES,
    as_positive_int,
    batch_buffer_bytes,
    check_output_size,
    describe_type,
    get_memory_limit,
    in_flight,
    resolve_threads,
)
from .mixture import TwoMode, component_scales
from .objectives import OBJECTIVES, Objective

WEIGHT_PARAMS = ("logit", "direct")
LR_GROUPS = ("weight", "old_mean", "new_mean")
#: The learning-rate groups of the component scales σ_o, σ_n (with ``train_scales=True``).
SCALE_LR_GROUPS = ("old_scale", "new_scale")
SCALE_PARAMS = ("direct", "log")
#: How a step uses the gradient: plain steps, or steps preconditioned by the complete-data
#: Fisher of the current model (docs: theory-natural-gradient).
UPDATES = ("sgd", "natural")


def check_models(target: Any, model: Any, model_name: str = "start") -> None:
    if not isinstance(target, TwoMode):
        raise TypeError(f"target must be a mixforget.TwoMode, got {type(target).__name__}")
    if not isinstance(model, TwoMode):
        raise TypeError(f"{model_name} must be a mixforget.TwoMode, got {type(model).__name__}")
    if target.dim != model.dim:
        raise ValueError(
            f"target and {model_name} must have the same dimension, got {target.dim} and "
            f"{model.dim}"
        )


def check_objective(
    objective: Any, batch_size: Optional[int] = None, dim: Optional[int] = None
) -> Objective:
    if not isinstance(objective, Objective):
        kinds = ", ".join(cls.kind for cls in OBJECTIVES)
        raise TypeError(
            f"objective must be one of mixforget.{kinds}; got {describe_type(objective)}"
        )
    minimum, needed_by = objective.min_batch_size()
    if batch_size is not None and batch_size < minimum:
        raise ValueError(f"batch_size must be >= {minimum} with {needed_by}, got {batch_size}")
    if dim is not None:
        objective.check_dimension(dim)
    return objective


def check_weight_param(weight_param: Any) -> str:
    if weight_param not in WEIGHT_PARAMS:
        raise ValueError(f"weight_param must be one of {list(WEIGHT_PARAMS)}, got {weight_param!r}")
    return str(weight_param)


def check_update(update: Any) -> str:
    """``update``: 'sgd' (θ ← θ − lr·m⊙ĝ) or 'natural' (θ ← θ − lr·m⊙F⁻¹ĝ, F the
    complete-data Fisher of the current model, exact per component)."""
    if not isinstance(update, str) or update not in UPDATES:
        raise ValueError(f"update must be one of {list(UPDATES)}, got {update!r}")
    return update


def check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a positive number, got {lr!r}")
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    return lr


def check_lr_scale(
    lr_scale: Optional[Mapping[str, Any]], train_scales: bool = False
) -> dict[str, float]:
    """Per-group learning-rate multipliers m; missing groups are 1, 0 freezes a group. The scale
    groups ``old_scale``, ``new_scale`` exist (and are returned) only with ``train_scales``."""
    groups = LR_GROUPS + SCALE_LR_GROUPS if train_scales else LR_GROUPS
    scale = dict.fromkeys(groups, 1.0)
    if lr_scale is None:
        return scale
    if not isinstance(lr_scale, Mapping):
        raise TypeError(
            f"lr_scale must be a dict with keys {list(groups)}, got {type(lr_scale).__name__}"
        )
    for key, value in lr_scale.items():
        if key in SCALE_LR_GROUPS and not train_scales:
            raise ValueError(
                f"lr_scale[{key!r}] sets the learning rate of a component scale, which needs "
                "train_scales=True"
            )
        if key not in groups:
            raise ValueError(f"lr_scale key must be one of {list(groups)}, got {key!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(float(value))
            or float(value) < 0
        ):
            raise ValueError(f"lr_scale[{key!r}] must be a finite number >= 0, got {value!r}")
        scale[key] = float(value)
    return scale


def check_train_scales(train_scales: Any, scale_param: Any) -> tuple[bool, str]:
    """``train_scales`` (a bool) and ``scale_param`` ('direct' or 'log')."""
    if not isinstance(train_scales, (bool, np.bool_)):
        raise TypeError(f"train_scales must be a bool, got {type(train_scales).__name__}")
    if scale_param not in SCALE_PARAMS:
        raise ValueError(f"scale_param must be one of {list(SCALE_PARAMS)}, got {scale_param!r}")
    return bool(train_scales), str(scale_param)


#: The documented floors of the update (rust/model/params.rs, the twin's _step.py): the direct
#: weight is clamped to [DIRECT_EPS, 1 − DIRECT_EPS], a direct scale σ floored at SCALE_FLOOR.
DIRECT_EPS = 1e-3
SCALE_FLOOR = 1e-3


def check_floors(start: TwoMode, weight_param: str, train_scales: bool, scale_param: str) -> None:
    """Refuse (ValueError naming the argument and the floor) a start that the update's
    documented floors would silently move after the first step: an old weight outside the
    clamp [1e-3, 1 − 1e-3] of ``weight_param='direct'``, a component scale below the floor
    1e-3 of ``train_scales=True`` with ``scale_param='direct'`` (docs: design-reliability)."""
    alpha = start.old_weight
    if weight_param == "direct" and not DIRECT_EPS <= alpha <= 1.0 - DIRECT_EPS:
        raise ValueError(
            f"start.old_weight = {alpha!r} lies outside [{DIRECT_EPS:g}, 1 - {DIRECT_EPS:g}], "
            "the clamp of weight_param='direct' (it would be moved there silently after the "
            "first step): choose a start inside it or weight_param='logit'"
        )
    if train_scales and scale_param == "direct":
        for which, sigma in zip(("old", "new"), component_scales(start)):
            if sigma < SCALE_FLOOR:
                raise ValueError(
                    f"the start's {which} component scale det(Σ)^(1/(2d)) = {sigma:g} lies "
                    f"below {SCALE_FLOOR:g}, the floor of train_scales=True with "
                    "scale_param='direct' (it would be raised there silently after the first "
                    "step): choose a larger start covariance or scale_param='log'"
                )


def check_steps(steps: Any, record_every: Any) -> tuple[int, int]:
    steps = as_positive_int("steps", steps)
    record_every = as_positive_int("record_every", record_every)
    if record_every > steps or steps % record_every:
        raise ValueError(
            "record_every must divide steps (1 <= record_every <= steps), got "
            f"record_every={record_every}, steps={steps}"
        )
    return steps, record_every


def build_problem(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    weight_param: str,
    lr: float,
    lr_scale: Mapping[str, float],
    train_scales: bool = False,
    scale_param: str = "direct",
    update: str = "sgd",
) -> Any:
    """The Rust TrainingProblem: target p*, model covariances and start state θ_0 (with
    ``train_scales``, component k's covariance is σ_k²·S_k, S_k = Σ_k/det(Σ_k)^{1/d}, σ_k from
    det(Σ_k)^{1/(2d)}). The objective dataclass itself crosses the binding (read by attribute
    name)."""
    return _core.TrainingProblem(
        target_weight=target.old_weight,
        target_means=np.stack([target.old_mean, target.new_mean]),
        target_covs=[target.old_cov, target.new_cov],
        model_covs=[model.old_cov, model.new_cov],
        start_weight=model.old_weight,
        start_means=np.stack([model.old_mean, model.new_mean]),
        objective=objective,
        weight_param=weight_param,
        lr=lr,
        lr_scale=dict(lr_scale),
        train_scales=train_scales,
        scale_param=scale_param,
        update=update,
    )


def records_bytes(dim: int, n_rec: int, replicates: int) -> int:
    """Bytes of recorded states: old weight, starved count, old and new means per record,
    twice (the chunks the core returns, then the concatenated trajectory)."""
    return 2 * replicates * n_rec * (8 * 2 + 16 * dim)


def simulate_bytes(
    dim: int, steps: int, batch_size: int, replicates: int, record_every: int, threads: int
) -> int:
    """Every buffer a simulate call allocates: the records and the work buffers of the
    replicates running at once (one batch each)."""
    return records_bytes(dim, steps // record_every + 1, replicates) + batch_buffer_bytes(
        batch_size, dim, in_flight(threads, replicates)
    )


def estimate_gradient_bytes(dim: int, batch_size: int, batches: int, threads: int) -> int:
    """Every buffer an estimate_gradient call allocates: gradients and counts, and the work
    buffers of the batch chunks (256 batches each) running at once."""
    return batches * (2 * dim + 2) * 8 + batch_buffer_bytes(
        batch_size, dim, in_flight(threads, -(-batches // 256))
    )


def population_flow_bytes(dim: int, steps: int, record_every: int) -> int:
    """Every buffer a population_flow call allocates: the records and the quadrature."""
    return records_bytes(dim, steps // record_every + 1, 1) + QUADRATURE_BYTES


@dataclass(frozen=True)
class RunSettings:
    """Validated arguments of a finite-batch run (mf.simulate and its NumPy twin)."""

    objective: Objective
    steps: int
    batch_size: int
    lr: float
    replicates: int
    record_every: int
    weight_param: str
    lr_scale: dict[str, float]
    threads: int
    memory_limit: int
    train_scales: bool = False
    scale_param: str = "direct"
    update: str = "sgd"


def check_run(
    target: Any,
    start: Any,
    objective: Any,
    steps: Any,
    batch_size: Any,
    lr: Any,
    replicates: Any,
    record_every: Any,
    weight_param: Any,
    lr_scale: Any,
    threads: Any,
    progress: Any,
    memory_limit: Any,
    train_scales: Any = False,
    scale_param: Any = "direct",
    update: Any = "sgd",
) -> RunSettings:
    """Every check of a simulate call, before any work (docs: design-reliability), including the
    memory limit on the recorded output."""
    check_models(target, start)
    batch_size = as_positive_int("batch_size", batch_size)
    objective = check_objective(objective, batch_size, target.dim)
    steps, record_every = check_steps(steps, record_every)
    lr = check_lr(lr)
    replicates = as_positive_int("replicates", replicates)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    update = check_update(update)
    check_floors(start, weight_param, train_scales, scale_param)
    scale = check_lr_scale(lr_scale, train_scales)
    n_threads = resolve_threads(threads)
    memory_limit = (
        get_memory_limit()
        if memory_limit is None
        else as_positive_int("memory_limit", memory_limit)
    )
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
    check_output_size(
        "the recorded trajectory and batch buffers",
        simulate_bytes(target.dim, steps, batch_size, replicates, record_every, n_threads),
        f"raise record_every (now {record_every}), lower replicates (now {replicates}) "
        f"or batch_size (now {batch_size})",
        memory_limit,
    )
    return RunSettings(
        objective,
        steps,
        batch_size,
        lr,
        replicates,
        record_every,
        weight_param,
        scale,
        n_threads,
        memory_limit,
        train_scales,
        scale_param,
        update,
    )
