"""Finite-batch training over replicates (docs: theory-training-loop) and one-step gradient
studies."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from . import _core, reference
from ._chunks import timed_chunks
from ._problem import (
    build_problem,
    check_lr_scale,
    check_models,
    check_objective,
    check_run,
    check_train_scales,
    check_weight_param,
    estimate_gradient_bytes,
)
from ._rng import RngLike, resolve_rng, root_key, seed_record
from ._validate import DEFAULT_MEMORY_LIMIT as _DEFAULT_LIMIT
from ._validate import as_positive_int, check_output_size
from .kernels import resolve_threads
from .mixture import TwoMode, component_scales
from .objectives import Objective
from .reference._backend import check_backend_args
from .results import GradientEstimates, Trajectory

__all__ = ["DEFAULT_MEMORY_LIMIT", "estimate_gradient", "simulate"]

DEFAULT_MEMORY_LIMIT = _DEFAULT_LIMIT
#: Work of the first Rust call (samples × (d + 1)): a few milliseconds; later calls are sized
#: from the measured rate to about 0.1 s each (``_chunks.timed_chunks``), so that Ctrl-C is
#: honoured within 0.5 s whatever ``record_every`` is, and at most 1/20 of the run each so
#: that the progress bar moves. Results do not depend on the chunking: the streams live in
#: Rust and records sit at absolute step counts.
_FIRST_CALL_WORK = 2**18
_MIN_CALLS = 20


def simulate(
    target: TwoMode,
    start: TwoMode,
    objective: Objective,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 0.05,
    replicates: int = 1000,
    record_every: int = 10,
    rng: RngLike = 0,
    weight_param: str = "logit",
    lr_scale: Optional[Mapping[str, float]] = None,
    threads: Optional[int] = None,
    progress: bool = False,
    memory_limit: Optional[int] = None,
    train_scales: bool = False,
    scale_param: str = "direct",
    backend: str = "rust",
    device: Any = None,
    precision: str = "float64",
) -> Trajectory:
    """Train ``replicates`` independent copies of ``start`` on ``objective`` for ``steps``
    finite-batch steps (docs: theory-estimators, theory-training-loop): sample a batch of
    ``batch_size`` (on-policy from the current model, or from the training distribution, with replay
    slots), form the objective's estimate ĝ, update θ ← θ − lr·m⊙ĝ, count starved batches
    (docs: theory-starvation).

    The whole loop runs in Rust, rayon-parallel over replicates, each on its own random stream
    derived from (rng, replicate): the same ``rng`` gives bit-identical results for any
    ``threads``. It is called in chunks of about 0.1 s of work (independent of
    ``record_every``), so that ``progress=True`` shows a bar (tqdm, optional) and Ctrl-C
    raises KeyboardInterrupt within about 0.5 s (unless a single step takes longer).

    A replicate is flagged in ``diverged`` and frozen (its later records repeat its state)
    when its parameters become non-finite (it keeps its last finite state) or leave the
    runaway bound (it keeps the state that crossed it): a mean farther than
    ``RUNAWAY_DISTANCE`` = 10^6 Mahalanobis units (the target's covariance of that mode) from
    the target's mean of its mode, or an old weight α within ``RUNAWAY_WEIGHT`` = 1e-300 of 0
    or 1 as computed in float64 (logit: η < −690.8, or η > ~36.7 where α rounds to 1). The
    constants are ``mixforget.results.RUNAWAY_DISTANCE`` / ``RUNAWAY_WEIGHT``, the same bound
    as :attr:`Trajectory.runaway`.
    With ``weight_param="direct"`` the old weight α is clamped to [1e-3, 1 − 1e-3] after every
    update (the logit parametrisation needs no clamp).

    ``train_scales=True`` trains the component scales too: component k's covariance is
    σ_k²·S_k with S_k = Σ_k / det(Σ_k)^{1/d} the start covariance's shape (fixed) and σ_k
    starting at det(Σ_k)^{1/(2d)} (in one dimension the standard deviation). Score
    ∂/∂σ log φ(x; μ, σ²S) = (‖x − μ‖²_S/σ² − d)/σ times the responsibility. ``scale_param``:
    'direct' steps on σ, floored at 1e-3 after every update (2510.18874's code), 'log' on
    log σ. ``lr_scale`` then also takes the keys 'old_scale' and 'new_scale'. The recorded
    σ_k are :attr:`Trajectory.old_scale` / :attr:`Trajectory.new_scale` (constant at the start
    value without ``train_scales``).

    Raises ValueError before any work for invalid arguments, and when the recorded output
    plus the work buffers of the replicates running at once (one batch each, about
    16·batch_size·(d + 1) float64 values) would exceed ``memory_limit`` bytes (default:
    :func:`mixforget.get_memory_limit`, 4 GiB unless set; raise ``record_every``, lower
    ``replicates`` or ``batch_size``).

    Parameters
    ----------
    backend : {"rust", "numpy", "torch", "cupy", "jax", "array_api_strict"}
        Where the loop runs. ``"rust"`` (default): the Rust engine on the CPU cores, the
        fastest choice without an accelerator. The others run the array-API twin
        (:mod:`mixforget.reference`) on that library, vectorised over replicates × batch:
        ``"jax"`` (steps jitted and scanned; CPU, GPU or TPU), ``"torch"`` (eager; CPU or
        CUDA), ``"cupy"`` (CUDA), ``"numpy"`` (one CPU core), ``"array_api_strict"`` (a
        compliance check, slow). Install with ``pip install 'mixforget[jax]'`` (or
        ``[torch]``, ``[cupy]``, ``[array]``); a missing library raises ImportError naming
        the extra. A GPU pays off from about 10⁴ replicates (see the backends page of the
        documentation).
    device : str, int or None
        Device of an array backend: None picks the library's default (the GPU where there
        is one); e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"`` (torch, cupy), ``"gpu"``,
        ``"gpu:1"`` (jax). Must be None (or ``"cpu"``) for ``"rust"``.
    precision : {"float64", "float32"}
        Float type of an array backend's computation (float32 is 2–3× faster on most
        GPUs); ``"rust"`` computes in float64 only. Results are float64 NumPy arrays.

    The same ``rng`` gives the same numbers for the same backend, device and precision
    (for ``"rust"``: any ``threads``); different backends use different random streams and
    agree in distribution only. Unknown backend, device or precision names raise
    ValueError naming the argument.
    """
    check_backend_args(backend, device, precision)
    if backend != "rust":
        return reference.simulate(
            target,
            start,
            objective,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            replicates=replicates,
            record_every=record_every,
            rng=rng,
            weight_param=weight_param,
            lr_scale=lr_scale,
            threads=threads,
            progress=progress,
            memory_limit=memory_limit,
            train_scales=train_scales,
            scale_param=scale_param,
            backend=backend,
            device=device,
            precision=precision,
        )
    run = check_run(
        target,
        start,
        objective,
        steps,
        batch_size,
        lr,
        replicates,
        record_every,
        weight_param,
        lr_scale,
        threads,
        progress,
        memory_limit,
        train_scales,
        scale_param,
    )
    objective, steps, batch_size, lr = run.objective, run.steps, run.batch_size, run.lr
    replicates, record_every, weight_param, scale, n_threads = (
        run.replicates,
        run.record_every,
        run.weight_param,
        run.lr_scale,
        run.threads,
    )
    seq = resolve_rng(rng)
    problem = build_problem(
        target, start, objective, weight_param, lr, scale, run.train_scales, run.scale_param
    )
    sim = _core.Simulator(problem, batch_size, replicates, root_key(seq), n_threads)

    d = target.dim
    n_records = steps // record_every + 1
    # the whole output up front: an impossible size fails here (MemoryError) before any work
    old_weight = np.empty((replicates, n_records))
    old_mean = np.empty((replicates, n_records, d))
    new_mean = np.empty((replicates, n_records, d))
    starved = np.empty((replicates, n_records), dtype=np.int64)
    old_weight[:, 0] = start.old_weight
    old_mean[:, 0] = start.old_mean
    new_mean[:, 0] = start.new_mean
    starved[:, 0] = 0
    sigma0 = component_scales(start)
    scales = np.empty((replicates, n_records, 2))
    scales[:, :] = np.array(sigma0)
    first = _FIRST_CALL_WORK // (replicates * batch_size * (d + 1))
    chunks = timed_chunks(steps, first, most=-(-steps // _MIN_CALLS))
    bar = _progress_bar(progress, steps)
    began = time.perf_counter()
    k = 1
    try:
        for n in chunks:
            rec = sim.advance(n, record_every)
            w, o, nw, s, sc = rec.weight, rec.old_mean, rec.new_mean, rec.starved, rec.scale
            m = w.shape[1]
            old_weight[:, k : k + m] = w
            old_mean[:, k : k + m] = o
            new_mean[:, k : k + m] = nw
            starved[:, k : k + m] = s
            if run.train_scales:
                scales[:, k : k + m] = sc
            k += m
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - began
    meta = {
        "objective": objective.as_dict(),
        "start": start.to_dict(),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "replicates": replicates,
        "record_every": record_every,
        "weight_param": weight_param,
        "lr_scale": scale,
        "train_scales": run.train_scales,
        "scale_param": run.scale_param,
        "seed": seed_record(seq),
        "wall_time": wall,
        "threads": n_threads,
        "implementation": "rust",
    }
    scale_rec = scales
    return Trajectory(
        steps=np.arange(0, steps + 1, record_every),
        old_weight=old_weight,
        old_mean=old_mean,
        new_mean=new_mean,
        starved=starved,
        diverged=np.asarray(sim.diverged(), dtype=bool),
        target=target,
        meta=meta,
        old_scale=scale_rec[:, :, 0],
        new_scale=scale_rec[:, :, 1],
    )


class _TextBar:
    """Minimal progress display on stderr when tqdm is not installed."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def update(self, n: int) -> None:
        self.done += n
        sys.stderr.write(f"\rmixforget: {self.done}/{self.total} steps")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _progress_bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total)
    return tqdm(total=total, unit="step", desc="mixforget")


