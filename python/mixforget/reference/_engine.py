"""The twin's front doors: :func:`simulate` (its stepper :class:`TwinSimulation`, run by the
engine's driver :func:`mixforget.engine.drive`), and the one-step studies
:func:`estimate_gradient` and :func:`population_gradient`, all with the step of
:mod:`._step` on the backend of :mod:`._backend`."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from .._defaults import DEFAULT_LR
from .._problem import (
    check_models,
    check_objective,
    check_run,
    check_train_scales,
    check_weight_param,
    records_bytes,
)
from .._rng import RngLike, resolve_rng, seed_record
from .._validate import as_positive_int, check_output_size, resolve_threads
from ..engine import ChunkPolicy, Records, RunPlan, drive, plan_of_run
from ..mixture import TwoMode
from ..objectives import Objective
from ..results import GradientEstimates, Trajectory
from ._averaging import BatchMean, QuadMean
from ._backend import Backend, get_backend
from ._densities import Mix, alpha_of
from ._objective import (
    Context,
    Extra,
    ObjectiveTwin,
    Params,
    register_params_pytree,
)
from ._registry import twin_for
from ._step import TrainingStep, draw_batch, gradient

_CHUNK_SAMPLES = 1 << 20  # estimate_gradient: samples per vectorised chunk (bounds memory)
#: JAX: recorded values per jitted call (R × records), bounding device memory for the
#: stacked records; a run compiles at most two chunk lengths (full chunks, remainder)
_JAX_RECORD_VALUES = 1 << 24

_BACKEND_DOC = """backend : {"numpy", "torch", "cupy", "jax", "array_api_strict"}
        Array library the twin runs on (default NumPy). See :func:`mixforget.simulate`.
    device : str, int or None
        Device of that library (None: its default, the GPU where there is one).
    precision : {"float64", "float32"}
        Float type of the computation; results come back as float64 NumPy arrays."""


def _record_of(carry: tuple[Any, ...], ctx: Context) -> tuple[Any, ...]:
    """What a record keeps: α, the means, the cumulative starved count and, when the scales
    train, σ_o and σ_n."""
    params, _, starved, _, _ = carry
    alpha = alpha_of(params.weight, ctx.weight_param)
    values: tuple[Any, ...] = (alpha, params.old_mean, params.new_mean, starved)
    if ctx.trains_scales:
        values += (ctx.sd_of(params.old_scale), ctx.sd_of(params.new_scale))
    return values


def _records(host: list[np.ndarray]) -> Records:
    """Host copies of :func:`_record_of`'s values, each with the records on axis 1, as the
    driver's :class:`~mixforget.engine.Records`."""
    scales = np.stack(host[4:6], axis=-1) if len(host) > 4 else None
    return Records(host[0], host[1], host[2], host[3], scales)


#: compiled JAX functions of recent runs, keyed by everything their step closes over (the
#: problem, objective, sizes, learning rates, dtype and device — not the seed, the start
#: parameters or the step count, which are arguments): a repeated or re-seeded run, or one
#: from another start, reuses the compiled code instead of paying XLA's compile again
_JIT_CACHE: OrderedDict[str, Any] = OrderedDict()
_JIT_CACHE_SIZE = 32


def _jit_cached(key: str, build: Any) -> Any:
    fn = _JIT_CACHE.get(key)
    if fn is None:
        fn = _JIT_CACHE[key] = build()
        while len(_JIT_CACHE) > _JIT_CACHE_SIZE:
            _JIT_CACHE.popitem(last=False)
    else:
        _JIT_CACHE.move_to_end(key)
    return fn


def _problem_key(
    kind: str, target: TwoMode, model: TwoMode, objective: Objective, **rest: Any
) -> str:
    """What a compiled step depends on (the model's covariances, not its means)."""
    return json.dumps(
        {
            "kind": kind,
            "target": target.to_dict(),
            "covs": [np.asarray(model.old_cov).tolist(), np.asarray(model.new_cov).tolist()],
            "objective": objective.as_dict(),
            **rest,
        },
        sort_keys=True,
        default=str,
    )


