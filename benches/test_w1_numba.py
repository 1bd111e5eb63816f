"""W1 with Numba (optional): the same training loop as ``mixforget.reference.simulate`` for
ReverseKL (no replay, leave-one-out baseline, logit weight, equal scalar covariance, d = 1)
written as ``@njit(parallel=True)`` with ``prange`` over replicates — a third point of
comparison in the W1 group. Skipped when numba is not installed (it is no dependency of
mixforget). Compilation happens in a warm-up outside the timing."""

from __future__ import annotations

import math

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from mixforget import bench as mb  # noqa: E402

GROUP = "W1 simulate ReverseKL d=1"
_LOG_2PI = math.log(2.0 * math.pi)


@numba.njit(parallel=True, cache=False)
def _simulate_rkl_1d(
    replicates,
    steps,
    batch,
    lr,
    eta0,
    mo0,
    mn0,
    var,
    log_a_star,
    log_b_star,
    mo_star,
    mn_star,
    world_var,
    record_every,
    seed,
):
    n_rec = steps // record_every + 1
    rec_w = np.empty((replicates, n_rec))
    rec_mo = np.empty((replicates, n_rec))
    rec_mn = np.empty((replicates, n_rec))
    rec_st = np.zeros((replicates, n_rec), dtype=np.int64)
    diverged = np.zeros(replicates, dtype=np.bool_)
    sd = math.sqrt(var)
    c_model = 0.5 * (math.log(var) + _LOG_2PI)
    c_world = 0.5 * (math.log(world_var) + _LOG_2PI)
    for r in numba.prange(replicates):
        np.random.seed(seed + r)  # one stream per replicate (per-thread state in numba)
        xs = np.empty(batch)
        ells = np.empty(batch)
        ros = np.empty(batch)
        rns = np.empty(batch)
        eta, mo, mn, starved = eta0, mo0, mn0, 0
        rec_w[r, 0] = 1.0 / (1.0 + math.exp(-eta))
        rec_mo[r, 0] = mo
        rec_mn[r, 0] = mn
        dead = False
        for t in range(1, steps + 1):
            if not dead:
                alpha = 1.0 / (1.0 + math.exp(-eta))
                la = math.log(alpha)
                lb = math.log1p(-alpha)
                any_old = False
                total = 0.0
                for i in range(batch):
                    is_old = np.random.random() < alpha
                    x = (mo if is_old else mn) + sd * np.random.standard_normal()
                    any_old = any_old or is_old
                    a = la - 0.5 * (x - mo) ** 2 / var - c_model
                    b = lb - 0.5 * (x - mn) ** 2 / var - c_model
                    m = max(a, b)
                    lq = m + math.log(math.exp(a - m) + math.exp(b - m))
                    pa = log_a_star - 0.5 * (x - mo_star) ** 2 / world_var - c_world
                    pb = log_b_star - 0.5 * (x - mn_star) ** 2 / world_var - c_world
                    mp = max(pa, pb)
                    lp = mp + math.log(math.exp(pa - mp) + math.exp(pb - mp))
                    xs[i] = x
                    ells[i] = lq - lp
                    ros[i] = math.exp(a - lq)
                    rns[i] = math.exp(b - lq)
                    total += lq - lp
                gw = 0.0
                gmo = 0.0
                gmn = 0.0
                for i in range(batch):
                    c = ells[i] - ((total - ells[i]) / (batch - 1) if batch > 1 else 0.0)
                    gw += c * (ros[i] - alpha)
                    gmo += c * ros[i] * (xs[i] - mo)
                    gmn += c * rns[i] * (xs[i] - mn)
                eta_new = eta - lr * gw / batch
                mo_new = mo - lr * gmo / batch / var
                mn_new = mn - lr * gmn / batch / var
                if not any_old:
                    starved += 1
                if math.isfinite(eta_new) and math.isfinite(mo_new) and math.isfinite(mn_new):
                    eta, mo, mn = eta_new, mo_new, mn_new
                else:
                    dead = True
            if t % record_every == 0:
                j = t // record_every
                rec_w[r, j] = 1.0 / (1.0 + math.exp(-eta))
                rec_mo[r, j] = mo
                rec_mn[r, j] = mn
                rec_st[r, j] = starved
        diverged[r] = dead
    return rec_w, rec_mo, rec_mn, rec_st, diverged


def numba_w1(sizes, seed=0):
    """Run the Numba W1 at ``sizes`` (the W1 entry of a size set); returns the records."""
    target, start = mb.default_problem(1)
    steps = int(sizes["steps"])
    a_star = target.old_weight
    return _simulate_rkl_1d(
        int(sizes["replicates"]),
        steps,
        int(sizes["batch_size"]),
        0.05,
        math.log(start.old_weight / (1.0 - start.old_weight)),
        float(start.old_mean[0]),
        float(start.new_mean[0]),
        1.0,
        math.log(a_star),
        math.log1p(-a_star),
        float(target.old_mean[0]),
        float(target.new_mean[0]),
        1.0,
        mb._record_every(steps),
        seed,
    )


@pytest.fixture(scope="module")
def workload(sizes):
    numba_w1({"replicates": 2, "steps": 10, "batch_size": 4})  # compile outside the timing
    return mb.make_workload("W1", sizes["W1"])


@pytest.mark.benchmark(group=GROUP)
def test_w1_numba(benchmark, measure, workload, threads, rounds):
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rec_w, _rec_mo, rec_mn, _, diverged = measure(
        benchmark,
        workload,
        "numba",
        lambda: numba_w1(workload.sizes),
        threads=numba.get_num_threads(),
        rounds=rounds(3),
        steps=workload.steps,
        extra={"numba_version": numba.__version__},
    )
    assert not diverged.any()
    # same law as the Rust engine: final means agree within 5 standard errors
    rust = workload.rust(threads)
    for ours, theirs in (
        (rec_w[:, -1], rust.old_weight[:, -1]),
        (rec_mn[:, -1], rust.new_mean[:, -1, 0]),
    ):
        se = math.sqrt(ours.var() / ours.size + theirs.var() / theirs.size) + 1e-12
        assert abs(ours.mean() - theirs.mean()) <= 5 * se
