"""Running a task sequence (docs: theory-sequences): :func:`sequence`, stage after stage on
the existing driver, each replicate's state carried from one stage to the next.

Engines: stage 1 (K = 2) is exactly :func:`mixforget.simulate` (or
:func:`mixforget.population_flow`) with the curriculum's stage-1 target, start, objective and
the caller's seed, so a two-task sequence equals that call bit for bit; it runs on the
two-mode engine of ``backend`` (on the K-component twin when replay comes from a buffer,
which the two-mode engine cannot sample). Stages s ≥ 2 (K ≥ 3 components) run on the
K-component NumPy twin (the Rust K-component engine is not wired yet), started from every
replicate's own carried state; the population flow runs each stage from the carried
deterministic state.
Seeds: stage 1 uses the caller's SeedSequence; stage s ≥ 2 uses the SeedSequence with the
same entropy and spawn key + (s,), so the same ``rng`` gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Optional

import numpy as np

from .._rng import RngLike, resolve_rng
from .._validate import as_positive_int
from ..engine import drive
from ..engine._mixture_plan import plan_mixture_run
from ..engine._mixture_records import MixtureRecords
from ..mixture import Mixture
from ..objectives import Objective
from ..reference.mixture_engine import MixtureParams, NumpyMixtureSimulation
from .buffer import BUFFERS, BufferSources, ReplayBuffers
from .curriculum import Curriculum, make_curriculum
from .result import SequenceResult, StageRecord

__all__ = ["CarriedMixtureSimulation", "sequence"]


class CarriedMixtureSimulation(NumpyMixtureSimulation):
    """The NumPy twin started from per-replicate states (``params``) and runaway flags
    (``frozen``, kept frozen) instead of one start Mixture, its replay drawn from
    ``buffers`` when given; its record 0 is that state."""

    def __init__(
        self,
        plan: Any,
        params: MixtureParams,
        frozen: np.ndarray,
        buffers: Optional[ReplayBuffers] = None,
    ) -> None:
        super().__init__(plan)
        if buffers is not None:
            self.sources = BufferSources(plan, buffers)
        self.params = params
        self.frozen = np.asarray(frozen, dtype=bool).copy()

    def first_record(self) -> Optional[MixtureRecords]:
        r, k = self.params.weights.shape
        return MixtureRecords(
            self.params.weights[:, None].copy(),
            self.params.means[:, None].copy(),
            np.zeros((r, 1, k), dtype=np.int64),
        )


def _stage_seed(root: np.random.SeedSequence, s: int) -> np.random.SeedSequence:
    if s == 1:
        return root
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, s))


def _params_of(weights: np.ndarray, means: np.ndarray) -> MixtureParams:
    with np.errstate(divide="ignore", invalid="ignore"):
        logw = np.log(weights)
        eta = logw[:, :-1] - logw[:, -1:]
    return MixtureParams(eta, means.copy())


def _plan_start(
    weights: np.ndarray, means: np.ndarray, frozen: np.ndarray, target: Mixture
) -> Mixture:
    """The replicate-mean state (kept replicates) as the plan's start Mixture: it sets the
    model covariances and ``meta['start']``; the replicates start from their own states."""
    keep = ~frozen & np.all(np.isfinite(weights), axis=1) & np.all(np.isfinite(means), axis=(1, 2))
    if not keep.any():
        return target
    return Mixture(weights[keep].mean(axis=0), means[keep].mean(axis=0), covs=list(target.covs))


def _first_stage(cur: Curriculum, settings: dict[str, Any], seed: Any) -> StageRecord:
    from ..population import population_flow
    from ..simulate import simulate

    target, objective = cur.stage_target(1), cur.stage_objective(1)
    common: dict[str, Any] = dict(steps=cur.steps[0], lr=cur.lr[0], record_every=cur.record_every)
    common.update(lr_scale=settings["lr_scale"])
    if settings["population"]:
        traj = population_flow(target, cur.start, objective, **common)
    else:
        traj = simulate(
            target,
            cur.start,
            objective,
            batch_size=cur.batch_size[0],
            replicates=settings["replicates"],
            rng=seed,
            threads=settings["threads"],
            progress=settings["progress"],
            backend=settings["backend"],
            **common,
        )
    return StageRecord.of_two_mode(1, 0, traj, target, objective)


def _later_stage(
    cur: Curriculum, s: int, prev: StageRecord, settings: dict[str, Any], seed: Any
) -> StageRecord:
    weights, means = cur.enter(s, prev.weights[:, -1], prev.means[:, -1])
    return _twin_stage(cur, s, weights, means, prev.diverged, prev.end_step, settings, seed)


def _twin_stage(
    cur: Curriculum,
    s: int,
    weights: np.ndarray,
    means: np.ndarray,
    frozen: np.ndarray,
    offset: int,
    settings: dict[str, Any],
    seed: Any,
) -> StageRecord:
    """Stage s on the K-component twin (or its population flow) from the carried states."""
    target, objective = cur.stage_target(s), cur.stage_objective(s)
    buffers = settings["buffers"]
    if buffers is not None:
        objective = replace(  # type: ignore[type-var]  # ForwardKL | ReverseKL, dataclasses
            objective, replay_mix=tuple(buffers.composition().tolist())
        )
    population = settings["population"]
    start = (
        Mixture(weights[0], means[0], covs=list(target.covs))
        if population
        else _plan_start(weights, means, frozen, target)
    )
    plan = plan_mixture_run(
        target,
        start,
        objective,
        new_components=(s,),
        steps=cur.steps[s - 1],
        record_every=cur.record_every,
        lr=cur.lr[s - 1],
        lr_scale=settings["lr_scale"],
        update=settings["update"],
        batch=None
        if population
        else (cur.batch_size[s - 1], settings["replicates"], settings["threads"], seed),
    )
    if population:
        from .._mixture_population import MixturePopulationFlow

        traj = drive(plan, lambda: MixturePopulationFlow(plan), settings["progress"])
    else:
        params = _params_of(weights, means)
        traj = drive(
            plan,
            lambda: CarriedMixtureSimulation(plan, params, frozen, buffers),
            settings["progress"],
        )
    return StageRecord.of_mixture(s, offset, traj, objective)


def _fill_buffer(cur: Curriculum, task: int, settings: dict[str, Any], root: Any) -> None:
    """Task ``task``'s stream enters every replicate's buffer (its own random stream)."""
    buffers = settings["buffers"]
    if buffers is None:
        return
    seq = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, 0, task))
    chol = np.linalg.cholesky(cur.tasks.cov_matrix(task))
    buffers.add_task(
        task, cur.tasks.means[task], chol, settings["stream"], np.random.default_rng(seq)
    )


def _check_buffer(buffer: Any, memory: Any, stream: Any, population: bool) -> None:
    if buffer is None:
        if memory is not None:
            raise ValueError("memory is the size of a replay buffer: give buffer= as well")
        return
    if buffer not in BUFFERS:
        raise ValueError(f"buffer must be None or one of {list(BUFFERS)}, got {buffer!r}")
    if population:
        raise ValueError(
            "buffer: the population flow has no samples to store; use population=False"
        )
    if memory is None:
        raise ValueError("memory must be given with a buffer (a positive int, the stored items)")
    as_positive_int("memory", memory)
    as_positive_int("stream", stream)


def sequence(
    tasks: Mixture,
    objective: Objective,
    *,
    steps: Any = 2000,
    lr: Any = 0.05,
    batch_size: Any = 64,
    replicates: int = 100,
    record_every: int = 10,
    rng: RngLike = 0,
    schedule: Any = "proportional",
    recency: float = 0.5,
    stage_weights: Any = None,
    start: Optional[Mixture] = None,
    start_offset: Any = 0.0,
    entry_weight: Optional[float] = None,
    lr_scale: Optional[Mapping[str, float]] = None,
    update: str = "sgd",
    threads: Optional[int] = None,
    progress: bool = False,
    backend: str = "rust",
    population: bool = False,
    buffer: Optional[str] = None,
    memory: Optional[int] = None,
    stream: int = 1000,
) -> SequenceResult:
    """Continual post-training on the task sequence 0 → 1 → … → K−1 (docs: theory-sequences).

    Parameters
    ----------
    tasks : Mixture
        The K ≥ 2 tasks as components (component j = task j; its weights are the target
        weights when every task is present, renormalised over tasks 0 … s at stage s).
    objective : ForwardKL or ReverseKL
        The objective of every stage: its ``replay`` λ is the replay fraction; its
        ``replay_mix`` is replaced per stage by ``schedule``. The new task of stage s is
        component s (``new_components = (s,)``).
    steps, lr, batch_size : one value, or one per stage (K − 1 stages)
    replicates, record_every, rng, threads, progress, lr_scale, update
        As in :func:`mixforget.simulate` (``update`` 'natural' only for stages with K ≥ 3).
    schedule : 'uniform', 'proportional', 'recency', or one mix per stage
        How λ is split between the old tasks (:mod:`mixforget.sequences.replay`).
    recency : float in (0, 1]
        γ of the 'recency' schedule: ρ_j ∝ γ^{age}.
    stage_weights : None, 'uniform' or one (s+1,) weight vector per stage
        The target weights of each stage.
    start : K = 2 Mixture, optional
        The model at the start of stage 1 (default: component 0 at task 0's mean, the
        entering component by the entry rule).
    start_offset : scalar or (d,)
        Added to an entering task's mean.
    entry_weight : float in (0, 1), optional
        The entering component's weight (default 1/(s+1)), taken proportionally from the others.
    backend : str
        The two-mode engine of stage 1 ('rust' or 'numpy'); later stages use the NumPy twin.
    population : bool
        Run the population (infinite-batch) flow instead (one deterministic replicate).
    buffer : None, 'reservoir' or 'balanced'
        Replay from a finite per-replicate buffer of ``memory`` stored samples instead of
        the true old distributions (:mod:`mixforget.sequences.buffer`); each task adds a
        stream of ``stream`` samples when its stage ends. The replay mix is then the
        buffer's composition (``schedule`` is not used) and every stage, the first too,
        runs on the K-component twin.

    Returns
    -------
    SequenceResult
        Per-stage records at absolute steps, the accuracy matrices and their summaries.
    """
    cur = make_curriculum(
        tasks,
        objective,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        record_every=record_every,
        schedule=schedule,
        recency=recency,
        stage_weights=stage_weights,
        start=start,
        start_offset=start_offset,
        entry_weight=entry_weight,
    )
    if not isinstance(population, bool):
        raise TypeError(f"population must be a bool, got {type(population).__name__}")
    _check_buffer(buffer, memory, stream, population)
    settings: dict[str, Any] = dict(
        replicates=replicates,
        threads=threads,
        progress=progress,
        backend=backend,
        population=population,
        lr_scale=lr_scale,
        update=update,
        stream=stream,
        buffers=None
        if buffer is None
        else ReplayBuffers.empty(
            buffer, int(memory or 0), as_positive_int("replicates", replicates), tasks.dim
        ),
    )
    root = resolve_rng(rng)
    _fill_buffer(cur, 0, settings, root)
    if buffer is None:
        stages = [_first_stage(cur, settings, _stage_seed(root, 1))]
    else:
        r = settings["buffers"].points.shape[0]
        weights = np.tile(cur.start.weights, (r, 1))
        means = np.tile(cur.start.means, (r, 1, 1))
        frozen = np.zeros(r, dtype=bool)
        stages = [_twin_stage(cur, 1, weights, means, frozen, 0, settings, _stage_seed(root, 1))]
    for s in range(2, cur.n_stages + 1):
        _fill_buffer(cur, s - 1, settings, root)
        stages.append(_later_stage(cur, s, stages[-1], settings, _stage_seed(root, s)))
    return SequenceResult(curriculum=cur, stages=tuple(stages), population=population)