class TwinSimulation:
    """The twin's stepper for :func:`mixforget.engine.drive`: the carry (params, extra state,
    starved counts, diverged flags, random state) on the backend's device, advanced by
    :class:`_Stepper`. Eager backends loop over steps in Python (the host copies at records
    only); JAX runs ``record_every`` steps per ``lax.fori_loop`` and a fixed number of
    records per jitted ``lax.scan`` (one host copy per call; a run compiles at most two
    chunk lengths: full chunks and the remainder)."""

    def __init__(self, plan: RunPlan, be: Backend) -> None:
        assert plan.batch_size is not None and plan.seed is not None
        trained = plan.scale_param if plan.train_scales else None
        r = plan.replicates
        ctx = Context.build(plan.target, plan.start, plan.weight_param, be, trained)
        twin = twin_for(plan.objective, ctx, plan.batch_size)
        random = be.random(plan.seed)
        params = Params.of_model(plan.start, plan.weight_param, r, be, trained)
        starved = be.asarray(np.zeros(r, dtype=np.int64), be.int_dtype)
        diverged = be.asarray(np.zeros(r, dtype=bool), be.bool_dtype)
        self.carry = (params, twin.reset(params), starved, diverged, random.init())
        self.step = TrainingStep(
            ctx, twin, random, r, plan.batch_size, plan.lr, plan.lr_scale, plan.update
        )
        self.be, self.done = be, 0
        self.implementation = be.name
        if be.jit:
            register_params_pytree()
            self._chunk = _jit_cached(_simulate_key(plan, be), lambda: self._build_jax(plan))
            per_record = r * (4 + 2 * ctx.dim)  # α, starved, σ_o, σ_n, the means
            n_records = plan.steps // plan.record_every
            per_call = max(1, min(n_records, _JAX_RECORD_VALUES // max(1, per_record)))
            fixed = per_call * plan.record_every
            self.chunks = ChunkPolicy(first=fixed, quantum=fixed, most=fixed)
        else:
            self.chunks = ChunkPolicy(first=1)

    def first_record(self) -> Records:
        """Record 0, read from the carry (the start parameters as this backend holds them)."""
        return _records([self._host(v)[:, None] for v in _record_of(self.carry, self.step.ctx)])

    def _host(self, value: Any) -> np.ndarray:
        return self.be.to_numpy(value)

    def advance(self, steps: int, record_every: int) -> Records:
        if self.be.jit:
            return self._advance_jax(steps, record_every)
        kept: list[tuple[Any, ...]] = []
        for t in range(self.done + 1, self.done + steps + 1):
            self.carry = self.step(self.carry, t)
            if t % record_every == 0:
                kept.append(tuple(self._host(v) for v in _record_of(self.carry, self.step.ctx)))
        self.done += steps
        if not kept:  # a chunk shorter than record_every crossed no record
            r, d = self.step.r, self.step.ctx.dim
            return Records(np.empty((r, 0)), np.empty((r, 0, d)), np.empty((r, 0, d)))
        return _records([np.stack(column, axis=1) for column in zip(*kept)])

    def _build_jax(self, plan: RunPlan) -> Any:
        import jax

        step, record_every = self.step, plan.record_every

        def block(c: tuple[Any, ...], t0: Any) -> tuple[tuple[Any, ...], Any]:
            c = jax.lax.fori_loop(0, record_every, lambda i, cc: step(cc, t0 + i + 1), c)
            return c, _record_of(c, step.ctx)

        def chunk(c: tuple[Any, ...], starts: Any) -> tuple[tuple[Any, ...], Any]:
            return jax.lax.scan(block, c, starts)

        return jax.jit(chunk)

    def _advance_jax(self, steps: int, record_every: int) -> Records:
        import jax
        import jax.numpy as jnp

        first, n = self.done // record_every, steps // record_every
        starts = jnp.arange(first, first + n, dtype=jnp.int64) * record_every
        self.carry, records = self._chunk(self.carry, jax.device_put(starts, self.be.device))
        self.done += steps
        return _records([np.moveaxis(self._host(v), 0, 1) for v in records])

    def diverged(self) -> np.ndarray:
        return self._host(self.carry[3]).astype(bool)


def _simulate_key(plan: RunPlan, be: Backend) -> str:
    """What a compiled simulate chunk closes over (not the seed, start means or steps)."""
    return _problem_key(
        "simulate",
        plan.target,
        plan.start,
        plan.objective,
        weight_param=plan.weight_param,
        lr=plan.lr,
        scale=plan.lr_scale,
        update=plan.update,
        batch_size=plan.batch_size,
        replicates=plan.replicates,
        record_every=plan.record_every,
        scale_param=plan.scale_param if plan.train_scales else None,
        precision=be.precision,
        device=str(be.device),
    )


# =====================================================================================
# Training loop (docs: theory-training-loop)
# =====================================================================================


def simulate(
    target: TwoMode,
    start: TwoMode,
    objective: Objective,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = DEFAULT_LR,
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
    backend: str = "numpy",
    device: Any = None,
    precision: str = "float64",
    update: str = "sgd",
) -> Trajectory:
    """Finite-batch training of ``replicates`` independent copies of ``start``
    (docs: theory-estimators, theory-training-loop), array-API twin of :func:`mixforget.simulate`,
    vectorised over replicates and batch.

    Each step, for all replicates at once: draw a batch from the objective's sampling
    distribution (labels kept, docs: theory-estimators), form ĝ = (1/B) Σ c_i s(x_i)
    (docs: theory-scores, theory-estimators), update θ ← θ − lr·m⊙ĝ (m = ``lr_scale``; the direct
    weight is then clipped to [1e-3, 1 − 1e-3]), then the SDFT teacher EMA φ ← (1 − τ)φ + τθ, or the
    OAPL lag θ_lag ← θ after step t when t % lag == 0. q_0, the teacher and the lag start at
    ``start``; model covariances are ``start``'s, the world's are ``target``'s. A replicate whose
    parameters become non-finite (after clipping, as in Rust) is flagged ``diverged`` and frozen at
    its last finite state (its later records repeat it; its starved count stops); one that leaves
    the runaway bound of :func:`mixforget.simulate` is flagged and frozen at the state that crossed
    it. Records at steps 0, k, …, T (k = ``record_every`` must divide ``steps``); ``starved`` is the
    cumulative count of
    batches without an old-labelled sample. Raises ValueError when the recorded output would
    exceed ``memory_limit`` bytes.

    ``train_scales=True`` also trains σ_o, σ_n (component k's covariance σ_k²·S_k,
    S_k = Σ_k / det(Σ_k)^{1/d}, σ_k from det(Σ_k)^{1/(2d)}): their score is averaged with the
    means' (:func:`score_mean`), ``scale_param='direct'`` steps on σ and floors it at 1e-3,
    ``'log'`` steps on log σ; the teacher EMA, q_0 and the lag carry them like the other
    parameters. They are recorded in ``old_scale``/``new_scale`` (constant without
    ``train_scales``). ``update='natural'`` preconditions ĝ with the complete-data Fisher
    (:func:`~._step.natural_gradient`) before the update, as :func:`mixforget.simulate`.

    Parameters beyond :func:`mixforget.simulate`'s:

    {backend_doc}

    The same ``rng`` gives the same numbers on the same backend, device and precision; across
    backends the random streams differ and results agree in distribution only. Records are
    the only host copies (JAX: one per chunk of records)."""
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
        update,
    )
    check_output_size(
        "the recorded trajectory and the twin's work arrays",
        records_bytes(target.dim, run.steps // run.record_every + 1, run.replicates)
        + twin_step_bytes(target.dim, run.batch_size, run.replicates),
        f"lower replicates (now {run.replicates}) or batch_size (now {run.batch_size})",
        run.memory_limit,
    )
    be = get_backend(backend, device, precision)
    plan = plan_of_run(target, start, run, resolve_rng(rng))
    device_name = None if be.device is None else str(be.device)
    extra = {"backend": be.name, "device": device_name, "precision": be.precision}
    with be.context():
        return drive(plan, lambda: TwinSimulation(plan, be), progress, extra)


#: Work arrays of one twin step that are alive at once, measured (tracemalloc, NumPy, every
#: objective) with a margin: (R, B) arrays and (R, B, d) arrays per replicate and sample.
_STEP_ARRAYS_FLAT = 12
_STEP_ARRAYS_PER_DIM = 5


def twin_step_bytes(dim: int, batch_size: int, replicates: int) -> int:
    """Bytes of the work arrays of one twin step (every replicate's batch at once, float64):
    an upper bound the memory limit is checked against before any work."""
    return 8 * replicates * batch_size * (_STEP_ARRAYS_FLAT + _STEP_ARRAYS_PER_DIM * dim)


simulate.__doc__ = (simulate.__doc__ or "").replace("{backend_doc}", _BACKEND_DOC)


# =====================================================================================
# One-step gradient studies
# =====================================================================================


def _one_step(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    weight_param: str,
    batch_size: Optional[int],
    backend: Optional[Backend] = None,
    scale_param: Optional[str] = None,
) -> tuple[Context, ObjectiveTwin[Any], Mix, Extra]:
    """The context, the objective's twin, the model as a :class:`Mix` and the extra state
    with its models equal to ``model`` (teacher EMA = model, then anchored; q_0 = lag =
    model); ``scale_param`` (None: fixed covariances) trains the component scales."""
    ctx = Context.build(target, model, weight_param, backend, scale_param)
    twin = twin_for(objective, ctx, batch_size)
    params = Params.of_model(model, weight_param, backend=backend, scale_param=scale_param)
    return ctx, twin, ctx.mix_of(params), twin.reset(params)


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
    backend: str = "numpy",
    device: Any = None,
    precision: str = "float64",
) -> GradientEstimates:
    """``batches`` independent finite-batch estimates ĝ of the loss gradient at ``model``
    (docs: theory-scores, theory-forward-kl, theory-reverse-kl, theory-starvation), with each
    batch's starved flag and old-labelled count; array-API twin of
    :func:`mixforget.estimate_gradient`. SDFT's teacher (before anchoring), TTT-Discover's q_0 and
    OAPL's lagged model equal ``model``. Vectorised over batches in chunks of ~2^20 samples (memory
    bound; the result does not depend on ``threads``; JAX jits the chunk). With
    ``train_scales=True`` the columns are (weight, old_mean[0..d], new_mean[0..d], old_scale,
    new_scale), the scale entries with respect to σ_k ('direct') or log σ_k ('log').

    {backend_doc}"""
    check_models(target, model, "model")
    batch_size = as_positive_int("batch_size", batch_size)
    objective = check_objective(objective, batch_size, target.dim)
    batches = as_positive_int("batches", batches)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    resolve_threads(threads)
    be = get_backend(backend, device, precision)
    d = target.dim
    seq = resolve_rng(rng)
    avg = BatchMean(batch_size)
    grads = np.empty((batches, 1 + 2 * d + (2 if train_scales else 0)))
    old_count = np.empty(batches, dtype=np.int64)
    chunk = max(1, _CHUNK_SAMPLES // (batch_size * d))
    trained = scale_param if train_scales else None
    with be.context():
        ctx, twin, mix, extra = _one_step(
            target, model, objective, weight_param, batch_size, be, trained
        )
        random = be.random(seq)
        xp = ctx.xp

        def one_chunk(state: Any, rows: int) -> tuple[Any, Any, Any]:
            state, x, old = draw_batch(random, state, ctx, twin, rows, batch_size, mix, extra)
            grad = gradient(ctx, twin, x, avg, mix, extra)
            flat = [v if v.ndim == 2 else v[:, None] for v in grad.groups().values()]
            return state, xp.concat(flat, axis=1), xp.sum(xp.astype(old, be.int_dtype), axis=1)

        if be.jit:
            register_params_pytree()
            key = _problem_key(
                "estimate_gradient",
                target,
                model,
                objective,
                weight_param=weight_param,
                batch_size=batch_size,
                scale_param=trained,
                precision=be.precision,
                device=str(be.device),
                # the chunk closes over the model's means too (one-step studies)
                model_params=model.to_dict(),
            )
            run_chunk = _jit_cached(key, lambda: be.compile(one_chunk, static_argnums=1))
        else:
            run_chunk = one_chunk
        state = random.init()
        for lo in range(0, batches, chunk):
            hi = min(batches, lo + chunk)
            state, flat, counts = run_chunk(state, hi - lo)
            grads[lo:hi] = be.to_numpy(flat)
            old_count[lo:hi] = be.to_numpy(counts)
    return GradientEstimates(
        gradients=grads, starved=old_count == 0, old_count=old_count, seed=seed_record(seq)
    )


estimate_gradient.__doc__ = (estimate_gradient.__doc__ or "").replace("{backend_doc}", _BACKEND_DOC)


def population_gradient(
    target: TwoMode,
    model: TwoMode,
    objective: Objective,
    weight_param: str = "logit",
    train_scales: bool = False,
    scale_param: str = "direct",
) -> dict[str, Any]:
    """Exact (G → ∞) loss gradient at ``model`` by brute-force 1-D quadrature; d = 1 only
    (NotImplementedError otherwise). NumPy twin of :func:`mixforget.population_gradient`
    (docs: theory-population).

    The expectation over the objective's sampling distribution (ForwardKL p_train; ReverseKL
    m = (1 − λ)q + λ p_old with weights q/m — the on-policy gradient when uncapped; SDFT q or
    the teacher t; TTT-Discover q; OAPL q_lag = q) is a trapezoid rule on ≥ 200001 points over
    [min mean − 40σ_max, max mean + 40σ_max] (spacing ≤ σ_min/20), with the G → ∞ limits of
    the batch statistics: leave-one-out baselines → full means, A = e/E_q[e] − 1 − λ(log q −
    log q_0), V̂ = β1 log E_lag[e^{r/β1}], adaptive β from KL(tilt ‖ q) = ln 2 with the tilt
    ∝ q e^{βR}. Extra models equal the model. Accuracy ~1e-12 for smooth integrands; O(h)
    (~1e-4 relative) with the discontinuous 'new_indicator' reward.
    Returns {weight: float, old_mean: (1,), new_mean: (1,)}, and with ``train_scales=True``
    also old_scale, new_scale: floats, the derivatives with respect to σ_k ('direct') or
    log σ_k ('log'). Grid points where the sampling density underflows to 0 contribute 0
    (NewModeREINFORCE's ratio q/((1 − α)φ_n) may overflow there)."""
    check_models(target, model, "model")
    objective = check_objective(objective, dim=target.dim)
    weight_param = check_weight_param(weight_param)
    train_scales, scale_param = check_train_scales(train_scales, scale_param)
    if target.dim != 1:
        raise NotImplementedError(
            "reference.population_gradient is brute-force 1-D quadrature: d = 1 only"
        )
    trained = scale_param if train_scales else None
    ctx, twin, mix, extra = _one_step(target, model, objective, weight_param, None, None, trained)

    centers = [
        float(v[0]) for v in (target.old_mean, target.new_mean, model.old_mean, model.new_mean)
    ]
    sds = [
        math.sqrt(float(np.reshape(c, -1)[0]))
        for c in (target.old_cov, target.new_cov, model.old_cov, model.new_cov)
    ]
    lo, hi = min(centers) - 40.0 * max(sds), max(centers) + 40.0 * max(sds)
    n = max(200_001, math.ceil(20.0 * (hi - lo) / min(sds)) | 1)
    x = np.linspace(lo, hi, n).reshape(1, n, 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        avg = QuadMean(twin.sampling_logpdf(x, mix, extra)[0], (hi - lo) / (n - 1))
        grad = gradient(ctx, twin, x, avg, mix, extra)
    out: dict[str, Any] = {
        "weight": float(grad.weight[0]),
        "old_mean": np.asarray(grad.old_mean[0]),
        "new_mean": np.asarray(grad.new_mean[0]),
    }
    if train_scales:
        out["old_scale"] = float(grad.old_scale[0])
        out["new_scale"] = float(grad.new_scale[0])
    return out
