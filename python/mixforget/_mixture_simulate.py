"""The K-component (K ≥ 3) side of :func:`mixforget.simulate` and
:func:`mixforget.estimate_gradient` (docs: theory-k-components): validate into a
:class:`~mixforget.engine._mixture_plan.MixturePlan`, pick the stepper of the backend
(:func:`mixture_stepper`, the one place that does), run it through the driver.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._rng import RngLike, resolve_rng, seed_record
from ._validate import as_positive_int
from .engine import drive
from .engine._mixture_plan import MixturePlan, plan_mixture_gradient, plan_mixture_run
from .engine._rust import RustMixtureSimulation, rust_mixture_gradient_estimates
from .reference.mixture_engine import (
    Components,
    MixtureParams,
    NumpyMixtureSimulation,
    TargetSources,
    estimator_of,
    flat_gradient,
    starved_components,
)
from .results import GradientEstimates, MixtureTrajectory

__all__ = [
    "check_mixture_backend",
    "mixture_estimate_gradient",
    "mixture_simulate",
    "mixture_stepper",
]

#: samples × components per chunk of a one-step study
_CHUNK_SAMPLES = 1 << 18


def check_mixture_backend(backend: str) -> None:
    """Refuse a backend the K-component engine does not run on (NotImplementedError): 'rust'
    (``_core.MixtureSimulator``) and 'numpy' (the twin) run K ≥ 3; the array-API twins
    (torch, jax, cupy) are two-mode only."""
    if backend not in ("rust", "numpy"):
        raise NotImplementedError(
            f"backend={backend!r} is not implemented for K >= 3 components; use backend='rust' "
            "or backend='numpy'"
        )


def mixture_stepper(plan: MixturePlan, backend: str) -> Callable[[], Any]:
    """The stepper factory of a K-component run on ``backend`` (checked first); the one
    place that picks it."""
    check_mixture_backend(backend)
    if backend == "rust":
        return lambda: RustMixtureSimulation(plan)
    return lambda: NumpyMixtureSimulation(plan)


def mixture_simulate(
    target: Any, start: Any, objective: Any, *, backend: str, rng: RngLike, **settings: Any
) -> MixtureTrajectory:
    """:func:`mixforget.simulate` for K ≥ 3 mixtures; ``settings`` are its keywords."""
    device, precision = settings.pop("device"), settings.pop("precision")
    if device not in (None, "cpu") or precision != "float64":
        raise NotImplementedError(
            "K-component runs (K >= 3) run on the CPU in float64 (device None, precision 'float64')"
        )
    plan = plan_mixture_run(
        target,
        start,
        objective,
        new_components=settings["new_components"],
        steps=settings["steps"],
        record_every=settings["record_every"],
        lr=settings["lr"],
        lr_scale=settings["lr_scale"],
        update=settings["update"],
        weight_param=settings["weight_param"],
        train_scales=settings["train_scales"],
        batch=(
            settings["batch_size"],
            settings["replicates"],
            settings["threads"],
            resolve_rng(rng),
        ),
        memory_limit=settings["memory_limit"],
    )
    open_stepper = mixture_stepper(plan, backend)
    return drive(plan, open_stepper, settings["progress"])


def mixture_estimate_gradient(
    target: Any,
    model: Any,
    objective: Any,
    *,
    batch_size: Any,
    batches: Any,
    rng: RngLike,
    new_components: Any,
    backend: str,
    threads: Any = None,
    weight_param: Any = "logit",
    train_scales: Any = False,
) -> GradientEstimates:
    """:func:`mixforget.estimate_gradient` for K ≥ 3 mixtures (Rust or the NumPy twin):
    ``gradients`` (batches, P) in the flat order [η_0 … η_{K−2}, μ_0, …, μ_{K−1}], ``starved``
    (batches, K) per component, ``old_count`` the old-labelled samples per batch."""
    check_mixture_backend(backend)
    batches = as_positive_int("batches", batches, minimum=2)
    seq = resolve_rng(rng)
    plan = plan_mixture_gradient(
        target,
        model,
        objective,
        new_components=new_components,
        weight_param=weight_param,
        train_scales=train_scales,
        batch=(batch_size, batches, threads, seq),
    )
    assert plan.batch_size is not None
    if backend == "rust":
        grads_r, starved_r, old_r = rust_mixture_gradient_estimates(plan, seq)
        return GradientEstimates(
            gradients=grads_r, starved=starved_r, old_count=old_r, seed=seed_record(seq)
        )
    rng_np = np.random.default_rng(seq)
    comps = Components.of(plan.start)
    sources = TargetSources(plan)
    estimate = estimator_of(plan.objective)
    grads, starved, old_count = [], [], []
    # chunks of batches bound the (chunk, B, K, d) temporaries
    per_chunk = max(1, _CHUNK_SAMPLES // (plan.batch_size * plan.n_components))
    for first in range(0, batches, per_chunk):
        rows = min(per_chunk, batches - first)
        params = MixtureParams.of(plan.start, rows)
        g_eta, g_mu, labels = estimate(
            plan, sources, params, comps, (rows, plan.batch_size), rng_np
        )
        grads.append(flat_gradient(g_eta, g_mu))
        starved.append(starved_components(labels, plan.n_components).astype(bool))
        old_count.append(np.isin(labels, plan.old_components).sum(axis=1).astype(np.int64))
    return GradientEstimates(
        gradients=np.concatenate(grads),
        starved=np.concatenate(starved),
        old_count=np.concatenate(old_count),
        seed=seed_record(seq),
    )
