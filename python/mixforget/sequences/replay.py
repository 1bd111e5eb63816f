"""Replay over the old tasks of a sequence (docs: theory-sequences): the schedules that split
the replay fraction λ between the old tasks (the ``replay_mix`` ρ of the K-component
objective), and finite replay buffers (reservoir, class-balanced) as pure functions.

Schedules at a stage with n old tasks 0 … n−1 (task n−1 the most recent old one):

* ``'uniform'``: ρ_j = 1/n;
* ``'proportional'``: ρ_j ∝ w*_j, the stage target's weight of task j;
* ``'recency'``: ρ_j ∝ γ^{n−1−j} (geometric in the age of the task, ``recency`` = γ in
  (0, 1]; γ = 1 is uniform, small γ replays mostly the last old task).

Buffers store item indices of a stream of past samples, memory M. ``reservoir_buffer`` is
Vitter's algorithm R: after N ≥ M items every item is in the buffer with probability M/N.
``balanced_buffer`` keeps ⌊M/n⌋ items per task (the remainder to the most recent tasks),
drawn uniformly without replacement within each task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from .._validate import as_positive_int

__all__ = [
    "SCHEDULES",
    "balanced_buffer",
    "replay_schedule",
    "reservoir_buffer",
]

#: the named replay schedules over the old tasks
SCHEDULES = ("uniform", "proportional", "recency")

#: a schedule: a name, or one explicit mix per stage (stage s has s old tasks)
Schedule = Union[str, Sequence[Sequence[float]]]


def check_recency(recency: Any) -> float:
    """γ in (0, 1] (ValueError naming ``recency``)."""
    if isinstance(recency, bool) or not isinstance(recency, (int, float, np.floating)):
        raise TypeError(f"recency must be a number in (0, 1], got {recency!r}")
    value = float(recency)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"recency must be in (0, 1], got {value}")
    return value


def replay_schedule(
    schedule: str, old_target_weights: Any, recency: float = 0.5
) -> tuple[float, ...]:
    """ρ over the n old tasks (in task order) of the named ``schedule``; ``old_target_weights``
    (n,) are the stage target's weights of the old tasks (used by 'proportional')."""
    w = np.asarray(old_target_weights, dtype=np.float64)
    n = w.size
    if schedule == "uniform":
        rho = np.full(n, 1.0 / n)
    elif schedule == "proportional":
        rho = w / w.sum()
    elif schedule == "recency":
        gamma = check_recency(recency)
        rho = gamma ** np.arange(n - 1, -1, -1, dtype=np.float64)
        rho = rho / rho.sum()
    else:
        raise ValueError(
            f"schedule must be one of {list(SCHEDULES)} or per-stage mixes, got {schedule!r}"
        )
    return tuple(float(v) for v in rho)


def check_schedule(schedule: Any, n_stages: int, recency: float) -> Schedule:
    """A named schedule, or ``n_stages`` explicit mixes (stage s, 1-based, has s entries ≥ 0
    summing to 1 within 1e-9); ValueError naming ``schedule`` otherwise."""
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {list(SCHEDULES)} or per-stage mixes, got {schedule!r}"
            )
        if schedule == "recency":
            check_recency(recency)
        return schedule
    if not isinstance(schedule, Sequence) or len(schedule) != n_stages:
        raise ValueError(
            f"schedule must be a name in {list(SCHEDULES)} or one mix per stage ({n_stages}), "
            f"got {schedule!r}"
        )
    out = []
    for s, mix in enumerate(schedule, start=1):
        values = np.asarray(mix, dtype=np.float64)
        if values.shape != (s,) or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                f"schedule[{s - 1}] (stage {s}) must be {s} finite entries >= 0, one per old "
                f"task, got {list(np.atleast_1d(values))}"
            )
        if abs(math.fsum(values) - 1.0) > 1e-9:
            raise ValueError(
                f"schedule[{s - 1}] (stage {s}) must sum to 1 (within 1e-9), got sum "
                f"{math.fsum(values)!r}"
            )
        out.append(tuple(float(v) for v in values))
    return tuple(out)


def reservoir_buffer(n_items: int, memory: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted, ≤ ``memory`` of them) kept by reservoir sampling (algorithm R) from a
    stream of ``n_items`` items: the first M fill the buffer, item t ≥ M replaces a uniform
    slot with probability M/(t+1). Every item ends in the buffer with probability M/N."""
    memory = as_positive_int("memory", memory)
    n_items = as_positive_int("n_items", n_items)
    slots = np.arange(min(memory, n_items))
    for t in range(memory, n_items):
        j = int(rng.integers(0, t + 1))
        if j < memory:
            slots[j] = t
    return np.sort(slots)


def balanced_buffer(labels: Any, memory: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of a class-balanced buffer of ``memory`` items over the task
    ``labels`` (N,) of a stream: ⌊M/n⌋ per task present (n tasks; the remainder one each to
    the most recent, i.e. highest, labels), uniformly without replacement within each task
    (all of a task's items when it has fewer)."""
    memory = as_positive_int("memory", memory)
    labels = np.asarray(labels)
    tasks = np.unique(labels)
    share, extra = divmod(memory, tasks.size)
    kept = []
    for rank, task in enumerate(tasks):
        quota = share + (1 if rank >= tasks.size - extra else 0)
        members = np.flatnonzero(labels == task)
        kept.append(members if members.size <= quota else rng.choice(members, quota, replace=False))
    return np.sort(np.concatenate(kept))
