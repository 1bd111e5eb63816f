"""The benchmark workloads (docs: speed-workloads): their keys and sizes, the default problem
they run on, and :func:`make_workload`, which builds each one's Rust call, its generic NumPy
twin call and its RNG-floor size."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .._defaults import DEFAULT_LR
from ._shared import _record_every, default_problem
from .numpy_baseline import numpy_loop, numpy_loop_w1

#: Workload keys in table order.
WORKLOADS: tuple[str, ...] = ("W1", "W1s", "W2", "W3a", "W3b", "W4")

#: The simulate workloads (W1s is W1 at the small batch B = 8 of starvation studies, issue 23).
SIMULATE_WORKLOADS: tuple[str, ...] = ("W1", "W1s", "W2")

_SIM_FULL = {"replicates": 1000, "batch_size": 64, "steps": 1000, "numpy_steps": 1000}

#: docs: speed-workloads sizes (the ``benches/`` suite). NumPy runs the full T too (W1 ≈ 7 s, W2 ≈
#: 50 s).
FULL_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, **_SIM_FULL},
    "W1s": {"dim": 1, **_SIM_FULL, "batch_size": 8, "steps": 4000, "numpy_steps": 4000},
    "W2": {"dim": 32, **_SIM_FULL},
    "W3a": {"points": 10**7, "dim": 1},
    "W3b": {"points": 10**6, "dim": 32},
    "W4": {"batches": 10**8, "batch_size": 32, "old_weight": 0.05},
}

#: ``mixforget bench``: the whole table in under a minute on 2 cores (NumPy scaled per step).
CLI_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, "replicates": 1000, "batch_size": 64, "steps": 400, "numpy_steps": 100},
    "W1s": {"dim": 1, "replicates": 1000, "batch_size": 8, "steps": 2000, "numpy_steps": 400},
    "W2": {"dim": 32, "replicates": 1000, "batch_size": 64, "steps": 100, "numpy_steps": 20},
    "W3a": {"points": 5 * 10**6, "dim": 1},
    "W3b": {"points": 5 * 10**5, "dim": 32},
    "W4": {"batches": 2 * 10**7, "batch_size": 32, "old_weight": 0.05},
}

#: ``mixforget bench --quick``: about ten seconds.
QUICK_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, "replicates": 500, "batch_size": 64, "steps": 100, "numpy_steps": 20},
    "W1s": {"dim": 1, "replicates": 500, "batch_size": 8, "steps": 400, "numpy_steps": 80},
    "W2": {"dim": 32, "replicates": 500, "batch_size": 64, "steps": 20, "numpy_steps": 5},
    "W3a": {"points": 10**6, "dim": 1},
    "W3b": {"points": 10**5, "dim": 32},
    "W4": {"batches": 5 * 10**6, "batch_size": 32, "old_weight": 0.05},
}

#: Tiny sizes: a smoke run that checks the wiring in well under a second per workload
#: (``benches/`` under ``--benchmark-disable``, the tests).
SMOKE_SIZES: dict[str, dict[str, Any]] = {
    "W1": {"dim": 1, "replicates": 16, "batch_size": 8, "steps": 10, "numpy_steps": 10},
    "W1s": {"dim": 1, "replicates": 16, "batch_size": 8, "steps": 10, "numpy_steps": 10},
    "W2": {"dim": 32, "replicates": 8, "batch_size": 8, "steps": 10, "numpy_steps": 5},
    "W3a": {"points": 2000, "dim": 1},
    "W3b": {"points": 500, "dim": 32},
    "W4": {"batches": 5000, "batch_size": 32, "old_weight": 0.05},
}

_TITLES = {
    "W1": "simulate ReverseKL d=1",
    "W1s": "simulate ReverseKL d=1, small batch",
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
_FLOOR_GENERATOR = {
    "W1": "lane",
    "W1s": "lane",
    "W2": "lane",
    "W3a": "lane",
    "W3b": "lane",
    "W4": "scalar",
}


# ---------------------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------------------
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
        if self.key in SIMULATE_WORKLOADS:
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
    """Build workload ``key`` ("W1", "W1s", "W2", "W3a", "W3b" or "W4") at ``sizes`` (merged over
    :data:`FULL_SIZES`). W3 draws its input points here (seeded), outside any timing."""
    if key not in FULL_SIZES:
        raise ValueError(f"unknown workload {key!r}; expected one of {list(FULL_SIZES)}")
    s = {**FULL_SIZES[key], **(sizes or {})}
    if key in SIMULATE_WORKLOADS:
        return _simulate_workload(key, s)
    if key in ("W3a", "W3b"):
        return _responsibilities_workload(key, s)
    return _starvation_workload(key, s)


def _simulate_workload(key: str, s: dict[str, Any]) -> Workload:
    from .. import reference
    from ..objectives import ReverseKL
    from ..simulate import simulate

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


def _responsibilities_workload(key: str, s: dict[str, Any]) -> Workload:
    from .. import kernels, reference

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
    from .. import kernels, reference

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
