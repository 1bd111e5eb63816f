"""Array-API twins of the mixture kernels of :mod:`mixforget.kernels` (docs: theory-geometry,
theory-starvation), same signatures and the same validation; ``backend``/``device``/``precision``
(keyword only) pick the array library (default NumPy float64, see :func:`mixforget.simulate`).
Results come back as NumPy arrays."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._kernels import as_points, mixture_args, sample_args, starvation_args
from .._rng import RngLike, resolve_rng
from .._validate import resolve_threads
from ..objectives import BERNOULLI
from ..theory import stratified_replay_count
from ._backend import Backend, get_backend
from ._densities import Gauss


def _component_logs(
    x: Any, weights: np.ndarray, means: np.ndarray, covs: list[np.ndarray], be: Backend
) -> Any:
    """(n, K) log α_k + log φ_k(x) (one column per component, stacked)."""
    d = means.shape[1]
    logw = np.log(weights)
    cols = [
        float(logw[k]) + Gauss(cov, d, be).logpdf(x, be.asarray(means[k]))
        for k, cov in enumerate(covs)
    ]
    return be.xp.stack(cols, axis=1)


def responsibilities(
    x: Any,
    weights: Any,
    means: Any,
    covs: Any,
    threads: Optional[int] = None,
    *,
    backend: str = "numpy",
    device: Any = None,
    precision: str = "float64",
) -> np.ndarray:
    """Posterior component probabilities r_k(x) = α_k φ_k(x) / q(x), (n, K) float64
    (docs: theory-geometry).

    Any K ≥ 1 (K = 1: weights must be [1.0]); softmax of log α_k + log φ_k(x) with
    log-sum-exp, so rows sum to 1 (to ~1e-15) and stay finite far from every mean.
    ``weights`` (K,) in (0, 1) summing to 1 within 1e-9; ``means`` (K, d) (1-D: K points in
    d = 1); ``covs`` a scalar shared by all, a list of K covariances (scalar, (d,) diagonal,
    (d, d) SPD) or an array with leading axis K; ``x`` (n, d), 1-D when d = 1. float32 and
    strided inputs are converted to float64."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    resolve_threads(threads)
    be = get_backend(backend, device, precision)
    with be.context():
        xp = be.xp
        logs = _component_logs(be.asarray(pts), w, m, c, be)
        e = xp.exp(logs - xp.max(logs, axis=1, keepdims=True))
        out = e / xp.sum(e, axis=1, keepdims=True)
        return be.to_numpy(out).astype(np.float64, copy=False)


def mixture_logpdf(
    x: Any,
    weights: Any,
    means: Any,
    covs: Any,
    threads: Optional[int] = None,
    *,
    backend: str = "numpy",
    device: Any = None,
    precision: str = "float64",
) -> np.ndarray:
    """log q(x) = log Σ_k α_k φ_k(x) for each row of x, (n,) float64, log-sum-exp stable
    (docs: theory-geometry). Arguments as in :func:`responsibilities`."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    resolve_threads(threads)
    be = get_backend(backend, device, precision)
    with be.context():
        xp = be.xp
        logs = _component_logs(be.asarray(pts), w, m, c, be)
        top = xp.max(logs, axis=1)
        out = top + xp.log(xp.sum(xp.exp(logs - top[:, None]), axis=1))
        return be.to_numpy(out).astype(np.float64, copy=False)


def sample_mixture(
    n: int,
    weights: Any,
    means: Any,
    covs: Any,
    rng: RngLike = 0,
    threads: Optional[int] = None,
    *,
    backend: str = "numpy",
    device: Any = None,
    precision: str = "float64",
) -> tuple[np.ndarray, np.ndarray]:
    """n draws from a K-component mixture: label k with probability α_k first (one uniform
    u each: k = #{j < K − 1 : u ≥ α_0 + … + α_j}; two modes: Bernoulli(α), 0 = old), then
    x ~ φ_k (docs: theory-estimators). Returns (x (n, d) float64, labels (n,) int64 component
    indices)."""
    n, w, m, c = sample_args(n, weights, means, covs)
    resolve_threads(threads)
    be = get_backend(backend, device, precision)
    seq = resolve_rng(rng)
    d = m.shape[1]
    with be.context():
        xp = be.xp
        random = be.random(seq)
        state = random.init()
        state, u = random.uniform(state, (n,))
        state, z = random.normal(state, (n, d))
        bounds = be.asarray(np.cumsum(w)[:-1])
        labels = xp.sum(xp.astype(u[:, None] >= bounds[None, :], be.int_dtype), axis=1)
        gauss = [Gauss(cov, d, be) for cov in c]
        means_dev = be.asarray(m)
        if all(g.same(gauss[0]) for g in gauss):
            x = gauss[0].color(z) + xp.take(means_dev, labels, axis=0)
        else:
            x = means_dev[0, :] + gauss[0].color(z)
            for k in range(1, len(gauss)):  # a loop over components, not samples
                xk = means_dev[k, :] + gauss[k].color(z)
                x = xp.where((labels == k)[:, None], xk, x)
        return (
            be.to_numpy(x).astype(np.float64, copy=False),
            be.to_numpy(labels).astype(np.int64, copy=False),
        )


def starvation_counts(
    old_weight: float,
    batch_size: int,
    batches: int,
    replay: float = 0.0,
    slots: str = BERNOULLI,
    rng: RngLike = 0,
    threads: Optional[int] = None,
    *,
    backend: str = "numpy",
    device: Any = None,
    precision: str = "float64",
) -> np.ndarray:
    """Old-labelled samples in each of ``batches`` batches, (batches,) int64
    (docs: theory-starvation).

    bernoulli slots: Binomial(B, λ + (1 − λ)α) (replay and on-policy old draws both count);
    stratified: round(λB) + Binomial(B − round(λB), α), ties away from zero. A batch is
    starved when its count is 0. Binomials come from the backend's own sampler."""
    alpha, b, n, lam = starvation_args(old_weight, batch_size, batches, replay, slots)
    resolve_threads(threads)
    be = get_backend(backend, device, precision)
    seq = resolve_rng(rng)
    with be.context():
        random = be.random(seq)
        if slots == BERNOULLI:
            _, counts = random.binomial(random.init(), b, lam + (1.0 - lam) * alpha, n)
            return be.to_numpy(counts).astype(np.int64, copy=False)
        k = int(stratified_replay_count(lam, b))
        _, counts = random.binomial(random.init(), b - k, alpha, n)
        return k + be.to_numpy(counts).astype(np.int64, copy=False)
