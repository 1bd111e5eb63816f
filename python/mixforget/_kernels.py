"""The validated Rust mixture and starvation kernels: everything of :mod:`mixforget.kernels`
that needs no model or objective type, so that :class:`mixforget.TwoMode` can use them while
:mod:`mixforget.kernels` (whose ``replay_weights`` takes TwoMode models) sits above it.
Public names are re-exported by :mod:`mixforget.kernels`; see its docstring."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._chunks import timed_ranges
from ._rng import RngLike, resolve_rng, root_key
from ._validate import (
    as_float_array,
    as_fraction,
    as_positive_int,
    as_probability,
    check_output_size,
    normalize_covs,
    resolve_threads,
)

#: Rows (points, batches) of the first call of a chunked kernel; later calls are sized from
#: the measured rate to about 0.1 s each (``_chunks.timed_chunks``).
FIRST_ROWS = 2**16


def mixture_args(
    weights: Any, means: Any, covs: Any
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Validate a K-component mixture: weights (K,) in (0, 1) summing to 1 (K = 1: [1.0]),
    means (K, d) (1-D means are K points in d = 1), covs per :func:`normalize_covs`."""
    w = as_float_array("weights", weights, ndim=(0, 1)).reshape(-1)
    k = w.size
    if k == 0:
        raise ValueError("weights must have at least one component")
    if k == 1:
        if abs(w[0] - 1.0) > 1e-9:
            raise ValueError(f"weights of a single component must be [1.0], got {w.tolist()}")
    elif np.any((w <= 0.0) | (w >= 1.0)):
        raise ValueError(f"weights must each be in the open interval (0, 1), got {w.tolist()}")
    if abs(w.sum() - 1.0) > 1e-9:
        raise ValueError(f"weights must sum to 1 (within 1e-9), got sum {w.sum()!r}")
    m = as_float_array("means", means, ndim=(1, 2))
    if m.ndim == 1:
        m = m.reshape(-1, 1)
    if m.shape[0] != k or m.shape[1] == 0:
        raise ValueError(f"means must have shape ({k}, d) to match weights, got {np.shape(means)}")
    return w, m, normalize_covs("covs", covs, k, m.shape[1])


def as_points(x: Any, dim: int) -> np.ndarray:
    """x as (n, d) float64; a 1-D x is n points when d = 1."""
    arr = as_float_array("x", x, ndim=(1, 2))
    if arr.ndim == 1:
        if dim != 1:
            raise ValueError(f"x must have shape (n, {dim}), got {arr.shape}")
        arr = arr.reshape(-1, 1)
    if arr.shape[1] != dim:
        raise ValueError(f"x must have shape (n, {dim}), got {arr.shape}")
    return arr


def responsibilities(
    x: Any, weights: Any, means: Any, covs: Any, threads: int | None = None
) -> np.ndarray:
    """Posterior component probabilities r_k(x) = w_k φ_k(x) / Σ_j w_j φ_j(x)
    (docs: theory-geometry).

    (n, K), log-sum-exp stable (rows sum to 1 to 1e-12, no NaN far in the tails); two
    components with equal covariance use the logistic form r_0 = σ(aᵀx + b), one dot product
    and one sigmoid per point."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    check_output_size(
        f"responsibilities of n={pts.shape[0]} points",
        pts.shape[0] * w.size * 8,
        "pass fewer points per call",
    )
    out = np.empty((pts.shape[0], w.size))
    n_threads = resolve_threads(threads)
    # calls of about 0.1 s, so that Ctrl-C stops a large request promptly
    for start, stop in timed_ranges(pts.shape[0], FIRST_ROWS):
        out[start:stop] = _core.responsibilities(pts[start:stop], w, m, c, n_threads)
    return out


def mixture_logpdf(
    x: Any, weights: Any, means: Any, covs: Any, threads: int | None = None
) -> np.ndarray:
    """log Σ_k w_k φ(x; μ_k, Σ_k) for each row of x, log-sum-exp stable."""
    w, m, c = mixture_args(weights, means, covs)
    pts = as_points(x, m.shape[1])
    check_output_size(
        f"log-densities of n={pts.shape[0]} points", pts.shape[0] * 8, "pass fewer points per call"
    )
    out = np.empty(pts.shape[0])
    n_threads = resolve_threads(threads)
    for start, stop in timed_ranges(pts.shape[0], FIRST_ROWS):
        out[start:stop] = _core.mixture_logpdf(pts[start:stop], w, m, c, n_threads)
    return out


def sample_args(
    n: Any, weights: Any, means: Any, covs: Any
) -> tuple[int, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Validated (n, weights, means, covs) of a sampling request (shared with the twin)."""
    n = as_positive_int("n", n)
    w, m, c = mixture_args(weights, means, covs)
    check_output_size(
        f"sampling n={n} points", n * (m.shape[1] + 1) * 8, "draw fewer points per call"
    )
    return n, w, m, c


