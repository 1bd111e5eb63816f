"""The plan of a task sequence (docs: theory-sequences): :class:`Curriculum`, every setting of
``mixforget.sequence`` validated before any work, and the rule by which a task enters.

Tasks are the K components of a :class:`~mixforget.Mixture` (component j = task j). The
sequence has K − 1 training stages: stage s (1-based) trains task s on a model with the
s + 1 components of tasks 0 … s, the target being the mixture of tasks 0 … s (weights: the
tasks' weights renormalised, uniform, or given per stage). Task 0 is the pre-training: the
start of stage 1 is a K = 2 model "pre-trained on task 0", so a sequence of two tasks is one
plain :func:`mixforget.simulate` call.

Entry rule (stage s, the model has s components, task s enters): the new component gets
weight e = ``entry_weight`` (default 1/(s+1)), taken from the others in proportion to their
weights (w_j ← (1 − e) w_j), and mean μ*_s + ``start_offset``; every replicate keeps its own
carried state for the other components. Stage 1's start model is ``start`` when given, else
component 0 at task 0's mean with the entry rule applied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from .._problem import check_lr, check_steps
from .._validate import as_positive_int
from ..engine._mixture_plan import check_mixture_objective
from ..mixture import Mixture
from ..objectives import Objective
from .replay import Schedule, check_schedule, replay_schedule

__all__ = ["Curriculum", "make_curriculum"]


@dataclass(frozen=True)
class Curriculum:
    """Validated settings of a sequence: ``tasks`` (K components), per stage s = 1 … K−1 the
    target weights ``stage_weights[s−1]`` (s+1,), the objective with its resolved
    ``replay_mix`` (s,), ``steps``, ``lr``, ``batch_size``; the entry rule
    (``start_offset`` (d,), ``entry_weight``) and stage 1's ``start`` (K = 2)."""

    tasks: Mixture
    objective: Objective
    stage_weights: tuple[np.ndarray, ...]
    replay_mixes: tuple[tuple[float, ...], ...]
    steps: tuple[int, ...]
    lr: tuple[float, ...]
    batch_size: tuple[int, ...]
    record_every: int
    start_offset: np.ndarray
    entry_weight: Optional[float]
    start: Mixture

    @property
    def n_stages(self) -> int:
        """K − 1."""
        return self.tasks.n_components - 1

    def stage_target(self, s: int) -> Mixture:
        """The target of stage s (1-based): tasks 0 … s with ``stage_weights[s−1]``."""
        return Mixture(
            self.stage_weights[s - 1],
            self.tasks.means[: s + 1],
            covs=list(self.tasks.covs[: s + 1]),
        )

    def stage_objective(self, s: int) -> Objective:
        """The objective of stage s: the replay fraction of ``objective``, the schedule's ρ."""
        # the objectives are frozen dataclasses (mypy sees the Objective base class)
        return replace(self.objective, replay_mix=self.replay_mixes[s - 1])  # type: ignore[type-var]

    def entry_fraction(self, s: int) -> float:
        """e: the weight task s gets when it enters (stage s has s + 1 components)."""
        return self.entry_weight if self.entry_weight is not None else 1.0 / (s + 1)

    def enter(
        self, s: int, weights: np.ndarray, means: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Task s enters carried states ``weights`` (R, s), ``means`` (R, s, d): (R, s+1) and
        (R, s+1, d) by the entry rule."""
        e = self.entry_fraction(s)
        r = weights.shape[0]
        new_w = np.concatenate([(1.0 - e) * weights, np.full((r, 1), e)], axis=1)
        entering = np.broadcast_to(self.tasks.means[s] + self.start_offset, (r, 1, self.tasks.dim))
        return new_w, np.concatenate([means, entering], axis=1)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain values (for ``SequenceResult.meta``)."""
        return {
            "tasks": self.tasks.to_dict(),
            "objective": self.objective.as_dict(),
            "stage_weights": [w.tolist() for w in self.stage_weights],
            "replay_mixes": [list(m) for m in self.replay_mixes],
            "steps": list(self.steps),
            "lr": list(self.lr),
            "batch_size": list(self.batch_size),
            "record_every": self.record_every,
            "start_offset": self.start_offset.tolist(),
            "entry_weight": self.entry_weight,
            "start": self.start.to_dict(),
        }


def _per_stage(name: str, value: Any, n: int, check: Any) -> tuple[Any, ...]:
    """A scalar for every stage, or exactly ``n`` values (ValueError naming ``name``)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        return (check(value),) * n
    if len(value) != n:
        raise ValueError(f"{name} must be one value or one per stage ({n}), got {len(value)}")
    return tuple(check(v) for v in value)


def _stage_weights(value: Any, tasks: Mixture) -> tuple[np.ndarray, ...]:
    k = tasks.n_components
    if value is None:
        return tuple(tasks.weights[: s + 1] / tasks.weights[: s + 1].sum() for s in range(1, k))
    if isinstance(value, str):
        if value != "uniform":
            raise ValueError(
                f"stage_weights must be None, 'uniform' or per-stage weights, got {value!r}"
            )
        return tuple(np.full(s + 1, 1.0 / (s + 1)) for s in range(1, k))
    if len(value) != k - 1:
        raise ValueError(f"stage_weights must have one entry per stage ({k - 1}), got {len(value)}")
    out = []
    for s, w in enumerate(value, start=1):
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (s + 1,) or np.any(~np.isfinite(w)) or np.any(w <= 0) or np.any(w >= 1):
            raise ValueError(f"stage_weights[{s - 1}] must be {s + 1} weights in (0, 1), got {w}")
        if abs(math.fsum(w) - 1.0) > 1e-9:
            raise ValueError(
                f"stage_weights[{s - 1}] must sum to 1 (within 1e-9), got {math.fsum(w)!r}"
            )
        out.append(w)
    return tuple(out)


def _check_tasks(tasks: Any) -> Mixture:
    if not isinstance(tasks, Mixture):
        raise TypeError(
            f"tasks must be a Mixture (one component per task), got {type(tasks).__name__}"
        )
    return tasks


def _offset(value: Any, d: int) -> np.ndarray:
    off = np.asarray(value, dtype=np.float64)
    if off.ndim == 0:
        off = np.full(d, float(off))
    if off.shape != (d,) or not np.all(np.isfinite(off)):
        raise ValueError(
            f"start_offset must be a finite scalar or a (d,) = ({d},) vector, got {value!r}"
        )
    return off


def _start(curriculum_start: Any, tasks: Mixture, offset: np.ndarray, e: float) -> Mixture:
    if curriculum_start is None:
        return Mixture(
            [1.0 - e, e], [tasks.means[0], tasks.means[1] + offset], covs=list(tasks.covs[:2])
        )
    if not isinstance(curriculum_start, Mixture) or curriculum_start.n_components != 2:
        raise ValueError(
            "start must be None or a K = 2 Mixture (the model at the start of stage 1)"
        )
    if curriculum_start.dim != tasks.dim:
        raise ValueError(
            f"start must have the tasks' dimension d = {tasks.dim}, got d = {curriculum_start.dim}"
        )
    return curriculum_start


def make_curriculum(
    tasks: Any,
    objective: Any,
    *,
    steps: Any,
    lr: Any,
    batch_size: Any,
    record_every: Any,
    schedule: Any = "proportional",
    recency: float = 0.5,
    stage_weights: Any = None,
    start: Optional[Mixture] = None,
    start_offset: Any = 0.0,
    entry_weight: Optional[float] = None,
) -> Curriculum:
    """Every check of a sequence, before any work (ValueError / TypeError naming the
    argument); see :func:`mixforget.sequence` for the arguments."""
    tasks = _check_tasks(tasks)
    objective = check_mixture_objective(objective)
    n = tasks.n_components - 1
    record_every = as_positive_int("record_every", record_every)
    steps_t = _per_stage("steps", steps, n, lambda v: check_steps(v, record_every)[0])
    lr_t = _per_stage("lr", lr, n, check_lr)
    batch_t = _per_stage("batch_size", batch_size, n, lambda v: as_positive_int("batch_size", v))
    weights = _stage_weights(stage_weights, tasks)
    sched: Schedule = check_schedule(schedule, n, recency)
    mixes = tuple(
        replay_schedule(sched, weights[s - 1][:s], recency)
        if isinstance(sched, str)
        else sched[s - 1]
        for s in range(1, n + 1)
    )
    if entry_weight is not None:
        entry_weight = float(entry_weight)
        if not 0.0 < entry_weight < 1.0:
            raise ValueError(f"entry_weight must be None or in (0, 1), got {entry_weight}")
    offset = _offset(start_offset, tasks.dim)
    first_e = entry_weight if entry_weight is not None else 0.5
    return Curriculum(
        tasks=tasks,
        objective=objective,
        stage_weights=weights,
        replay_mixes=tuple(tuple(float(v) for v in m) for m in mixes),
        steps=steps_t,
        lr=lr_t,
        batch_size=batch_t,
        record_every=record_every,
        start_offset=offset,
        entry_weight=entry_weight,
        start=_start(start, tasks, offset, first_e),
    )
