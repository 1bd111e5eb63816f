"""W1 (ReverseKL, d = 1, R = 1000, B = 64, LOO baseline, logit weight) per core, side by side:
mixforget on 1 and 2 threads, the specialised NumPy loop, the generic NumPy twin, JAX-CPU
(float64 / float32) and Numba where installed, and the RNG floors (scalar Ziggurat vs the
vectorised generator). "Per core" is process CPU time (user + system, all threads) per
sample, which stays meaningful on a machine shared with other jobs; wall time is printed
beside it (their ratio is the parallelism actually obtained).

``w2`` runs W2 instead (the same at d = 32, means along (1, …, 1)/√32, Σ = I): mixforget, the
specialised NumPy loop (``mixforget.bench.numpy_loop`` at d = 32) and the twin; JAX and Numba
exist for W1 only and are skipped.

``small`` runs W1 at the small batches of issue 23 (B = 4, 8, 16, 64, 512; one thread):
mixforget and the specialised NumPy loop side by side, ns per sample and their ratio.

Run: ``python scripts/w1_per_core.py [w2] [rng rust loop twin jax numba]`` (default: all, W1),
or ``python scripts/w1_per_core.py small``.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import mixforget as mf
from mixforget import _core, reference
from mixforget import bench as mb

R, B = 1000, 64
#: steps timed per implementation: W1 (d = 1) and W2 (d = 32, about 10× the work per sample)
STEPS = {1: {"rust": 200, "loop": 50, "twin": 20}, 32: {"rust": 20, "loop": 5, "twin": 2}}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, fn: Callable[[], Any], units: int, repeats: int = 3) -> float:
    """Best CPU and wall time of ``repeats`` calls after a warm-up; prints ns per unit."""
    fn()
    best_cpu = best_wall = math.inf
    for _ in range(repeats):
        c, w = cpu_seconds(), time.perf_counter()
        fn()
        best_cpu = min(best_cpu, cpu_seconds() - c)
        best_wall = min(best_wall, time.perf_counter() - w)
    print(
        f"{name:<46} cpu {best_cpu / units * 1e9:8.2f} ns/unit (per core)   "
        f"wall {best_wall / units * 1e9:8.2f} ns/unit",
        flush=True,
    )
    return best_cpu / units


def main(which: list[str], dim: int = 1) -> None:
    """Time the implementations in ``which`` on W1 (``dim`` = 1) or W2 (``dim`` = 32), each
    over a number of steps that takes seconds (:data:`STEPS`)."""
    target, start = mb.default_problem(dim)
    name = "W1" if dim == 1 else "W2"
    steps_of = STEPS[dim]

    if "rng" in which:
        n = 2 * 10**7
        measure(
            "normal_floor (scalar Ziggurat), 1 thread", lambda: _core.normal_floor(n, (1, 2), 1), n
        )
        measure(
            "lane_normal_floor (SIMD Ziggurat), 1 thread",
            lambda: _core.lane_normal_floor(n, (1, 2), 1),
            n,
        )
    if "rust" in which:
        steps = steps_of["rust"]
        for threads in (1, 2):
            measure(
                f"mf.simulate {name} T={steps}, {threads} thread(s)",
                lambda threads=threads: mf.simulate(
                    target,
                    start,
                    mf.ReverseKL(),
                    steps=steps,
                    batch_size=B,
                    lr=0.05,
                    replicates=R,
                    record_every=math.gcd(steps, 10),
                    rng=0,
                    threads=threads,
                ),
                R * B * steps,
            )
    if "loop" in which:
        steps = steps_of["loop"]
        measure(
            f"specialised NumPy loop {name} T={steps}",
            lambda: mb.numpy_loop(R, steps, B, dim=dim),
            R * B * steps,
        )
    if "twin" in which:
        steps = steps_of["twin"]
        measure(
            f"generic NumPy twin {name} T={steps}",
            lambda: reference.simulate(
                target,
                start,
                mf.ReverseKL(),
                steps=steps,
                batch_size=B,
                lr=0.05,
                replicates=R,
                record_every=math.gcd(steps, 10),
                rng=0,
            ),
            R * B * steps,
            repeats=2,
        )
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benches"))
    if dim > 1:
        return  # the JAX and Numba versions are written for W1
    if "jax" in which:
        try:
            import jax
        except ImportError:
            print("jax not installed: skipped")
        else:
            jax.config.update("jax_enable_x64", True)
            import jax.numpy as jnp

            from test_w1_jax import make_jax_w1

            steps = 200
            for dtype in ("float64", "float32"):
                run = make_jax_w1(R, steps, B, getattr(jnp, dtype))
                measure(f"JAX-CPU jit + lax.scan W1 {dtype} T={steps}", run, R * B * steps)
    if "numba" in which:
        try:
            import numba
        except ImportError:
            print("numba not installed: skipped")
        else:
            from test_w1_numba import numba_w1

            steps = 100
            for threads in (1, 2):
                numba.set_num_threads(threads)
                measure(
                    f"Numba prange W1 T={steps}, {threads} thread(s)",
                    lambda: numba_w1({"replicates": R, "steps": steps, "batch_size": B}),
                    R * B * steps,
                )


def small_batches(batches: tuple[int, ...] = (4, 8, 16, 64, 512)) -> None:
    """W1 on one thread at each batch size in ``batches``: mixforget against the specialised
    NumPy loop in the same run (about 2·10⁷ samples per Rust call, 2·10⁶ per loop call)."""
    target, start = mb.default_problem(1)
    for b in batches:
        steps = max(31, 2 * 10**7 // (R * b))
        rust = measure(
            f"mf.simulate W1 B={b} T={steps}, 1 thread",
            lambda b=b, steps=steps: mf.simulate(
                target,
                start,
                mf.ReverseKL(),
                steps=steps,
                batch_size=b,
                lr=0.05,
                replicates=R,
                record_every=steps,
                rng=0,
                threads=1,
            ),
            R * b * steps,
        )
        loop_steps = max(5, 2 * 10**6 // (R * b))
        loop = measure(
            f"specialised NumPy loop W1 B={b} T={loop_steps}",
            lambda b=b, loop_steps=loop_steps: mb.numpy_loop(R, loop_steps, b),
            R * b * loop_steps,
        )
        print(f"B={b}: {loop / rust:.2f}x the NumPy loop per core", flush=True)


if __name__ == "__main__":
    words = sys.argv[1:]
    if words == ["small"]:
        small_batches()
        sys.exit(0)
    w2 = "w2" in words
    words = [w for w in words if w != "w2"]
    main(words or ["rng", "rust", "loop", "twin", "jax", "numba"], dim=32 if w2 else 1)
