"""``mixforget bench [--quick]``: the Rust engine against its honest NumPy twin on this machine
(docs: speed-workloads).

Workloads (docs: speed-workloads; the pytest-benchmark suite in ``benches/`` runs them at full size,
this command at sizes that finish in under a minute, ``--quick`` in about ten seconds):

- **W1** ``simulate`` ReverseKL, d = 1 (default problem of docs: theory-model, start with the new
  mean at 0.5), R replicates × B samples × T steps; also timed on one thread (thread scaling);
- **W2** the same at d = 32, means along the unit direction (1, …, 1)/√32, Σ = I;
- **W3a / W3b** ``kernels.responsibilities`` (docs: theory-geometry) on n points, d = 1 and d = 32;
- **W4** ``kernels.starvation_counts`` (docs: theory-starvation), α = 0.05, B = 32.

Each row reports the best of a few repeats, the speed-up per unit of work (the NumPy twin may
run fewer steps; its time is scaled per step to the Rust size), the Rust cost in ns per sample
per core, and its multiple of the *RNG floor*: the time the workload's generator takes to draw
the same number of standard normals alone (same threads) in this run. W1 and W2 draw every
batch from the replicate's eight-lane SIMD generator, so their floor is
``mixforget._core.lane_normal_floor``; W4 draws its uniforms from the scalar Xoshiro256++
streams, so its floor is ``mixforget._core.normal_floor`` (scalar Ziggurat); W3 draws nothing
and is compared with the lane generator, the fastest way the engine produces normals.
What counts as a sample and as "the same normals":

- W1/W2: a sample is one drawn point of one batch (R·T·B samples); the floor draws R·T·B·d
  normals;
- W3: a sample is one input point (no randomness: the floor draws n·d normals, the cost of
  producing as many numbers as the kernel reads);
- W4: a sample is one batch (its count is a single binomial variate; the samples are not
  materialised): the floor draws one normal per batch.

Beside the generic NumPy twin, W1 and W2 are timed against :func:`numpy_loop`, the specialised
vectorised NumPy loop a careful NumPy user would write for these two workloads.

Public: :func:`main` (the CLI entry), :func:`run_benchmarks`, :func:`format_table`,
:func:`make_workload`, :func:`default_problem`, :func:`numpy_loop`, :func:`numpy_loop_w1`,
:func:`rng_floor`, :data:`FLOOR_GENERATORS`, :func:`machine_info`,
:func:`usable_cores`, :data:`FULL_SIZES`, :data:`CLI_SIZES`, :data:`QUICK_SIZES`,
:data:`SMOKE_SIZES`. ``benches/`` builds its workloads with the same helpers.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Optional

import numpy as np

from ._defaults import DEFAULT_LR, DEFAULT_PROBLEM

__all__ = [
    "CLI_SIZES",
    "FLOOR_GENERATORS",
    "FULL_SIZES",
    "QUICK_SIZES",
    "SMOKE_SIZES",
    "WORKLOADS",
    "Workload",
    "best_of",
    "default_problem",
    "format_table",
    "machine_info",
    "main",
    "make_workload",
    "numpy_loop",
    "numpy_loop_w1",
    "rng_floor",
    "run_backend_w1",
    "run_benchmarks",
    "usable_cores",
]

#: Workload keys in table order.
WORKLOADS: tuple[str, ...] = ("W1", "W2", "W3a", "W3b", "W4")

_SIM_FULL = {"replicates": 1000, "batch_size": 64, "steps": 1000, "numpy_steps": 1000}

#: docs: speed-workloads sizes (the ``benches/`` suite). NumPy runs the full T too (W1 ≈ 7 s, W2 ≈
#: 50 s).
FULL_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, **_SIM_FULL},
    "W2": {"dim": 32, **_SIM_FULL},
    "W3a": {"points": 10**7, "dim": 1},
    "W3b": {"points": 10**6, "dim": 32},
    "W4": {"batches": 10**8, "batch_size": 32, "old_weight": 0.05},
}

#: ``mixforget bench``: the whole table in under a minute on 2 cores (NumPy scaled per step).
CLI_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, "replicates": 1000, "batch_size": 64, "steps": 400, "numpy_steps": 100},
    "W2": {"dim": 32, "replicates": 1000, "batch_size": 64, "steps": 100, "numpy_steps": 20},
    "W3a": {"points": 5 * 10**6, "dim": 1},
    "W3b": {"points": 5 * 10**5, "dim": 32},
    "W4": {"batches": 2 * 10**7, "batch_size": 32, "old_weight": 0.05},
}

#: ``mixforget bench --quick``: about ten seconds.
QUICK_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, "replicates": 500, "batch_size": 64, "steps": 100, "numpy_steps": 20},
    "W2": {"dim": 32, "replicates": 500, "batch_size": 64, "steps": 20, "numpy_steps": 5},
    "W3a": {"points": 10**6, "dim": 1},
    "W3b": {"points": 10**5, "dim": 32},
    "W4": {"batches": 5 * 10**6, "batch_size": 32, "old_weight": 0.05},
}

#: Tiny sizes: a smoke run that checks the wiring in well under a second per workload
#: (``benches/`` under ``--benchmark-disable``, the tests).
SMOKE_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, "replicates": 16, "batch_size": 8, "steps": 10, "numpy_steps": 10},
    "W2": {"dim": 32, "replicates": 8, "batch_size": 8, "steps": 10, "numpy_steps": 5},
    "W3a": {"points": 2000, "dim": 1},
    "W3b": {"points": 500, "dim": 32},
    "W4": {"batches": 5000, "batch_size": 32, "old_weight": 0.05},
}

_TITLES = {
    "W1": "simulate ReverseKL d=1",
    "W2": "simulate ReverseKL d=32",
    "W3a": "responsibilities",  # the sizes (describe) give n and d
    "W3b": "responsibilities",
    "W4": "starvation_counts",
}

_FLOOR_KEY = (0x6D69_7866_6F72_6765, 0x666C_6F6F_7221)  # fixed root key of the floor probe

#: The generators an RNG floor can time: ``"lane"`` (the eight-lane SIMD generator of every
#: replicate stream of ``simulate``, ``_core.lane_normal_floor``) and ``"scalar"`` (the scalar
#: Xoshiro256++ + Ziggurat of the other kernels, ``_core.normal_floor``).
FLOOR_GENERATORS: tuple[str, ...] = ("lane", "scalar")

#: The generator each workload draws from (W3 draws nothing: the engine's fastest normals).
_FLOOR_GENERATOR = {"W1": "lane", "W2": "lane", "W3a": "lane", "W3b": "lane", "W4": "scalar"}


# ---------------------------------------------------------------------------------------
# machine and timing helpers
# ---------------------------------------------------------------------------------------
def usable_cores() -> int:
    """Cores this process may run on (the CPU affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict[str, Any]:
    """CPU model (/proc/cpuinfo), core counts, Python / NumPy / mixforget versions."""
    from . import __version__

    return {
        "cpu": _cpu_model(),
        "cores": usable_cores(),
        "cpu_count": os.cpu_count() or 1,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mixforget": __version__,
        "platform": platform.platform(),
    }


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time (seconds, ``time.perf_counter``) of ``repeats`` calls of ``fn``."""
    best = math.inf
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def rng_floor(normals: int, threads: int, repeats: int = 3, generator: str = "lane") -> float:
    """The RNG floor: best time (s) of drawing ``normals`` standard normals in Rust alone, in
    parallel chunks on ``threads`` threads, with ``generator`` (one of
    :data:`FLOOR_GENERATORS`): ``"lane"`` (default) the eight-lane SIMD generator that every
    replicate stream of ``simulate`` draws its batches from (``_core.lane_normal_floor``),
    ``"scalar"`` the scalar Xoshiro256++ + Ziggurat of the other kernels
    (``_core.normal_floor``)."""
    from . import _core

    if generator not in FLOOR_GENERATORS:
        raise ValueError(f"generator must be one of {list(FLOOR_GENERATORS)}, got {generator!r}")
    draw = _core.lane_normal_floor if generator == "lane" else _core.normal_floor
    n = max(1, int(normals))
    return best_of(lambda: draw(n, _FLOOR_KEY, int(threads)), repeats)


# ---------------------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------------------
def default_problem(dim: int = 1) -> tuple[Any, Any]:
    """The default problem of docs: theory-model in ``dim`` dimensions, means along u = (1, …,
    1)/√d: target TwoMode(old_mean=−3u, new_mean=3.5u, old_weight=0.75, cov=1.0) and the start
    ``target.replace(new_mean=0.5u)``. Returns (target, start)."""
    from .mixture import TwoMode

    u = np.ones(int(dim)) / math.sqrt(int(dim))
    along_u = {**DEFAULT_PROBLEM["target"]}
    along_u.update({key: along_u[key][0] * u for key in ("old_mean", "new_mean")})
    target = TwoMode(**along_u)
    return target, target.replace(new_mean=DEFAULT_PROBLEM["start_new_mean"][0] * u)


def _record_every(steps: int) -> int:
    return math.gcd(int(steps), 10)


@dataclass(frozen=True)
class Workload:
    """One docs: speed-workloads workload at given sizes.

    ``rust(threads)`` and ``numpy()`` run it once (the NumPy twin on ``numpy_units`` samples,
    possibly fewer steps than Rust). ``rust_units`` / ``numpy_units``: samples processed (see
    the module docstring for what a sample is); ``normals``: the RNG-floor size of the Rust
    call, ``floor_generator`` the generator of its floor (see :func:`rng_floor`).
    ``numpy_scale`` = rust_units / numpy_units multiplies NumPy times to the Rust size.
    ``steps`` / ``numpy_steps`` are set for the simulate workloads (per-step comparison).
    ``numpy_loop()`` (W1 and W2, else None) runs the specialised vectorised NumPy loop
    (:func:`numpy_loop_w1` for W1, :func:`numpy_loop` at d = 32 for W2) on ``numpy_units``
    samples."""

    key: str
    title: str
    sizes: Mapping[str, Any]
    unit: str
    rust_units: int
    numpy_units: int
    normals: int
    rust: Callable[[int], Any] = field(repr=False)
    numpy: Callable[[], Any] = field(repr=False)
    steps: Optional[int] = None
    numpy_steps: Optional[int] = None
    numpy_loop: Optional[Callable[[], Any]] = field(default=None, repr=False)
    floor_generator: str = "lane"

    @property
    def numpy_scale(self) -> float:
        return self.rust_units / self.numpy_units

    def describe(self) -> str:
        """Sizes in a compact human form, e.g. ``R=1000 B=64 T=1000 (NumPy T=100)``."""
        s = dict(self.sizes)
        if self.key in ("W1", "W2"):
            text = f"R={s['replicates']} B={s['batch_size']} T={s['steps']}"
            if self.numpy_steps != self.steps:
                text += f" (NumPy T={self.numpy_steps})"
            return text
        if self.key in ("W3a", "W3b"):
            return f"n={_si(s['points'])} d={s['dim']}"
        return f"{_si(s['batches'])} batches B={s['batch_size']} α={s['old_weight']}"


def _si(n: int) -> str:
    n = int(n)
    if n >= 10**6 and n % 10**5 == 0:
        exp = math.floor(math.log10(n))
        mant = n / 10**exp
        return f"{mant:g}e{exp}" if mant != 1 else f"1e{exp}"
    return str(n)


def make_workload(key: str, sizes: Mapping[str, Any] | None = None) -> Workload:
    """Build workload ``key`` ("W1", "W2", "W3a", "W3b" or "W4") at ``sizes`` (merged over
    :data:`FULL_SIZES`). W3 draws its input points here (seeded), outside any timing."""
    if key not in FULL_SIZES:
        raise ValueError(f"unknown workload {key!r}; expected one of {list(FULL_SIZES)}")
    s = {**FULL_SIZES[key], **(sizes or {})}
    if key in ("W1", "W2"):
        return _simulate_workload(key, s)
    if key in ("W3a", "W3b"):
        return _responsibilities_workload(key, s)
    return _starvation_workload(key, s)


def _simulate_workload(key: str, s: dict[str, Any]) -> Workload:
    from . import reference
    from .objectives import ReverseKL
    from .simulate import simulate

    d, r, b, t = int(s["dim"]), int(s["replicates"]), int(s["batch_size"]), int(s["steps"])
    tn = int(s.get("numpy_steps", t))
    s["numpy_steps"] = tn
    target, start = default_problem(d)
    objective = ReverseKL()

    def rust(threads: int) -> Any:
        return simulate(
            target,
            start,
            objective,
            steps=t,
            batch_size=b,
            lr=DEFAULT_LR,
            replicates=r,
            record_every=_record_every(t),
            rng=0,
            threads=threads,
        )

    def numpy_() -> Any:
        return reference.simulate(
            target,
            start,
            objective,
            steps=tn,
            batch_size=b,
            lr=DEFAULT_LR,
            replicates=r,
            record_every=_record_every(tn),
            rng=0,
        )

    def numpy_loop_() -> Any:
        kw: dict[str, Any] = dict(lr=DEFAULT_LR, record_every=_record_every(tn), seed=0)
        return numpy_loop_w1(r, tn, b, **kw) if d == 1 else numpy_loop(r, tn, b, dim=d, **kw)

    return Workload(
        key,
        _TITLES[key],
        s,
        "drawn point",
        r * t * b,
        r * tn * b,
        r * t * b * d,
        rust,
        numpy_,
        steps=t,
        numpy_steps=tn,
        numpy_loop=numpy_loop_,
        floor_generator=_FLOOR_GENERATOR[key],
    )


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
    from . import _core

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
    target, start = default_problem(d)
    rng = np.random.default_rng(seed)
    a_star = float(target.old_weight)
    mo_star = np.asarray(target.old_mean, float)
    mn_star = np.asarray(target.new_mean, float)
    t_star_const = math.log(a_star / (1.0 - a_star)) - 0.5 * (mo_star @ mo_star - mn_star @ mn_star)
    eta = np.full(r, math.log(start.old_weight / (1.0 - start.old_weight)))
    mo = np.tile(np.asarray(start.old_mean, float), (r, 1))
    mn = np.tile(np.asarray(start.new_mean, float), (r, 1))
    runaway_eta = math.log(1.0 / _core.RUNAWAY_WEIGHT - 1.0)
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
            scale = lr / b
            eta_new = eta - scale * g_w
            mo_new = mo - scale * (g_z[:, 0] - new_old * delta)
            mn_new = mn - scale * (g_z[:, 1] + old_new * delta)
            finite = np.isfinite(eta_new) & np.isfinite(mo_new).all(axis=1)
            finite &= np.isfinite(mn_new).all(axis=1)
            ok = alive & finite
            starved += alive & ~old.any(axis=1)
            eta = np.where(ok, eta_new, eta)
            mo = np.where(ok[:, None], mo_new, mo)
            mn = np.where(ok[:, None], mn_new, mn)
            runaway = np.abs(eta) >= runaway_eta
            runaway |= np.linalg.norm(mo - mo_star, axis=1) > _core.RUNAWAY_DISTANCE
            runaway |= np.linalg.norm(mn - mn_star, axis=1) > _core.RUNAWAY_DISTANCE
            alive = ok & ~runaway
            if step % k == 0:
                record(step // k)
    rec["diverged"] = ~alive
    return rec


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


def _responsibilities_workload(key: str, s: dict[str, Any]) -> Workload:
    from . import kernels, reference

    n, d = int(s["points"]), int(s["dim"])
    target, _ = default_problem(d)
    weights = np.array([target.old_weight, 1.0 - target.old_weight])
    means = np.stack([np.asarray(target.old_mean, float), np.asarray(target.new_mean, float)])
    x = np.random.default_rng(12345).standard_normal((n, d)) * 3.0

    def rust(threads: int) -> Any:
        return kernels.responsibilities(x, weights, means, 1.0, threads=threads)

    def numpy_() -> Any:
        return reference.responsibilities(x, weights, means, 1.0)

    return Workload(
        key,
        _TITLES[key],
        s,
        "point",
        n,
        n,
        n * d,
        rust,
        numpy_,
        floor_generator=_FLOOR_GENERATOR[key],
    )


def _starvation_workload(key: str, s: dict[str, Any]) -> Workload:
    from . import kernels, reference

    nb, b, alpha = int(s["batches"]), int(s["batch_size"]), float(s["old_weight"])

    def rust(threads: int) -> Any:
        return kernels.starvation_counts(alpha, b, nb, rng=0, threads=threads)

    def numpy_() -> Any:
        return reference.starvation_counts(alpha, b, nb, rng=0)

    return Workload(
        key,
        _TITLES[key],
        s,
        "batch",
        nb,
        nb,
        nb,
        rust,
        numpy_,
        floor_generator=_FLOOR_GENERATOR[key],
    )


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------
def _row(
    w: Workload,
    label: str,
    threads: int,
    rust_s: float,
    numpy_measured_s: float,
    floor_s: float,
    loop_measured_s: Optional[float] = None,
) -> dict[str, Any]:
    numpy_s = numpy_measured_s * w.numpy_scale
    row: dict[str, Any] = {
        "workload": label,
        "title": w.title,
        "sizes": w.describe(),
        "threads": threads,
        "samples": w.rust_units,
        "normals": w.normals,
        "rust_s": rust_s,
        "numpy_s": numpy_s,
        "numpy_measured_s": numpy_measured_s,
        "numpy_scale": w.numpy_scale,
        "numpy_scaled": w.numpy_scale != 1.0,
        "speedup": numpy_s / rust_s if rust_s > 0 else math.inf,
        "rust_ns_per_sample_core": rust_s * threads / w.rust_units * 1e9,
        "numpy_ns_per_sample_core": numpy_measured_s / w.numpy_units * 1e9,
        "floor_s": floor_s,
        "floor_generator": w.floor_generator,
        "floor_multiple": rust_s / floor_s if floor_s > 0 else math.inf,
    }
    if loop_measured_s is not None:
        loop_s = loop_measured_s * w.numpy_scale
        row["numpy_loop_s"] = loop_s
        row["numpy_loop_ns_per_sample_core"] = loop_measured_s / w.numpy_units * 1e9
        row["loop_speedup"] = loop_s / rust_s if rust_s > 0 else math.inf
        row["loop_speedup_per_core"] = row["loop_speedup"] / threads
    return row


def run_benchmarks(
    quick: bool = False,
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    repeats: int = 3,
    threads: int | None = None,
    progress: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """Time every workload (Rust, NumPy twin, the specialised NumPy loop where there is one,
    RNG floor; best of ``repeats``) and return one
    dict per table row, in :data:`WORKLOADS` order, plus a "W1 1t" row (W1 on one thread)
    after W1 when ``threads`` > 1.

    ``quick`` picks :data:`QUICK_SIZES` over :data:`CLI_SIZES`; ``sizes`` overrides them per
    workload (e.g. ``{"W4": {"batches": 1000}}``). ``threads``: Rust threads (default: all
    usable cores). Row keys: workload, title, sizes, threads, samples, normals, rust_s,
    numpy_s (scaled to the Rust size), numpy_measured_s, numpy_scale, numpy_scaled, speedup,
    rust_ns_per_sample_core, numpy_ns_per_sample_core (one core), floor_s, floor_generator
    (see :func:`rng_floor`: "lane" for W1–W3, "scalar" for W4), floor_multiple; W1 and W2
    rows also numpy_loop_s (the specialised NumPy loop :func:`numpy_loop` on one core, scaled
    to the Rust size), numpy_loop_ns_per_sample_core, loop_speedup (its time / Rust's) and
    loop_speedup_per_core (the same per core: / threads)."""
    base = QUICK_SIZES if quick else CLI_SIZES
    sizes = dict(sizes or {})
    unknown = set(sizes) - set(WORKLOADS)
    if unknown:
        raise ValueError(
            f"sizes has unknown workloads {sorted(unknown)}; expected keys among {list(WORKLOADS)}"
        )
    n_threads = usable_cores() if threads is None else int(threads)
    if n_threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    repeats = max(1, int(repeats))
    rows: list[dict[str, Any]] = []
    for key in WORKLOADS:
        w = make_workload(key, {**base[key], **dict(sizes.get(key, {}))})
        if progress is not None:
            progress(f"{key} {w.title} {w.describe()} ...")
        w.rust(n_threads)  # warm-up: thread pool, page faults, allocator
        rust_s = best_of(partial(w.rust, n_threads), repeats)
        numpy_s = best_of(w.numpy, repeats)
        loop_s = best_of(w.numpy_loop, repeats) if w.numpy_loop is not None else None
        floor_s = rng_floor(w.normals, n_threads, repeats, w.floor_generator)
        rows.append(_row(w, key, n_threads, rust_s, numpy_s, floor_s, loop_s))
        if key == "W1" and n_threads > 1:
            rust1 = best_of(partial(w.rust, 1), repeats)
            floor1 = rng_floor(w.normals, 1, repeats, w.floor_generator)
            row1 = _row(w, "W1 1t", 1, rust1, numpy_s, floor1, loop_s)
            row1["thread_speedup"] = rust1 / rust_s
            rows[-1]["thread_speedup"] = rust1 / rust_s
            rows.append(row1)
    return rows


def run_backend_w1(
    backend: str,
    device: Any = None,
    precision: str = "float64",
    replicates: int = 1000,
    steps: int = 1000,
    batch_size: int = 64,
    repeats: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """W1 (ReverseKL, d = 1) through ``mixforget.simulate(backend=...)``: one untimed run
    first (JAX compiles, CUDA initialises), then the best of ``repeats``. Returns backend,
    device, precision, sizes, seconds and ns per drawn point (wall clock, all cores or the
    whole device: not per core)."""
    from .objectives import ReverseKL
    from .simulate import simulate

    target, start = default_problem(1)
    kw: dict[str, Any] = dict(
        steps=steps,
        batch_size=batch_size,
        lr=DEFAULT_LR,
        replicates=replicates,
        record_every=_record_every(steps),
        rng=0,
        backend=backend,
        precision=precision,
    )
    if backend == "rust":
        kw["threads"] = usable_cores() if threads is None else threads
    else:
        kw["device"] = device
    out = simulate(target, start, ReverseKL(), **kw)
    seconds = best_of(lambda: simulate(target, start, ReverseKL(), **kw), max(1, int(repeats)))
    return {
        "backend": backend,
        "device": out.meta.get("device") or "cpu",
        "precision": precision,
        "replicates": replicates,
        "steps": steps,
        "batch_size": batch_size,
        "seconds": seconds,
        "ns_per_sample": seconds / (replicates * steps * batch_size) * 1e9,
    }


def _fmt_s(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def format_table(
    rows: Sequence[Mapping[str, Any]], machine: Mapping[str, Any] | None = None
) -> str:
    """The benchmark table as text: workload, sizes, Rust time, NumPy time (scaled to the
    Rust size, * where extrapolated per step), speed-up, Rust ns per sample per core,
    multiple of the RNG floor, threads; a machine line on top and the thread scaling below."""
    machine = machine_info() if machine is None else machine
    header = [
        "workload",
        "sizes",
        "Rust",
        "NumPy",
        "speed-up",
        "ns/sample/core",
        "× RNG floor",
        "threads",
        "vs NumPy loop",
        "per core",
    ]
    body = []
    for r in rows:
        body.append(
            [
                str(r["workload"]),
                str(r["sizes"]),
                _fmt_s(r["rust_s"]),
                _fmt_s(r["numpy_s"]) + ("*" if r.get("numpy_scaled") else ""),
                f"{r['speedup']:.1f}×",
                f"{r['rust_ns_per_sample_core']:.1f}",
                f"{r['floor_multiple']:.2f}",
                str(r["threads"]),
                f"{r['loop_speedup']:.1f}×" if "loop_speedup" in r else "—",
                f"{r['loop_speedup_per_core']:.1f}×" if "loop_speedup_per_core" in r else "—",
            ]
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in enumerate(zip(cells, widths))
        )

    cpu_count = machine.get("cpu_count", "?")
    versions = (
        f"Python {machine.get('python', '?')}, NumPy {machine.get('numpy', '?')}, "
        f"mixforget {machine.get('mixforget', '?')}"
    )
    out = [
        f"machine: {machine['cpu']}, {machine['cores']} usable cores (cpu_count {cpu_count}); "
        + versions,
        line(header),
        line(["-" * wd for wd in widths]),
    ]
    out += [line(b) for b in body]
    out.append("")
    out.append(
        "Times: best of the repeats. NumPy: the pure-NumPy twin (mixforget.reference) on one core;"
    )
    out.append(
        "* = run with fewer steps and scaled per step to the Rust size. "
        "speed-up = NumPy / Rust at equal work."
    )
    out.append(
        "ns/sample/core = Rust time × threads / samples "
        "(W1/W2: drawn points, W3: points, W4: batches)."
    )
    out.append(
        "× RNG floor = Rust time / time to draw the same normals alone in Rust "
        "(W1/W2: R·T·B·d, W3: n·d, W4: one"
    )
    out.append(
        "per batch) with the workload's generator (W1–W3: the 8-lane SIMD generator, W4: the"
    )
    out.append("scalar Ziggurat), measured in this run with the same threads.")
    loops = {
        str(r["workload"]): r["numpy_loop_ns_per_sample_core"]
        for r in rows
        if "numpy_loop_ns_per_sample_core" in r and r["workload"] in WORKLOADS
    }
    if loops:
        per_sample = ", ".join(f"{key} {ns:.1f}" for key, ns in loops.items())
        out.append(
            "vs NumPy loop = time of the specialised vectorised NumPy loop (bench.numpy_loop, one "
            f"core; ns/sample: {per_sample}) / Rust time;"
        )
        out.append(
            "per core = the same ratio divided by the Rust threads (one thread vs one core)."
        )
    for r in rows:
        if r["workload"] == "W1" and "thread_speedup" in r:
            out.append(
                f"Thread scaling W1: 1 → {r['threads']} threads: {r['thread_speedup']:.2f}× "
                f"({r['thread_speedup'] / r['threads'] * 100:.0f}% parallel efficiency)."
            )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mixforget bench",
        description="Rust vs NumPy timings on this machine (docs: speed-workloads).",
    )
    p.add_argument("--quick", action="store_true", help="small workloads only (about ten seconds)")
    add_backend_arguments(p)
    return p


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend/--device/--precision/--replicates/--steps``: W1 on one backend."""
    p.add_argument(
        "--backend",
        default=None,
        help="time W1 (ReverseKL d=1, B=64) on this backend of mixforget.simulate (rust, numpy, "
        "torch, cupy, jax, array_api_strict) next to Rust, instead of the Rust/NumPy table",
    )
    p.add_argument("--device", default=None, help="device of --backend (default: its own)")
    p.add_argument("--precision", default="float64", help="float64 or float32 (--backend)")
    p.add_argument("--replicates", type=int, default=1000, help="R for --backend (1000)")
    p.add_argument("--steps", type=int, default=1000, help="T for --backend (1000)")


def _main_backend(args: argparse.Namespace, repeats: int) -> int:
    """``mixforget bench --backend X``: W1 on X and on Rust at the same sizes."""
    machine = machine_info()
    print(f"mixforget bench --backend {args.backend}: W1 on {machine['cpu']}", flush=True)
    rows = []
    sizes = dict(replicates=args.replicates, steps=args.steps, repeats=repeats)
    rows.append(run_backend_w1("rust", **sizes))
    if args.backend != "rust":
        rows.append(run_backend_w1(args.backend, args.device, args.precision, **sizes))
    print("| backend | device | precision | R | T | B | time | ns/sample |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['device']} | {r['precision']} | {r['replicates']} | "
            f"{r['steps']} | {r['batch_size']} | {_fmt_s(r['seconds'])} | "
            f"{r['ns_per_sample']:.3g} |"
        )
    return 0


def main(
    args: argparse.Namespace | Sequence[str] | None = None,
    *,
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    repeats: int = 3,
) -> int:
    """Run the benchmarks and print the table (``mixforget bench [--quick]``). ``args``: an
    argparse Namespace with a ``quick`` attribute (the CLI's), a list of command-line words,
    or None (``sys.argv``). ``sizes``/``repeats`` as in :func:`run_benchmarks`. Returns 0."""
    if args is None or not isinstance(args, argparse.Namespace):
        args = _parser().parse_args(None if args is None else list(args))
    if getattr(args, "backend", None) is not None:
        return _main_backend(args, repeats)
    quick = bool(getattr(args, "quick", False))
    machine = machine_info()
    print(
        f"mixforget bench{' --quick' if quick else ''}: Rust vs NumPy on {machine['cpu']} "
        f"({machine['cores']} cores)",
        flush=True,
    )
    t0 = time.perf_counter()
    rows = run_benchmarks(
        quick=quick,
        sizes=sizes,
        repeats=repeats,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    print(format_table(rows, machine))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # python -m mixforget.bench [--quick]
    raise SystemExit(main())
