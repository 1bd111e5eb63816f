"""The one training loop around any stepper: allocate the records, plan the chunks, step,
record, show progress and build the :class:`~mixforget.results.Trajectory`.

Every training entry point (``simulate`` on Rust or on a twin backend, ``population_flow``)
runs through :func:`drive`; they differ only in their stepper. A stepper is called in chunks
of about 0.1 s of work (:func:`mixforget._chunks.timed_chunks`), so that Ctrl-C is honoured
within about 0.5 s and the progress bar moves; the numbers do not depend on the chunking,
since every stepper records at absolute step counts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, overload

import numpy as np

from .._chunks import timed_chunks
from ..mixture import component_scales
from ..results import MixtureTrajectory, Trajectory
from ._mixture_plan import MixturePlan
from ._mixture_records import MixtureBuffers, MixtureRecords
from ._plan import RunPlan

__all__ = ["ChunkPolicy", "Records", "Stepper", "drive"]

#: At most 1/20 of the run per call, so that the progress bar moves.
_MIN_CALLS = 20


@dataclass(frozen=True)
class Records:
    """What a stepper hands back for one chunk: the states at the m record steps it crossed,
    as float64/int64 host arrays with the replicate axis first."""

    old_weight: np.ndarray  #: (R, m) α
    old_mean: np.ndarray  #: (R, m, d)
    new_mean: np.ndarray  #: (R, m, d)
    #: (R, m) cumulative starved batches; None for the population flow (no batches)
    starved: Optional[np.ndarray] = None
    #: (R, m, 2) σ_o, σ_n; None when the scales do not train
    scales: Optional[np.ndarray] = None


@dataclass(frozen=True)
class ChunkPolicy:
    """How a stepper's calls are sized (:func:`mixforget._chunks.timed_chunks`): ``first``
    steps in the first call, every call a multiple of ``quantum`` steps (the last excepted),
    at most ``most`` steps (None: no bound beyond 1/20 of the run)."""

    first: int
    quantum: int = 1
    most: Optional[int] = None


class Stepper(Protocol):
    """One way of running the training step (docs: theory-training-loop) for all replicates.

    ``implementation`` names it in ``meta`` ('rust' or the twin's backend); ``chunks`` sizes
    its calls; ``first_record()`` is record 0 as the stepper holds the start (None: the
    start model's own values); ``advance(n, record_every)`` runs the next n steps and returns
    the records at the step counts divisible by ``record_every`` that it crossed;
    ``diverged()`` flags the replicates that were frozen (non-finite or beyond the runaway
    bound)."""

    implementation: str
    chunks: ChunkPolicy

    def first_record(self) -> Optional[Records | MixtureRecords]: ...

    def advance(self, steps: int, record_every: int) -> Records | MixtureRecords: ...

    def diverged(self) -> np.ndarray: ...


class _RecordBuffers:
    """The whole output, allocated up front so that an impossible size fails (MemoryError)
    before any work; record 0 is the start model."""

    def __init__(self, plan: RunPlan) -> None:
        r, n, d, start = plan.replicates, plan.n_records, plan.target.dim, plan.start
        self.old_weight = np.empty((r, n))
        self.old_mean = np.empty((r, n, d))
        self.new_mean = np.empty((r, n, d))
        self.starved = np.empty((r, n), dtype=np.int64)
        self.scales = np.empty((r, n, 2))
        self.old_weight[:, 0] = start.old_weight
        self.old_mean[:, 0] = start.old_mean
        self.new_mean[:, 0] = start.new_mean
        self.starved[:, :] = 0
        # untrained scales stay at their start value in every record
        self.scales[:, :] = np.array(component_scales(start))
        self.filled = 1

    def append(self, rec: Records, at: Optional[int] = None) -> None:
        """Store ``rec`` after the last record (or from record ``at``)."""
        k = self.filled if at is None else at
        m = rec.old_weight.shape[1]
        self.old_weight[:, k : k + m] = rec.old_weight
        self.old_mean[:, k : k + m] = rec.old_mean
        self.new_mean[:, k : k + m] = rec.new_mean
        if rec.starved is not None:
            self.starved[:, k : k + m] = rec.starved
        if rec.scales is not None:
            self.scales[:, k : k + m] = rec.scales
        self.filled = k + m

    def trajectory(self, plan: RunPlan, diverged: np.ndarray, meta: dict[str, Any]) -> Trajectory:
        return Trajectory(
            steps=np.arange(0, plan.steps + 1, plan.record_every, dtype=np.int64),
            old_weight=self.old_weight,
            old_mean=self.old_mean,
            new_mean=self.new_mean,
            starved=self.starved,
            diverged=np.asarray(diverged, dtype=bool).reshape(plan.replicates),
            target=plan.target,
            meta=meta,
            old_scale=self.scales[:, :, 0],
            new_scale=self.scales[:, :, 1],
        )


@overload
def drive(
    plan: RunPlan,
    open_stepper: Callable[[], Stepper],
    progress: bool = ...,
    meta_extra: Optional[Mapping[str, Any]] = ...,
) -> Trajectory: ...


@overload
def drive(
    plan: MixturePlan,
    open_stepper: Callable[[], Stepper],
    progress: bool = ...,
    meta_extra: Optional[Mapping[str, Any]] = ...,
) -> MixtureTrajectory: ...


def drive(
    plan: RunPlan | MixturePlan,
    open_stepper: Callable[[], Stepper],
    progress: bool = False,
    meta_extra: Optional[Mapping[str, Any]] = None,
) -> Trajectory | MixtureTrajectory:
    """Run ``plan`` with the stepper that ``open_stepper`` makes (after the records are
    allocated) and return its Trajectory (a MixtureTrajectory for a K-component plan, whose
    stepper hands back ``MixtureRecords``); ``meta_extra`` is appended to ``meta``."""
    buffers: Any = MixtureBuffers(plan) if isinstance(plan, MixturePlan) else _RecordBuffers(plan)
    stepper = open_stepper()
    first = stepper.first_record()
    if first is not None:
        buffers.append(first, at=0)
    policy = stepper.chunks
    most = -(-plan.steps // _MIN_CALLS)
    if policy.most is not None:
        most = min(most, policy.most)
    bar = progress_bar(progress, plan.steps, stepper.implementation)
    began = time.perf_counter()
    try:
        for n in timed_chunks(plan.steps, policy.first, policy.quantum, most=most):
            buffers.append(stepper.advance(n, plan.record_every))
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - began
    meta = plan.meta(wall, stepper.implementation, meta_extra)
    return buffers.trajectory(plan, stepper.diverged(), meta)


class _TextBar:
    """Minimal progress display on stderr when tqdm is not installed."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.done, self.desc = total, 0, desc

    def update(self, n: int) -> None:
        self.done += n
        sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total} steps")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def progress_bar(progress: bool, total: int, implementation: str) -> Any:
    """None, or a bar of ``total`` steps: tqdm when installed (the 'progress' extra), else a
    line on stderr. The same bar for every stepper."""
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
    if not progress:
        return None
    desc = "mixforget" if implementation == "rust" else f"mixforget ({implementation})"
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, desc)
    return tqdm(total=total, unit="step", desc=desc)
