"""The Rust engine behind the front doors: the steppers of the finite-batch simulator and of
the population flow, and the one-step gradient studies.

This is the one module of the driver that talks to the binding's training objects: it builds
the ``TrainingProblem`` (through :func:`mixforget._problem.build_problem`), constructs
``_core.Simulator`` / ``_core.PopulationFlow`` and reads what their ``advance`` returns
(:func:`_records_of`), and runs the one-step gradient studies (``_core.estimate_gradient``,
``_core.population_gradient``), and likewise for the K-component engine
(``_core.MixtureProblem``, ``_core.MixtureSimulator``, ``_core.mixture_estimate_gradient``:
:class:`RustMixtureSimulation`, :func:`rust_mixture_gradient_estimates`). A change of the
binding contract is a change here only.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _core
from .._chunks import timed_chunks
from .._problem import (
    build_problem,
    check_lr_scale,
    check_models,
    check_objective,
    check_train_scales,
    check_weight_param,
    estimate_gradient_bytes,
)
from .._rng import RngLike, resolve_rng, root_key, seed_record
from .._validate import as_positive_int, check_output_size, resolve_threads
from ..mixture import TwoMode
from ..objectives import Objective
from ..results import GradientEstimates
from ._driver import ChunkPolicy, Records
from ._mixture_plan import MixturePlan
from ._mixture_records import MixtureRecords
from ._plan import RunPlan

__all__ = [
    "RustMixtureSimulation",
    "RustPopulationFlow",
    "RustSimulation",
    "rust_gradient_estimates",
    "rust_mixture_gradient_estimates",
    "rust_population_gradient",
]

#: Work of the first Rust call (samples × (d + 1)): a few milliseconds; later calls are sized
#: from the measured rate to about 0.1 s each.
_FIRST_CALL_WORK = 2**18


def _problem_of(plan: RunPlan) -> Any:
    return build_problem(
        plan.target,
        plan.start,
        plan.objective,
        plan.weight_param,
        plan.lr,
        plan.lr_scale,
        plan.train_scales,
        plan.scale_param,
        plan.update,
    )


def _records_of(chunk: Any, train_scales: bool, batches: bool) -> Records:
    """The binding's ``advance`` result (a named ``RecordChunk``: weight, old_mean, new_mean,
    starved, scale) as :class:`Records`."""
    return Records(
        old_weight=chunk.weight,
        old_mean=chunk.old_mean,
        new_mean=chunk.new_mean,
        starved=chunk.starved if batches else None,
        scales=chunk.scale if train_scales else None,
    )


class RustSimulation:
    """Finite-batch training in Rust, rayon-parallel over replicates, each on its own random
    stream derived from (seed, replicate): bit-identical for any thread count."""

    implementation = "rust"

    def __init__(self, plan: RunPlan) -> None:
        assert plan.batch_size is not None and plan.seed is not None and plan.threads is not None
        self.train_scales = plan.train_scales
        self._sim = _core.Simulator(
            _problem_of(plan), plan.batch_size, plan.replicates, root_key(plan.seed), plan.threads
        )
        work = plan.replicates * plan.batch_size * (plan.target.dim + 1)
        self.chunks = ChunkPolicy(first=_FIRST_CALL_WORK // work)

    def first_record(self) -> Optional[Records]:
        return None

    def advance(self, steps: int, record_every: int) -> Records:
        return _records_of(self._sim.advance(steps, record_every), self.train_scales, True)

    def diverged(self) -> np.ndarray:
        return np.asarray(self._sim.diverged(), dtype=bool)


class RustPopulationFlow:
    """The deterministic flow θ ← θ − lr·m⊙∇L(θ) with the exact gradients, in Rust."""

    implementation = "rust"
    chunks = ChunkPolicy(first=1)

    def __init__(self, plan: RunPlan) -> None:
        self.train_scales = plan.train_scales
        self._flow = _core.PopulationFlow(_problem_of(plan))

    def first_record(self) -> Optional[Records]:
        return None

    def advance(self, steps: int, record_every: int) -> Records:
        return _records_of(self._flow.advance(steps, record_every), self.train_scales, False)

    def diverged(self) -> np.ndarray:
        return np.array([self._flow.diverged()], dtype=bool)


def _one_step_problem(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    weight_param: str,
    train_scales: bool,
    scale_param: str,
) -> Any:
    """The problem of a one-step study: lr 1 and every group's multiplier 1."""
    return build_problem(
        target,
        model,
        objective,
        weight_param,
        1.0,
        check_lr_scale(None, train_scales),
        train_scales,
        scale_param,
    )


