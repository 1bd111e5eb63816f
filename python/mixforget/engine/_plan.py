"""The settings of one training run, validated, and the ``meta`` record built from them.

:class:`RunPlan` is what the driver needs to know about a run whatever runs it: the models,
the objective, the schedule (steps, records), the update (lr, groups, parametrisations,
sgd or natural) and,
for finite-batch runs, the batch, the replicates, the threads and the seed. Its
:meth:`RunPlan.meta` is the one builder of ``Trajectory.meta``: the same keys mean the same
thing for the Rust simulator, the population flow and every twin backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .._problem import (
    RunSettings,
    check_floors,
    check_lr,
    check_lr_scale,
    check_models,
    check_objective,
    check_steps,
    check_train_scales,
    check_update,
    check_weight_param,
    population_flow_bytes,
)
from .._rng import seed_record
from .._validate import check_output_size
from ..mixture import TwoMode
from ..objectives import Objective

__all__ = ["RunPlan", "check_flow", "plan_of_run"]


@dataclass(frozen=True)
class RunPlan:
    """Validated settings of one run. ``population`` runs (the exact flow) have one replicate
    and no batch, threads or seed (``batch_size``, ``threads``, ``seed`` are None)."""

    target: TwoMode
    start: TwoMode
    objective: Objective
    steps: int
    record_every: int
    lr: float
    weight_param: str
    lr_scale: dict[str, float]
    train_scales: bool
    scale_param: str
    update: str = "sgd"
    replicates: int = 1
    batch_size: Optional[int] = None
    threads: Optional[int] = None
    seed: Optional[np.random.SeedSequence] = None

    @property
    def population(self) -> bool:
        """True for the population (infinite-batch) flow."""
        return self.batch_size is None

    @property
    def n_records(self) -> int:
        """Records at steps 0, record_every, …, steps."""
        return self.steps // self.record_every + 1

    def meta(
        self, wall_time: float, implementation: str, extra: Optional[Mapping[str, Any]] = None
    ) -> dict[str, Any]:
        """``Trajectory.meta``: the objective, the start model and the settings (the keys of
        :class:`mixforget.simulate`'s arguments), the seed record that repeats the run,
        ``wall_time`` (seconds of stepping), ``implementation`` ('rust' or the twin's
        backend), then ``extra`` (the twin's backend, device, precision). Population flows
        carry ``population: True`` instead of the batch, replicate, seed and thread keys."""
        meta: dict[str, Any] = {
            "objective": self.objective.as_dict(),
            "start": self.start.to_dict(),
        }
        meta["steps"] = self.steps
        if not self.population:
            meta["batch_size"] = self.batch_size
        meta["lr"] = self.lr
        if not self.population:
            meta["replicates"] = self.replicates
        meta.update(
            record_every=self.record_every,
            weight_param=self.weight_param,
            lr_scale=self.lr_scale,
            train_scales=self.train_scales,
            scale_param=self.scale_param,
            update=self.update,
        )
        if self.population:
            meta["population"] = True
        if self.seed is not None:
            meta["seed"] = seed_record(self.seed)
        meta["wall_time"] = wall_time
        if self.threads is not None:
            meta["threads"] = self.threads
        meta["implementation"] = implementation
        meta.update(extra or {})
        return meta


def plan_of_run(
    target: TwoMode, start: TwoMode, run: RunSettings, seed: np.random.SeedSequence
) -> RunPlan:
    """The plan of a finite-batch run from the checks of ``_problem.check_run``."""
    return RunPlan(
        target=target,
        start=start,
        objective=run.objective,
        steps=run.steps,
        record_every=run.record_every,
        lr=run.lr,
        weight_param=run.weight_param,
        lr_scale=run.lr_scale,
        train_scales=run.train_scales,
        scale_param=run.scale_param,
        update=run.update,
        replicates=run.replicates,
        batch_size=run.batch_size,
        threads=run.threads,
        seed=seed,
    )


def check_flow(
    target: Any,
    start: Any,
    objective: Any,
    steps: Any,
    lr: Any,
    record_every: Any,
    weight_param: Any,
    lr_scale: Any,
    train_scales: Any,
    scale_param: Any,
    update: Any = "sgd",
) -> RunPlan:
    """Every check of a population_flow call, before any work, including the memory limit on
    the records and the quadrature buffer."""
    check_models(target, start)
    objective = check_objective(objective, dim=target.dim)
    steps, record_every = check_steps(steps, record_every)
    lr = check_lr(lr)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    update = check_update(update)
    check_floors(start, weight_param, train_scales, scale_param)
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
    return RunPlan(
        target=target,
        start=start,
        objective=objective,
        steps=steps,
        record_every=record_every,
        lr=lr,
        weight_param=weight_param,
        lr_scale=scale,
        train_scales=train_scales,
        scale_param=scale_param,
        update=update,
    )
