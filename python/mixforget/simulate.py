"""The front doors of finite-batch training (docs: theory-training-loop) and of one-step
gradient studies: they validate the arguments and hand the run to the engine's driver
(:func:`mixforget.engine.drive`) with the Rust stepper, or to the array-API twin
(:mod:`mixforget.reference`) for the other backends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from . import reference
from ._defaults import DEFAULT_LR
from ._mixture_simulate import mixture_estimate_gradient, mixture_simulate
from ._problem import check_run
from ._rng import RngLike, resolve_rng
from ._validate import DEFAULT_MEMORY_LIMIT as _DEFAULT_LIMIT
from .engine import drive, plan_of_run
from .engine._mixture_route import two_mode_models
from .engine._rust import RustSimulation, rust_gradient_estimates
from .mixture import Mixture, TwoMode
from .objectives import Objective
from .reference._backend import check_backend_args
from .results import GradientEstimates, MixtureTrajectory, Trajectory

__all__ = ["DEFAULT_MEMORY_LIMIT", "estimate_gradient", "simulate"]

DEFAULT_MEMORY_LIMIT = _DEFAULT_LIMIT


def simulate(
    target: TwoMode | Mixture,
    start: TwoMode | Mixture,
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
    backend: str = "rust",
    device: Any = None,
    precision: str = "float64",
    new_components: Optional[Sequence[int]] = None,
    update: str = "sgd",
) -> Trajectory | MixtureTrajectory:
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
    or 1 as computed in float64 (logit: η < −690.8, or η > ~36.7 where α rounds to 1), or,
    with ``train_scales=True``, a σ_k more than ``RUNAWAY_SCALE`` = 10^6 times above or below
    the target's scale of its mode. The constants are ``mixforget.results.RUNAWAY_DISTANCE`` /
    ``RUNAWAY_WEIGHT`` / ``RUNAWAY_SCALE``, the same bound as :attr:`Trajectory.runaway`.
    With ``weight_param="direct"`` the old weight α is clamped to [1e-3, 1 − 1e-3] after every
    update (the logit parametrisation needs no clamp); a start outside it is refused
    (ValueError), as is a start scale below the floor 1e-3 of ``scale_param='direct'``.

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

    ``update='natural'`` preconditions each step with the complete-data Fisher of the
    current model (exact per component, docs: theory-natural-gradient): the weight step is
    divided by α(1−α) (logit η) or multiplied by it (direct α), the mean step of component k
    is Σ_k ĝ_k / w_k (w_o = α, w_n = 1 − α, Σ_k its current covariance), a trained scale's
    step is divided by 2d·w_k/σ_k² (direct σ) or 2d·w_k (log σ); ``lr_scale`` and the floors
    apply as with ``'sgd'`` (the default, plain steps θ ← θ − lr·m⊙ĝ).

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

    K-component mixtures (docs: theory-k-components): ``target`` and ``start`` may be
    :class:`~mixforget.Mixture` values of the same K. K = 2 runs as the TwoMode it is
    (:meth:`Mixture.to_two_mode`), bit for bit. K ≥ 3 runs ForwardKL and ReverseKL on the
    K-component engine (``backend="rust"``, or ``"numpy"`` for its NumPy twin; the two agree
    in distribution) and returns a :class:`~mixforget.results.MixtureTrajectory`.
    ``new_components``: the target components of the new task (default: the last); the
    objective's ``replay_mix`` spreads the replay over the others. ``update``: 'sgd' or
    'natural' (the complete-data natural gradient, for K = 2 as described above).
    """
    check_backend_args(backend, device, precision)
    models = two_mode_models(target, start, objective, new_components, update)
    if models is None:
        return mixture_simulate(
            target,
            start,
            objective,
            backend=backend,
            rng=rng,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            replicates=replicates,
            record_every=record_every,
            weight_param=weight_param,
            lr_scale=lr_scale,
            threads=threads,
            progress=progress,
            memory_limit=memory_limit,
            train_scales=train_scales,
            device=device,
            precision=precision,
            new_components=new_components,
            update=update,
        )
    target, start = models
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
            update=update,
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
        update,
    )
    plan = plan_of_run(target, start, run, resolve_rng(rng))
    return drive(plan, lambda: RustSimulation(plan), progress)


def estimate_gradient(
    target: TwoMode | Mixture,
    model: TwoMode | Mixture,
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
    new_components: Optional[Sequence[int]] = None,
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
    :func:`simulate` (default ``"rust"``).

    Mixtures as in :func:`simulate`: K = 2 gives the TwoMode's numbers; K ≥ 3 (ForwardKL,
    ReverseKL; ``backend`` 'rust' or 'numpy') gives ``gradients`` (batches, (K−1) + K d) in the
    order [η_0 … η_{K−2}, μ_0, …, μ_{K−1}] (η the free softmax logits), ``starved`` (batches, K)
    per component and ``old_count`` the old-labelled samples per batch."""
    check_backend_args(backend, device, precision)
    models = two_mode_models(target, model, objective, new_components, "sgd", "model")
    if models is None:
        return mixture_estimate_gradient(
            target,
            model,
            objective,
            batch_size=batch_size,
            batches=batches,
            rng=rng,
            new_components=new_components,
            backend=backend,
            threads=threads,
            weight_param=weight_param,
            train_scales=train_scales,
        )
    target, model = models
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
    return rust_gradient_estimates(
        target,
        model,
        objective,
        batch_size,
        batches,
        rng,
        weight_param,
        threads,
        train_scales,
        scale_param,
    )