def rust_gradient_estimates(
    target: Any,
    model: Any,
    objective: Any,
    batch_size: Any,
    batches: Any,
    rng: RngLike,
    weight_param: Any,
    threads: Any,
    train_scales: Any,
    scale_param: Any,
) -> GradientEstimates:
    """:func:`mixforget.estimate_gradient` on the Rust engine: validated, then computed in
    calls of about 0.1 s cut at random-stream boundaries (the c-th run of
    ``BATCHES_PER_STREAM`` batches uses stream c whatever the cut, so the numbers equal one
    call's)."""
    check_models(target, model, "model")
    batch_size = as_positive_int("batch_size", batch_size)
    objective = check_objective(objective, batch_size, target.dim)
    batches = as_positive_int("batches", batches, minimum=2)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    n_threads = resolve_threads(threads)
    check_output_size(
        f"batches={batches} gradient estimates of batch_size={batch_size}",
        estimate_gradient_bytes(target.dim, batch_size, batches, n_threads),
        "estimate fewer batches per call or use a smaller batch_size",
    )
    seq = resolve_rng(rng)
    problem = _one_step_problem(target, model, objective, weight_param, train_scales, scale_param)
    key = root_key(seq)
    width = 1 + 2 * target.dim + (2 if train_scales else 0)
    grads = np.empty((batches, width))
    counts = np.empty(batches, dtype=np.int64)
    per_stream = _core.BATCHES_PER_STREAM
    first = per_stream * max(1, _FIRST_CALL_WORK // (per_stream * batch_size * (target.dim + 1)))
    done = 0
    for n in timed_chunks(batches, first, quantum=per_stream):
        g, c = _core.estimate_gradient(
            problem, batch_size, n, key, n_threads, first_stream=done // per_stream
        )
        grads[done : done + n] = g
        counts[done : done + n] = c
        done += n
    return GradientEstimates(
        gradients=grads, starved=counts == 0, old_count=counts, seed=seed_record(seq)
    )


def rust_population_gradient(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    weight_param: str,
    train_scales: bool,
    scale_param: str,
) -> np.ndarray:
    """The flat exact gradient (weight, old mean, new mean[, old scale, new scale]) of
    validated arguments."""
    problem = _one_step_problem(target, model, objective, weight_param, train_scales, scale_param)
    return np.asarray(_core.population_gradient(problem))


def _mixture_problem_of(plan: MixturePlan, lr: Optional[float] = None) -> Any:
    """The binding's ``MixtureProblem`` of a K-component plan (``lr`` overrides the plan's)."""
    target, start = plan.target, plan.start
    k = plan.n_components
    return _core.MixtureProblem(
        target_weights=np.asarray(target.weights, dtype=np.float64),
        target_means=np.asarray(target.means, dtype=np.float64),
        target_covs=[np.asarray(target.cov_matrix(j), dtype=np.float64) for j in range(k)],
        model_covs=[np.asarray(start.cov_matrix(j), dtype=np.float64) for j in range(k)],
        start_weights=np.asarray(start.weights, dtype=np.float64),
        start_means=np.asarray(start.means, dtype=np.float64),
        objective=plan.objective,
        new_components=list(plan.new_components),
        replay_mix=np.asarray(plan.replay_mix, dtype=np.float64),
        lr=plan.lr if lr is None else lr,
        lr_weight=plan.lr_scale["weight"],
        lr_means=plan.lr_scale["means"],
        update=plan.update,
        label_rewards=_label_rewards_of(plan),
    )


def _label_rewards_of(plan: MixturePlan) -> list[float]:
    """KLRegularizedRL's r_j with the 'labels' reward (the binding reads them then only)."""
    if plan.label_rewards is None or getattr(plan.objective, "reward", None) != "labels":
        return []
    return [float(v) for v in plan.label_rewards]


class RustMixtureSimulation:
    """Finite-batch K-component training in Rust (``_core.MixtureSimulator``), rayon-parallel
    over replicates, each on its own random stream (seed, replicate): bit-identical for any
    thread count; agrees with the NumPy twin in distribution."""

    implementation = "rust"

    def __init__(self, plan: MixturePlan) -> None:
        assert plan.batch_size is not None and plan.seed is not None and plan.threads is not None
        self._sim = _core.MixtureSimulator(
            _mixture_problem_of(plan),
            plan.batch_size,
            plan.replicates,
            root_key(plan.seed),
            plan.threads,
        )
        work = plan.replicates * plan.batch_size * plan.n_components * (plan.target.dim + 1)
        self.chunks = ChunkPolicy(first=max(1, _FIRST_CALL_WORK // work))

    def first_record(self) -> Optional[MixtureRecords]:
        return None

    def advance(self, steps: int, record_every: int) -> MixtureRecords:
        chunk = self._sim.advance(steps, record_every)
        return MixtureRecords(chunk.weights, chunk.means, chunk.starved)

    def diverged(self) -> np.ndarray:
        return np.asarray(self._sim.diverged(), dtype=bool)


def rust_mixture_gradient_estimates(
    plan: MixturePlan, seq: np.random.SeedSequence
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-step study of a K-component plan in Rust (``plan.replicates`` batches, each on
    its own stream): gradients (batches, P), starved (batches, K), old_count (batches,)."""
    assert plan.batch_size is not None and plan.threads is not None
    grads, starved, old_count = _core.mixture_estimate_gradient(
        _mixture_problem_of(plan, lr=1.0),
        plan.batch_size,
        plan.replicates,
        root_key(seq),
        plan.threads,
    )
    return np.asarray(grads), np.asarray(starved, dtype=bool), np.asarray(old_count)
