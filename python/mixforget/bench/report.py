"""The benchmark table: run the workloads (:func:`run_benchmarks`, :func:`run_backend_w1`),
and format the rows with their speed-ups, ns per sample per core and RNG-floor multiples."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Callable, Optional

from .._defaults import DEFAULT_LR
from .timing import best_of, machine_info, rng_floor, usable_cores
from .workloads import (
    CLI_SIZES,
    QUICK_SIZES,
    WORKLOADS,
    Workload,
    _record_every,
    default_problem,
    make_workload,
)

#: The workloads that get a one-thread row beside the all-threads row (per-core ratios).
PER_CORE_ROWS = ("W1", "W1s")


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
    dict per table row, in :data:`WORKLOADS` order, plus "W1 1t" and "W1s 1t" rows (on one thread)
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
        if key in PER_CORE_ROWS and n_threads > 1:
            rust1 = best_of(partial(w.rust, 1), repeats)
            floor1 = rng_floor(w.normals, 1, repeats, w.floor_generator)
            row1 = _row(w, f"{key} 1t", 1, rust1, numpy_s, floor1, loop_s)
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
    from ..objectives import ReverseKL
    from ..simulate import simulate

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
    out += _legend(rows)
    return "\n".join(out)


def _legend(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines under the table: what each column means, the NumPy-loop comparison and the
    thread scaling of W1 (when measured)."""
    out: list[str] = []
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
        if r["workload"] in PER_CORE_ROWS and "thread_speedup" in r:
            out.append(
                f"Thread scaling {r['workload']}: 1 → {r['threads']} threads: "
                f"{r['thread_speedup']:.2f}× "
                f"({r['thread_speedup'] / r['threads'] * 100:.0f}% parallel efficiency)."
            )
    return out


# ---------------------------------------------------------------------------------------
