"""W1 with JAX on the CPU (optional): the specialised NumPy loop's step (``mixforget.bench.
numpy_loop_w1``: ReverseKL, d = 1, leave-one-out baseline, logit weight, default problem) as
one ``jax.jit`` function scanning the steps with ``lax.scan``, in float64 and float32 — a
further point of comparison in the W1 group (XLA uses every core it may). Skipped when jax is
not installed (it is no dependency of mixforget). Compilation happens in a warm-up outside
the timing; divergence is not checked (the default problem does not diverge)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)  # float64 entries, as mixforget computes

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from mixforget import bench as mb  # noqa: E402

GROUP = "W1 simulate ReverseKL d=1"


def make_jax_w1(replicates: int, steps: int, batch: int, dtype: Any, lr: float = 0.05):
    """A jitted run(seed) -> (old weight, old mean, new mean), each (steps + 1, R)."""
    target, start = mb.default_problem(1)
    a_star = float(target.old_weight)
    log_a_star, log_b_star = math.log(a_star), math.log1p(-a_star)
    mo_star, mn_star = float(target.old_mean[0]), float(target.new_mean[0])
    shape = (replicates, batch)
    inv_loo = 1.0 / (batch - 1)

    def step(carry, key):
        eta, mo, mn = carry
        k_label, k_noise = jax.random.split(key)
        alpha = jax.nn.sigmoid(eta)
        old = jax.random.uniform(k_label, shape, dtype) < alpha[:, None]
        x = jnp.where(old, mo[:, None], mn[:, None]) + jax.random.normal(k_noise, shape, dtype)
        d_old = x - mo[:, None]
        d_new = x - mn[:, None]
        log_q_old = jnp.log(alpha)[:, None] - 0.5 * d_old * d_old
        log_q = jnp.logaddexp(log_q_old, jnp.log1p(-alpha)[:, None] - 0.5 * d_new * d_new)
        resp_old = jnp.exp(log_q_old - log_q)
        log_p = jnp.logaddexp(
            log_a_star - 0.5 * (x - mo_star) ** 2, log_b_star - 0.5 * (x - mn_star) ** 2
        )
        ell = log_q - log_p
        coef = ell * (1.0 + inv_loo) - ell.sum(axis=1, keepdims=True) * inv_loo
        coef_old = coef * resp_old
        g_w = coef_old.sum(axis=1) - alpha * coef.sum(axis=1)
        g_old = (coef_old * d_old).sum(axis=1)
        g_new = ((coef - coef_old) * d_new).sum(axis=1)
        scale = lr / batch
        carry = (eta - scale * g_w, mo - scale * g_old, mn - scale * g_new)
        return carry, (jax.nn.sigmoid(carry[0]), carry[1], carry[2])

    eta0 = jnp.full(replicates, math.log(start.old_weight / (1.0 - start.old_weight)), dtype)
    mo0 = jnp.full(replicates, float(start.old_mean[0]), dtype)
    mn0 = jnp.full(replicates, float(start.new_mean[0]), dtype)

    @jax.jit
    def run(seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), steps)
        _, (w, mo, mn) = lax.scan(step, (eta0, mo0, mn0), keys)
        first = (jax.nn.sigmoid(eta0)[None], mo0[None], mn0[None])
        return tuple(jnp.concatenate([f, r]) for f, r in zip(first, (w, mo, mn)))

    return lambda seed=0: tuple(np.asarray(a) for a in jax.block_until_ready(run(seed)))


@pytest.fixture(scope="module")
def workload(sizes):
    return mb.make_workload("W1", sizes["W1"])


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_w1_jax(benchmark, measure, workload, rounds, dtype):
    s = workload.sizes
    steps = workload.numpy_steps
    run = make_jax_w1(int(s["replicates"]), steps, int(s["batch_size"]), getattr(jnp, dtype))
    run(1)  # compile outside the timing
    w, _mo, mn = measure(
        benchmark,
        workload,
        f"jax_{dtype}",
        run,
        threads=mb.usable_cores(),
        rounds=rounds(3),
        samples=workload.numpy_units,
        steps=steps,
        extra={"jax_version": jax.__version__, "dtype": dtype},
    )
    # same law as the specialised NumPy loop at the same steps: final means within 5 SE
    rec = workload.numpy_loop()
    for ours, theirs in ((w[-1], rec["old_weight"][:, -1]), (mn[-1], rec["new_mean"][:, -1])):
        ours = ours.astype(np.float64)
        se = math.sqrt(ours.var() / ours.size + theirs.var() / theirs.size) + 1e-12
        assert abs(ours.mean() - theirs.mean()) <= 5 * se