def sample_mixture(
    n: int, weights: Any, means: Any, covs: Any, rng: RngLike = 0, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n points: label k with probability w_k, then x ~ N(μ_k, Σ_k) (docs: theory-estimators).

    Returns (x (n, d) float64, labels (n,) int64 component indices)."""
    n, w, m, c = sample_args(n, weights, means, covs)
    key = root_key(resolve_rng(rng))
    n_threads = resolve_threads(threads)
    x = np.empty((n, m.shape[1]))
    labels = np.empty(n, dtype=np.int64)
    # calls of about 0.1 s (Ctrl-C) cut at stream boundaries: the same draws as one call
    per_stream = _core.SAMPLES_PER_STREAM
    for start, stop in timed_ranges(n, FIRST_ROWS, quantum=per_stream):
        x[start:stop], labels[start:stop] = _core.sample_mixture(
            stop - start, w, m, c, key, n_threads, first_stream=start // per_stream
        )
    return x, labels


def starvation_args(
    old_weight: Any, batch_size: Any, batches: Any, replay: Any, slots: Any
) -> tuple[float, int, int, float]:
    """Validated (α, B, batches, λ) of a starvation-count request (shared with the twin)."""
    alpha = as_probability("old_weight", old_weight)
    b = as_positive_int("batch_size", batch_size)
    nb = as_positive_int("batches", batches)
    lam = as_fraction("replay", replay)
    if slots not in ("bernoulli", "stratified"):
        raise ValueError(f"slots must be 'bernoulli' or 'stratified', got {slots!r}")
    check_output_size(f"batches={nb} counts", nb * 8, "count fewer batches per call")
    return alpha, b, nb, lam


def starvation_counts(
    old_weight: float,
    batch_size: int,
    batches: int,
    replay: float = 0.0,
    slots: str = "bernoulli",
    rng: RngLike = 0,
    threads: int | None = None,
) -> np.ndarray:
    """Old-labelled samples in each of ``batches`` batches of size B (docs: theory-starvation).

    On-policy draws are old w.p. α; replay draws (fraction λ) are always old. Bernoulli slots:
    Binomial(B, λ + (1−λ)α); stratified: round(λB) + Binomial(B − round(λB), α). A batch is
    starved when its count is 0: P = ((1−λ)(1−α))^B for Bernoulli slots. The samples are not
    materialised. Returns (batches,) int64."""
    alpha, b, nb, lam = starvation_args(old_weight, batch_size, batches, replay, slots)
    key = root_key(resolve_rng(rng))
    n_threads = resolve_threads(threads)
    out = np.empty(nb, dtype=np.int64)
    # calls of about 0.1 s (Ctrl-C) cut at stream boundaries: the same counts as one call
    per_stream = _core.SAMPLES_PER_STREAM
    for start, stop in timed_ranges(nb, FIRST_ROWS, quantum=per_stream):
        out[start:stop] = _core.starvation_counts(
            alpha,
            b,
            stop - start,
            lam,
            slots == "stratified",
            key,
            n_threads,
            first_stream=start // per_stream,
        )
    return out
