"""The specialised NumPy baseline of W1 and W2: ReverseKL training written as the vectorised
loop a careful NumPy user would write.

Why a third ReverseKL exists: the speed claims of docs: speed-workloads compare the Rust
engine with NumPy, and the generic twin (:mod:`mixforget.reference`) is written for
clarity, not speed; beating it alone would flatter the engine. This loop is the honest
baseline: same estimator and update, a different random stream (so equal in distribution,
checked by tests/test_numpy_loop.py), tuned for NumPy. It is the only copy; only the W1 and W2
workloads (and benches/) run it."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .._defaults import DEFAULT_LR
from ._shared import _record_every, default_problem


def _softplus(t: np.ndarray) -> np.ndarray:
    """log(1 + eᵗ) elementwise, stable for any t: max(t, 0) + log1p(e^−|t|) (three times as
    fast as ``np.logaddexp(0, t)`` in NumPy 2.x, same values to rounding)."""
    out = np.abs(t)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(t, 0.0)
    return out


def numpy_loop(
    replicates: int,
    steps: int,
    batch_size: int,
    dim: int = 1,
    lr: float = DEFAULT_LR,
    record_every: Optional[int] = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """W1 (``dim`` = 1) and W2 (``dim`` = 32) written the way a careful NumPy user would for
    this one workload: ReverseKL, the default problem of :func:`default_problem` in ``dim``
    dimensions (Σ = I for model and world), leave-one-out baseline, logit weight, no replay.
    One ``np.random.Generator`` (seeded with ``seed``) draws the labels (R, B) and the normals
    z (R, B, d); the only Python loop runs over steps. It computes the same estimator as
    :func:`mixforget.simulate` (a different random stream, so equal in distribution): per
    sample ℓ = log q − log p*, the responsibilities r_old = q_old/q and r_new = 1 − r_old,
    c = ℓ − mean_{j≠i} ℓ_j, and θ ← θ − lr·(1/B)Σ c·s with s = (r_old − α, r_old(x − μ_old),
    r_new(x − μ_new)).

    Because all four Gaussians share Σ = I, their normalisers and the −½‖x‖² terms cancel in
    ℓ and in r_old: with x = μ_new + [old]·δ + z (δ = μ_old − μ_new, e = μ_new − μ*_new,
    δ* = μ*_old − μ*_new) the log-odds of the model's labels are t = η + z·δ + ([old] − ½)‖δ‖²,
    those of the world's t* = η* + x·δ* − ½(‖μ*_old‖² − ‖μ*_new‖²), and ℓ = z·e + [old]·δ·e +
    softplus(t) − softplus(t*) up to a per-replicate constant, which the leave-one-out
    baseline removes. So a step reads z twice (one batched matmul for the three projections,
    one for the two score sums Σ c·r·z) besides drawing it. A replicate whose parameters turn
    non-finite is frozen at its last finite value, one that crosses the runaway bound
    (``mixforget.results.RUNAWAY_DISTANCE`` / ``RUNAWAY_WEIGHT``) where it crossed, as in
    mixforget.

    Returns a dict of arrays: ``old_weight`` (R, T/k + 1), ``old_mean`` and ``new_mean``
    (R, T/k + 1, d) at steps 0, k, …, T (k = ``record_every``, default gcd(T, 10)),
    ``starved`` (R, T/k + 1, the cumulative count of batches without an old-mode sample) and
    ``diverged`` (R,)."""
    from .. import _core

    r, b, t_steps, d, k = _check_sizes(replicates, batch_size, steps, dim, lr, record_every)
    target, start = default_problem(d)
    rng = np.random.default_rng(seed)
    a_star = float(target.old_weight)
    mo_star = np.asarray(target.old_mean, float)
    mn_star = np.asarray(target.new_mean, float)
    t_star_const = math.log(a_star / (1.0 - a_star)) - 0.5 * (mo_star @ mo_star - mn_star @ mn_star)
    eta = np.full(r, math.log(start.old_weight / (1.0 - start.old_weight)))
    mo = np.tile(np.asarray(start.old_mean, float), (r, 1))
    mn = np.tile(np.asarray(start.new_mean, float), (r, 1))
    # rows of the projections z·v: δ, e (per replicate) and δ* (shared)
    d_star = mo_star - mn_star
    proj_rows = np.empty((r, 3, d))
    proj_rows[:, 2] = d_star
    alive = np.ones(r, dtype=bool)
    starved = np.zeros(r, dtype=np.int64)
    n_rec = t_steps // k + 1
    rec: dict[str, np.ndarray] = {
        "old_weight": np.empty((r, n_rec)),
        "old_mean": np.empty((r, n_rec, d)),
        "new_mean": np.empty((r, n_rec, d)),
        "starved": np.zeros((r, n_rec), dtype=np.int64),
    }

    def record(j: int) -> None:
        rec["old_weight"][:, j] = 1.0 / (1.0 + np.exp(-eta))
        rec["old_mean"][:, j] = mo
        rec["new_mean"][:, j] = mn
        rec["starved"][:, j] = starved

    record(0)
    inv_loo = 1.0 / (b - 1)
    # frozen replicates are still computed (vectorised): their overflows are expected
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(1, t_steps + 1):
            alpha = 1.0 / (1.0 + np.exp(-eta))
            old = rng.random((r, b)) < alpha[:, None]
            old_f = old.astype(float)
            z = rng.standard_normal((r, b, d))
            g_w, g_old, g_new = _batch_gradient(
                eta, mo, mn, alpha, old_f, z, proj_rows, mn_star, d_star, t_star_const, inv_loo
            )
            scale = lr / b
            eta_new = eta - scale * g_w
            mo_new = mo - scale * g_old
            mn_new = mn - scale * g_new
            finite = np.isfinite(eta_new) & np.isfinite(mo_new).all(axis=1)
            finite &= np.isfinite(mn_new).all(axis=1)
            ok = alive & finite
            starved += alive & ~old.any(axis=1)
            eta = np.where(ok, eta_new, eta)
            mo = np.where(ok[:, None], mo_new, mo)
            mn = np.where(ok[:, None], mn_new, mn)
            # the engine's rule on α as computed (recorded), so α = 1.0 is flagged
            alpha_now = 1.0 / (1.0 + np.exp(-eta))
            runaway = (alpha_now <= _core.RUNAWAY_WEIGHT) | (
                1.0 - alpha_now <= _core.RUNAWAY_WEIGHT
            )
            runaway |= np.linalg.norm(mo - mo_star, axis=1) > _core.RUNAWAY_DISTANCE
            runaway |= np.linalg.norm(mn - mn_star, axis=1) > _core.RUNAWAY_DISTANCE
            alive = ok & ~runaway
            if step % k == 0:
                record(step // k)
    rec["diverged"] = ~alive
    return rec


def _check_sizes(
    replicates: int, batch_size: int, steps: int, dim: int, lr: float, record_every: Optional[int]
) -> tuple[int, int, int, int, int]:
    """(R, B, T, d, record interval) of :func:`numpy_loop`, checked."""
    r, b, t_steps, d = int(replicates), int(batch_size), int(steps), int(dim)
    if r < 1 or b < 2 or t_steps < 1 or d < 1:
        raise ValueError(
            "replicates >= 1, batch_size >= 2, steps >= 1 and dim >= 1 required, got "
            f"{r}, {b}, {t_steps}, {d}"
        )
    k = _record_every(t_steps) if record_every is None else int(record_every)
    if k < 1 or t_steps % k:
        raise ValueError(f"record_every must be >= 1 and divide steps={t_steps}, got {k}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    return r, b, t_steps, d, k


def _batch_gradient(
    eta: np.ndarray,
    mo: np.ndarray,
    mn: np.ndarray,
    alpha: np.ndarray,
    old_f: np.ndarray,
    z: np.ndarray,
    proj_rows: np.ndarray,
    mn_star: np.ndarray,
    d_star: np.ndarray,
    t_star_const: float,
    inv_loo: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The summed ReverseKL score-function gradient of one batch per replicate, in the
    logit η and the two means: samples x = μ_[label] + z (``old_f`` the old labels), the
    log-ratio ℓ = log q − log p* through the projections of z, the loo-baselined coefficient
    and the responsibilities. ``proj_rows[:, 2]`` holds δ* = μ_o* − μ_n*; rows 0 and 1 are
    overwritten (δ and the new-mean error)."""
    r, b = old_f.shape
    delta = mo - mn
    err = mn - mn_star
    proj_rows[:, 0] = delta
    proj_rows[:, 1] = err
    z_delta, z_err, z_star = np.matmul(proj_rows, z.transpose(0, 2, 1)).transpose(1, 0, 2)
    delta_sq = np.einsum("ij,ij->i", delta, delta)[:, None]
    t = z_delta + (eta[:, None] - 0.5 * delta_sq) + old_f * delta_sq
    t_star = z_star + (t_star_const + mn @ d_star)[:, None]  # x·δ* + const: t*
    t_star += old_f * (delta @ d_star)[:, None]
    sp = _softplus(t)
    ell = z_err + old_f * np.einsum("ij,ij->i", delta, err)[:, None] + sp
    ell -= _softplus(t_star)
    resp_old = np.exp(t - sp)
    coef = ell * (1.0 + inv_loo) - ell.sum(axis=1, keepdims=True) * inv_loo  # ℓ − LOO mean
    weighted = np.empty((r, 2, b))
    np.multiply(coef, resp_old, out=weighted[:, 0])  # c·r_old
    np.subtract(coef, weighted[:, 0], out=weighted[:, 1])  # c·r_new = c − c·r_old
    g_w = weighted[:, 0].sum(axis=1) - alpha * coef.sum(axis=1)
    g_z = np.matmul(weighted, z)  # (R, 2, d): Σ c·r_old·z, Σ c·r_new·z
    # x − μ_old = z − [new]·δ, x − μ_new = z + [old]·δ
    new_old = np.einsum("ij,ij->i", weighted[:, 0], 1.0 - old_f)[:, None]
    old_new = np.einsum("ij,ij->i", weighted[:, 1], old_f)[:, None]
    return g_w, g_z[:, 0] - new_old * delta, g_z[:, 1] + old_new * delta


def numpy_loop_w1(
    replicates: int,
    steps: int,
    batch_size: int,
    lr: float = DEFAULT_LR,
    record_every: Optional[int] = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The specialised NumPy loop for W1: :func:`numpy_loop` at ``dim`` = 1 with the means
    recorded as (R, T/k + 1) arrays (the single coordinate)."""
    rec = numpy_loop(replicates, steps, batch_size, 1, lr, record_every, seed)
    rec["old_mean"] = rec["old_mean"][:, :, 0]
    rec["new_mean"] = rec["new_mean"][:, :, 0]
    return rec
