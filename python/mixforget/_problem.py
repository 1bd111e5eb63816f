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
    get_memory_limit,
    in_flight,
    resolve_threads,
)
from .mixture import TwoMode
from .objectives import OAPL, KLRegularizedRL, Objective, TTTDiscover

WEIGHT_PARAMS = ("logit", "direct")
LR_GROUPS = ("weight", "old_mean", "new_mean")
#: The learning-rate groups of the component scales σ_o, σ_n (with ``train_scales=True``).
SCALE_LR_GROUPS = ("old_scale", "new_scale")
SCALE_PARAMS = ("direct", "log")


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


def check_objective(objective: Any, batch_size: Optional[int] = None) -> Objective:
    if not isinstance(objective, Objective):
        raise TypeError(
            "objective must be one of mixforget.ForwardKL, ReverseKL, SDFT, TTTDiscover, OAPL, "
            "NewModeREINFORCE, KLRegularizedRL; "
            f"got {type(objective).__name__}"
        )
    if isinstance(objective, (TTTDiscover, OAPL)) and batch_size == 1:
        # group-relative advantages: with one sample per group the advantage (TTT: e_1 over
        # an empty leave-one-out mean; OAPL: r_1 − V̂ = 0) carries no signal.
        raise ValueError(
            f"batch_size must be >= 2 with {type(objective).__name__} (the group is the batch; "
            "with one sample the group-relative gradient is identically 0), got 1"
        )
    if (
        isinstance(objective, KLRegularizedRL)
        and objective.advantage == "group"
        and batch_size == 1
    ):
        raise ValueError(
            "batch_size must be >= 2 with KLRegularizedRL(advantage='group') (a group of one "
            "has no spread to normalise by: the gradient is identically 0), got 1"
        )
    if (
        isinstance(objective, TTTDiscover)
        and objective.adaptive
        and batch_size is not None
        and batch_size < 3
    ):
        raise ValueError(
            "batch_size must be >= 3 with TTTDiscover(beta='adaptive') (KL = ln 2 needs G >= 3), "
            f"got {batch_size}"
        )
    return objective


def check_weight_param(weight_param: Any) -> str:
    if weight_param not in WEIGHT_PARAMS:
        raise ValueError(f"weight_param must be one of {list(WEIGHT_PARAMS)}, got {weight_param!r}")
    return str(weight_param)


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
) -> RunSettings:
    """Every check of a simulate call, before any work (docs: design-reliability), including the
    memory limit on the recorded output."""
    check_models(target, start)
    batch_size = as_positive_int("batch_size", batch_size)
    objective = check_objective(objective, batch_size)
    steps, record_every = check_steps(steps, record_every)
    lr = check_lr(lr)
    replicates = as_positive_int("replicates", replicates)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
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
    )
