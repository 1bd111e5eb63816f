"""E_{x∼p_j} log q(x) by Gauss–Hermite quadrature (docs: theory-sequences): the model's own
score on task j, exact to the rule's precision, for every replicate.

With x = μ*_j + L z, z ~ N(0, I) (L the task's Cholesky factor) and every model component of
the task's covariance, log φ_c(x) depends on z through its projection on the span of the
whitened model means relative to μ*_j, plus −½|z_⊥|² for every component alike: the rule runs
on that span (m ≤ 3 dimensions) and adds E[−½|z_⊥|²] = −(d − m)/2. Other covariances: a
tensor rule over all d ≤ 3 dimensions.
"""

from __future__ import annotations

import numpy as np

from .._mixture_population import MAX_SPAN, _rule

__all__ = ["expected_log_likelihood"]

_LOG_2PI = np.log(2.0 * np.pi)


def _log_q(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: list[np.ndarray]
) -> np.ndarray:
    """(n,) log Σ_c w_c φ(x; μ_c, Σ_c) at points x (n, d)."""
    terms = []
    for c, cov in enumerate(covs):
        chol = np.linalg.cholesky(cov)
        z = np.linalg.solve(chol, (x - means[c]).T).T
        logdet = 2.0 * np.sum(np.log(np.diag(chol)))
        terms.append(
            np.log(weights[c])
            - 0.5 * np.sum(z * z, axis=1)
            - 0.5 * logdet
            - 0.5 * x.shape[1] * _LOG_2PI
        )
    joint = np.stack(terms, axis=1)
    top = joint.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.sum(np.exp(joint - top), axis=1))


def _one(task_mean, task_cov, weights, means, covs) -> float:
    d = task_mean.size
    chol = np.linalg.cholesky(task_cov)
    shared = all(np.array_equal(c, task_cov) for c in covs)
    if shared:
        rel = np.linalg.solve(chol, (means - task_mean).T)  # (d, m) whitened
        u, sing, _ = np.linalg.svd(rel, full_matrices=False)
        rank = int(np.sum(sing > 1e-12 * max(1.0, float(np.max(np.abs(rel), initial=0.0)))))
        if rank > MAX_SPAN:
            raise NotImplementedError(
                f"E log q integrates spans up to {MAX_SPAN}-D; these means span {rank}"
            )
        z, w = _rule(rank)
        x = task_mean + (z @ u[:, :rank].T) @ chol.T
        return float(np.sum(w * _log_q(x, weights, means, covs)) - 0.5 * (d - rank))
    if d > MAX_SPAN:
        raise NotImplementedError(
            f"E log q with unequal covariances integrates d <= {MAX_SPAN}, got d = {d}"
        )
    z, w = _rule(d)
    return float(np.sum(w * _log_q(task_mean + z @ chol.T, weights, means, covs)))


def expected_log_likelihood(
    task_mean: np.ndarray,
    task_cov: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covs: list[np.ndarray],
) -> np.ndarray:
    """(R,) E_{x∼N(task_mean, task_cov)} log q_r(x) for the R models with ``weights`` (R, m),
    ``means`` (R, m, d) and component covariances ``covs`` (m of (d, d)); NaN for a
    replicate with non-finite parameters."""
    out = np.full(weights.shape[0], np.nan)
    for r in range(weights.shape[0]):
        if (
            np.all(np.isfinite(weights[r]))
            and np.all(np.isfinite(means[r]))
            and np.all(weights[r] > 0)
        ):
            out[r] = _one(np.asarray(task_mean), np.asarray(task_cov), weights[r], means[r], covs)
    return out
