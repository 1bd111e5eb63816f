"""NumPy twins of the mixture kernels of :mod:`mixforget.kernels` (MATH §2, §4.3), same
signatures and the same validation."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._kernels import as_points, mixture_args, sample_args, starvation_args
from .._rng import RngLike, resolve_rng
from .._validate import resolve_threads
from ..theory import stratified_replay_count
from ._densities import Gauss


def _component_logs(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: list[np.ndarray]
) -> np.ndarray:
    """(n, K) log α_k + log φ_k(x)."""
    d = means.shape[1]
    out = np.empty((x.shape[0], weights.size))
    logw = np.log(weights)
    for k, cov in enumerate(covs):
        out[:, k] = logw[k] + Gauss(cov, d).logpdf(x, means[k])
    return out


def responsibilities(
    x: Any, weights: Any, means: Any, covs: Any, threads: Optional[int] = None
) -> np.ndarray:
    """Posterior component probabilities r_k(x) = α_k φ_k(x) / q(x), (n, K) float64 (MATH §2).

    Any K ≥ 1 (K = 1: weights must be [1.0]); softmax of log α_k + log φ_k(x) with
    log-sum-exp, so rows sum to 1 (to ~1e-15) and stay finite far from every mean.
    ``weights`` (K,) in (0, 1) summing to 1 within 1e-9; ``means`` (K, d) (1-D: K points in
    d = 1); ``covs`` a scalar shared by all, a list of K covariances (scalar, (d,) diagonal,
    (d, d) SPD) or an array with leading axis K; ``x`` (n, d), 1-D when d = 1. float32 and
    strided inputs are converted to float64."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    resolve_threads(threads)
    logs = _component_logs(pts, w, m, c)
    logs -= logs.max(axis=1, keepdims=True)
    np.exp(logs, out=logs)
    logs /= logs.sum(axis=1, keepdims=True)
    return logs


def mixture_logpdf(
    x: Any, weights: Any, means: Any, covs: Any, threads: Optional[int] = None
) -> np.ndarray:
    """log q(x) = log Σ_k α_k φ_k(x) for each row of x, (n,) float64, log-sum-exp stable
    (MATH §2). Arguments as in :func:`responsibilities`."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    resolve_threads(threads)
    logs = _component_logs(pts, w, m, c)
    top = logs.max(axis=1)
    return top + np.log(np.exp(logs - top[:, None]).sum(axis=1))


def sample_mixture(
    n: int, weights: Any, means: Any, covs: Any, rng: RngLike = 0, threads: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """n draws from a K-component mixture: label k with probability α_k first (two modes:
    Bernoulli(α), 0 = old), then x ~ φ_k (MATH §4). Returns (x (n, d) float64, labels (n,)
    int64 component indices)."""
    n, w, m, c = sample_args(n, weights, means, covs)
    resolve_threads(threads)
    gen = np.random.default_rng(resolve_rng(rng))
    d = m.shape[1]
    labels = np.searchsorted(np.cumsum(w)[:-1], gen.random(n), side="right").astype(np.int64)
    z = gen.standard_normal((n, d))
    gauss = [Gauss(cov, d) for cov in c]
    if all(g.same(gauss[0]) for g in gauss):
        return gauss[0].color(z) + m[labels], labels
    x = np.empty((n, d))
    for k, g in enumerate(gauss):
        sel = labels == k
        x[sel] = m[k] + g.color(z[sel])
    return x, labels


def starvation_counts(
    old_weight: float,
    batch_size: int,
    batches: int,
    replay: float = 0.0,
    slots: str = "bernoulli",
    rng: RngLike = 0,
    threads: Optional[int] = None,
) -> np.ndarray:
    """Old-labelled samples in each of ``batches`` batches, (batches,) int64 (MATH §4.3).

    bernoulli slots: Binomial(B, λ + (1 − λ)α) (replay and on-policy old draws both count);
    stratified: round(λB) + Binomial(B − round(λB), α), ties away from zero. A batch is
    starved when its count is 0."""
    alpha, b, n, lam = starvation_args(old_weight, batch_size, batches, replay, slots)
    resolve_threads(threads)
    gen = np.random.default_rng(resolve_rng(rng))
    if slots == "bernoulli":
        return gen.binomial(b, lam + (1.0 - lam) * alpha, size=n).astype(np.int64, copy=False)
    k = int(stratified_replay_count(lam, b))
    return (k + gen.binomial(b - k, alpha, size=n)).astype(np.int64, copy=False)
