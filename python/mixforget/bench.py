"""``mixforget bench [--quick]``: the Rust engine against its honest NumPy twin on this machine
(DESIGN §4).

Workloads (DESIGN §4; the pytest-benchmark suite in ``benches/`` runs them at full size, this
command at sizes that finish in under a minute, ``--quick`` in about ten seconds):

- **W1** ``simulate`` ReverseKL, d = 1 (default problem of MATH §1, start with the new mean at
  0.5), R replicates × B samples × T steps; also timed on one thread (thread scaling);
- **W2** the same at d = 32, means along the unit direction (1, …, 1)/√32, Σ = I;
- **W3a / W3b** ``kernels.responsibilities`` (MATH §2) on n points, d = 1 and d = 32;
- **W4** ``kernels.starvation_counts`` (MATH §4.3), α = 0.05, B = 32.

Each row reports the best of a few repeats, the speed-up per unit of work (the NumPy twin may
run fewer steps; its time is scaled per step to the Rust size), the Rust cost in ns per sample
per core, and its multiple of the *RNG floor*: the time ``mixforget._core.normal_floor`` takes
to draw the same number of standard normals (same generator, same threads) in this run.
What counts as a sample and as "the same normals":

- W1/W2: a sample is one drawn point of one batch (R·T·B samples); the floor draws R·T·B·d
  normals;
- W3: a sample is one input point (no randomness: the floor draws n·d normals, the cost of
  producing as many numbers as the kernel reads);
- W4: a sample is one batch (its count is a single binomial variate; the samples are not
  materialised): the floor draws one normal per batch.

Public: :func:`main` (the CLI entry), :func:`run_benchmarks`, :func:`format_table`,
:func:`make_workload`, :func:`default_problem`, :func:`rng_floor`, :func:`machine_info`,
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
from typing import Any, Callable, Optional

import numpy as np

__all__ = [
    "CLI_SIZES",
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
    "rng_floor",
    "run_benchmarks",
    "usable_cores",
]

#: Workload keys in table order.
WORKLOADS: tuple[str, ...] = ("W1", "W2", "W3a", "W3b", "W4")

_SIM_FULL = {"replicates": 1000, "batch_size": 64, "steps": 1000, "numpy_steps": 1000}

#: DESIGN §4 sizes (the ``benches/`` suite). NumPy runs the full T too (W1 ≈ 7 s, W2 ≈ 50 s).
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


def rng_floor(normals: int, threads: int, repeats: int = 3) -> float:
    """The RNG floor: best time (s) of drawing ``normals`` standard normals in Rust alone
    (``mixforget._core.normal_floor``: Xoshiro256++ + Ziggurat in parallel chunks, the
    generator of every kernel) on ``threads`` threads."""
    from . import _core

    n = max(1, int(normals))
    return best_of(lambda: _core.normal_floor(n, _FLOOR_KEY, int(threads)), repeats)


# ---------------------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------------------
def default_problem(dim: int = 1) -> tuple[Any, Any]:
    """The default problem of MATH §1 in ``dim`` dimensions, means along u = (1, …, 1)/√d:
    target TwoMode(old_mean=−3u, new_mean=3.5u, old_weight=0.75, cov=1.0) and the start
    ``target.replace(new_mean=0.5u)``. Returns (target, start)."""
    from .mixture import TwoMode

    u = np.ones(int(dim)) / math.sqrt(int(dim))
    target = TwoMode(old_mean=-3.0 * u, new_mean=3.5 * u, old_weight=0.75, cov=1.0)
    return target, target.replace(new_mean=0.5 * u)


def _record_every(steps: int) -> int:
    return math.gcd(int(steps), 10)


@dataclass(frozen=True)
class Workload:
    """One DESIGN §4 workload at given sizes.

    ``rust(threads)`` and ``numpy()`` run it once (the NumPy twin on ``numpy_units`` samples,
    possibly fewer steps than Rust). ``rust_units`` / ``numpy_units``: samples processed (see
    the module docstring for what a sample is); ``normals``: the RNG-floor size of the Rust
    call. ``numpy_scale`` = rust_units / numpy_units multiplies NumPy times to the Rust size.
    ``steps`` / ``numpy_steps`` are set for the simulate workloads (per-step comparison)."""

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
            lr=0.05,
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
            lr=0.05,
            replicates=r,
            record_every=_record_every(tn),
            rng=0,
        )

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
    )


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

    return Workload(key, _TITLES[key], s, "point", n, n, n * d, rust, numpy_)


def _starvation_workload(key: str, s: dict[str, Any]) -> Workload:
    from . import kernels, reference

    nb, b, alpha = int(s["batches"]), int(s["batch_size"]), float(s["old_weight"])

    def rust(threads: int) -> Any:
        return kernels.starvation_counts(alpha, b, nb, rng=0, threads=threads)

    def numpy_() -> Any:
        return reference.starvation_counts(alpha, b, nb, rng=0)

    return Workload(key, _TITLES[key], s, "batch", nb, nb, nb, rust, numpy_)


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------
def _row(
    w: Workload, label: str, threads: int, rust_s: float, numpy_measured_s: float, floor_s: float
) -> dict[str, Any]:
    numpy_s = numpy_measured_s * w.numpy_scale
    return {
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
        "floor_multiple": rust_s / floor_s if floor_s > 0 else math.inf,
    }


def run_benchmarks(
    quick: bool = False,
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    repeats: int = 3,
    threads: int | None = None,
    progress: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """Time every workload (Rust, NumPy twin, RNG floor; best of ``repeats``) and return one
    dict per table row, in :data:`WORKLOADS` order, plus a "W1 1t" row (W1 on one thread)
    after W1 when ``threads`` > 1.

    ``quick`` picks :data:`QUICK_SIZES` over :data:`CLI_SIZES`; ``sizes`` overrides them per
    workload (e.g. ``{"W4": {"batches": 1000}}``). ``threads``: Rust threads (default: all
    usable cores). Row keys: workload, title, sizes, threads, samples, normals, rust_s,
    numpy_s (scaled to the Rust size), numpy_measured_s, numpy_scale, numpy_scaled, speedup,
    rust_ns_per_sample_core, numpy_ns_per_sample_core (one core), floor_s, floor_multiple."""
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
        rust_s = best_of(lambda: w.rust(n_threads), repeats)
        numpy_s = best_of(w.numpy, repeats)
        floor_s = rng_floor(w.normals, n_threads, repeats)
        rows.append(_row(w, key, n_threads, rust_s, numpy_s, floor_s))
        if key == "W1" and n_threads > 1:
            rust1 = best_of(lambda: w.rust(1), repeats)
            floor1 = rng_floor(w.normals, 1, repeats)
            row1 = _row(w, "W1 1t", 1, rust1, numpy_s, floor1)
            row1["thread_speedup"] = rust1 / rust_s
            rows[-1]["thread_speedup"] = rust1 / rust_s
            rows.append(row1)
    return rows


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
            ]
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in enumerate(zip(cells, widths))
        )

    out = [
        f"machine: {machine['cpu']}, {machine['cores']} usable cores (cpu_count {machine.get('cpu_count', '?')}); "
        f"Python {machine.get('python', '?')}, NumPy {machine.get('numpy', '?')}, mixforget {machine.get('mixforget', '?')}",
        line(header),
        line(["-" * wd for wd in widths]),
    ]
    out += [line(b) for b in body]
    out.append("")
    out.append(
        "Times: best of the repeats. NumPy: the pure-NumPy twin (mixforget.reference) on one core;"
    )
    out.append(
        "* = run with fewer steps and scaled per step to the Rust size. speed-up = NumPy / Rust at equal work."
    )
    out.append(
        "ns/sample/core = Rust time × threads / samples (W1/W2: drawn points, W3: points, W4: batches)."
    )
    out.append(
        "× RNG floor = Rust time / time to draw the same normals alone in Rust (W1/W2: R·T·B·d, W3: n·d, W4: one"
    )
    out.append("per batch), measured in this run with the same threads.")
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
        prog="mixforget bench", description="Rust vs NumPy timings on this machine (DESIGN §4)."
    )
    p.add_argument("--quick", action="store_true", help="small workloads only (about ten seconds)")
    return p


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