def estimate_gradient(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    batch_size: int = 64,
    batches: int = 100_000,
    rng: RngLike = 0,
    weight_param: str = "logit",
    threads: Optional[int] = None,
    train_scales: bool = False,
    scale_param: str = "direct",
    backend: str = "rust",
    device: Any = None,
    precision: str = "float64",
) -> GradientEstimates:
    """One-step Monte Carlo study: ``batches`` independent finite-batch estimates ĝ of the
    objective's gradient at ``model`` (docs: theory-estimators), with each batch's starved flag and
    number of old-labelled samples (docs: theory-starvation). Extra models (SDFT teacher, TTT q_0,
    OAPL lag) equal ``model``. Compare with :func:`mixforget.population_gradient`.

    With ``train_scales=True`` (see :func:`simulate`) each row gains the two scale entries:
    columns (weight, old_mean[0..d], new_mean[0..d], old_scale, new_scale), the scale entries
    with respect to σ_k ('direct') or log σ_k ('log').

    ``batches`` must be >= 2 (the standard error needs two estimates). Raises ValueError
    before any work when the estimates and the work buffers of the batches computed at once
    would exceed the memory limit (:func:`mixforget.set_memory_limit`). Computed in calls of
    about 0.1 s (cut at random-stream boundaries, 256 batches, so the numbers do not depend
    on the cut): Ctrl-C raises KeyboardInterrupt within about 0.5 s.
    ``backend``, ``device`` and ``precision`` choose where the estimates are computed, as in
    :func:`simulate` (default ``"rust"``)."""
    check_backend_args(backend, device, precision)
    if backend != "rust":
        return reference.estimate_gradient(
            target,
            model,
            objective,
            batch_size=batch_size,
            batches=batches,
            rng=rng,
            weight_param=weight_param,
            threads=threads,
            train_scales=train_scales,
            scale_param=scale_param,
            backend=backend,
            device=device,
            precision=precision,
        )
    check_models(target, model, "model")
    batch_size = as_positive_int("batch_size", batch_size)
    objective = check_objective(objective, batch_size)
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
    key = root_key(seq)
    width = 1 + 2 * target.dim + (2 if train_scales else 0)
    grads = np.empty((batches, width))
    counts = np.empty(batches, dtype=np.int64)
    # Calls of about 0.1 s (Ctrl-C), cut at stream boundaries: the c-th run of
    # BATCHES_PER_STREAM batches uses stream c whatever the cut, so the numbers equal one call's.
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
