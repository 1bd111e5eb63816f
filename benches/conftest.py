"""Shared fixtures of the pytest-benchmark suite (docs: speed-workloads).

Run:  ``pytest benches --benchmark-enable --benchmark-group-by=group``
(``pytest`` alone collects only tests/; pyproject's addopts disable benchmarks by default).

Each workload is one benchmark group holding the Rust path, its NumPy twin
(``mixforget.reference``), for W1/W2 the specialised NumPy loop (``mixforget.bench.numpy_loop``)
and the RNG floor (``mixforget.bench.rng_floor`` with the workload's generator: the eight-lane
SIMD generator ``_core.lane_normal_floor`` that W1/W2 draw from, also for W3; the scalar
Ziggurat ``_core.normal_floor`` for W4's scalar streams) drawing the same number of normals on
the same threads. Every entry's ``extra_info`` records the
sizes, threads, NumPy version, ns per sample per core, the multiple of the RNG floor and,
once both sides of a group ran, the speed-up over NumPy at equal work. A summary of all
ratios is printed at the end of the session.

Sizes (``MIXFORGET_BENCH_SIZES``): ``full`` (docs: speed-workloads, the default with
``--benchmark-enable``), ``cli`` / ``quick`` (the ``mixforget bench`` sizes) or ``smoke``
(tiny; the default under ``--benchmark-disable``, where every function runs once, so the
suite checks its own wiring in a few seconds). ``MIXFORGET_BENCH_ROUNDS`` overrides the
number of pedantic rounds (default 3; NumPy W2 at full size: 1, about a minute a round).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pytest

import mixforget
from mixforget import bench as mb

_SIZE_SETS = {
    "full": mb.FULL_SIZES,
    "cli": mb.CLI_SIZES,
    "quick": mb.QUICK_SIZES,
    "smoke": mb.SMOKE_SIZES,
}


# ---------------------------------------------------------------------------------------
# configuration fixtures
# ---------------------------------------------------------------------------------------
def _disabled(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("benchmark_disable")) and not bool(
            config.getoption("benchmark_enable")
        )
    except ValueError:  # pytest-benchmark missing: the benchmark fixture is missing too
        return True


@pytest.fixture(scope="session")
def size_set(pytestconfig: pytest.Config) -> str:
    """Name of the size set in use (see the module docstring)."""
    name = os.environ.get("MIXFORGET_BENCH_SIZES", "").strip().lower()
    if not name:
        name = "smoke" if _disabled(pytestconfig) else "full"
    if name not in _SIZE_SETS:
        raise pytest.UsageError(
            f"MIXFORGET_BENCH_SIZES must be one of {sorted(_SIZE_SETS)}, got {name!r}"
        )
    return name


@pytest.fixture(scope="session")
def sizes(size_set: str) -> dict[str, dict[str, Any]]:
    """Per-workload sizes of the active size set."""
    return {k: dict(v) for k, v in _SIZE_SETS[size_set].items()}


@pytest.fixture(scope="session")
def rounds() -> Callable[[int], int]:
    """rounds(default) → the pedantic rounds (``MIXFORGET_BENCH_ROUNDS`` overrides)."""
    forced = os.environ.get("MIXFORGET_BENCH_ROUNDS")
    return lambda default: max(1, int(forced)) if forced else default


@pytest.fixture(scope="session")
def threads() -> int:
    """Rust threads of the main entries: every usable core."""
    return mb.usable_cores()


@pytest.fixture(scope="session")
def machine() -> dict[str, Any]:
    return mb.machine_info()


@pytest.fixture(scope="session")
def target() -> mixforget.TwoMode:
    """The default problem (docs: theory-model): old mode −3, new mode 3.5, α* = 0.75, Σ = 1."""
    return mb.default_problem(1)[0]


@pytest.fixture(scope="session")
def start(target: mixforget.TwoMode) -> mixforget.TwoMode:
    """Standard start: the new mean at 0.5."""
    return target.replace(new_mean=[0.5])


# ---------------------------------------------------------------------------------------
# the RNG floor and the ledger that links the entries of a group
# ---------------------------------------------------------------------------------------
class FloorCache:
    """Best time to draw n standard normals in Rust on t threads with generator g
    (``mb.FLOOR_GENERATORS``), measured once per (n, t, g) (the group's floor benchmark stores
    its own measurement; others measure lazily)."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled
        self._cache: dict[tuple[int, int, str], float] = {}

    def store(self, normals: int, threads: int, generator: str, seconds: float) -> None:
        key = (int(normals), int(threads), generator)
        self._cache[key] = min(seconds, self._cache.get(key, math.inf))

    def seconds(self, normals: int, threads: int, generator: str) -> float:
        key = (int(normals), int(threads), generator)
        if key not in self._cache:
            self._cache[key] = mb.rng_floor(
                normals, threads, repeats=1 if self.disabled else 3, generator=generator
            )
        return self._cache[key]


@dataclass
class Entry:
    group: str
    impl: str
    threads: int
    per_sample: float  # seconds per sample (wall)
    info: dict[str, Any]


@dataclass
class Ledger:
    """All entries by group; fills speed-ups into the entries' extra_info as they arrive.

    The specialised NumPy loop (impl ``numpy_loop``, one core) is the reference of every entry
    of its workload in any group: ``speedup_vs_numpy_loop`` = its time per sample / the
    entry's (all the entry's threads), ``per_core_vs_numpy_loop`` = the same per core (the
    entry's time × threads: one thread vs one core)."""

    groups: dict[str, dict[str, Entry]] = field(default_factory=dict)
    loops: dict[str, Entry] = field(default_factory=dict)

    def _vs_loop(self) -> None:
        for group in self.groups.values():
            for e in group.values():
                loop = self.loops.get(str(e.info.get("workload")))
                if loop is None or e is loop or e.impl == "rng_floor":
                    continue
                e.info["speedup_vs_numpy_loop"] = loop.per_sample / e.per_sample
                e.info["per_core_vs_numpy_loop"] = (
                    loop.per_sample * loop.threads / (e.per_sample * e.threads)
                )

    def add(self, entry: Entry) -> None:
        if entry.impl == "numpy_loop":
            self.loops[str(entry.info.get("workload"))] = entry
        group = self.groups.setdefault(entry.group, {})
        group[entry.impl] = entry
        self._vs_loop()
        numpy = group.get("numpy")
        one = next(
            (e for e in group.values() if e.impl.startswith("rust") and e.threads == 1), None
        )
        rust = group.get("rust")
        if numpy is not None and rust is not None:
            numpy.info["rust_speedup"] = numpy.per_sample / rust.per_sample
        for e in group.values():
            if numpy is not None and e is not numpy and e.impl != "rng_floor":
                e.info["speedup_vs_numpy"] = numpy.per_sample / e.per_sample
            if one is not None and e.impl.startswith("rust") and e is not one:
                e.info["speedup_vs_1_thread"] = one.per_sample / e.per_sample
                e.info["parallel_efficiency"] = one.per_sample / e.per_sample / e.threads


_LEDGER = Ledger()


@pytest.fixture(scope="session")
def floor(pytestconfig: pytest.Config) -> FloorCache:
    return FloorCache(_disabled(pytestconfig))


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return _LEDGER


# ---------------------------------------------------------------------------------------
# the measuring helper
# ---------------------------------------------------------------------------------------
@dataclass
class Measure:
    """Runs one benchmark entry and fills its extra_info (see :meth:`__call__`)."""

    size_set: str
    machine: dict[str, Any]
    floor: FloorCache
    ledger: Ledger
    disabled: bool

    def __call__(
        self,
        benchmark: Any,
        workload: mb.Workload,
        impl: str,
        fn: Callable[[], Any],
        *,
        threads: int,
        rounds: int = 3,
        samples: Optional[int] = None,
        steps: Optional[int] = None,
        extra: Optional[dict[str, Any]] = None,
    ) -> Any:
        """Time ``fn`` under ``benchmark.pedantic(rounds=rounds, iterations=1)`` (once when
        benchmarks are disabled) and record: sizes, threads, NumPy version, samples processed
        (default: the workload's Rust size), seconds (best round), ns per sample per core,
        the time scaled to the Rust size, its multiple of the RNG floor (the Rust size's
        normals from the workload's generator on ``threads`` threads; for NumPy entries on the
        Rust entries' threads), and
        the speed-ups against NumPy / one thread once those entries exist."""
        times: list[float] = []

        def timed() -> Any:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            return out

        result = benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=0)
        best = min(times)
        n = workload.rust_units if samples is None else int(samples)
        scaled = best * workload.rust_units / n
        floor_threads = threads if not impl.startswith("numpy") else mb.usable_cores()
        floor_s = (
            self.floor.seconds(workload.normals, floor_threads, workload.floor_generator)
            if impl != "rng_floor"
            else best
        )
        info = benchmark.extra_info
        info.update(
            {
                "workload": workload.key,
                "title": workload.title,
                "impl": impl,
                "size_set": self.size_set,
                "sizes": dict(workload.sizes),
                "threads": threads,
                "samples": n,
                "sample_unit": workload.unit,
                "normals_of_rust_size": workload.normals,
                "seconds_best": best,
                "rounds": rounds if not self.disabled else 1,
                "ns_per_sample_per_core": best * threads / n * 1e9,
                "seconds_at_rust_size": scaled,
                "rng_floor_seconds": floor_s,
                "rng_floor_threads": floor_threads,
                "rng_floor_generator": workload.floor_generator,
                "floor_multiple": scaled / floor_s if floor_s > 0 else math.inf,
                "numpy_version": np.__version__,
                "mixforget_version": mixforget.__version__,
                "cpu": self.machine["cpu"],
                "cores": self.machine["cores"],
            }
        )
        if steps is not None:
            info["steps_run"] = steps
            info["seconds_per_step"] = best / steps
            if workload.steps is not None and steps != workload.steps:
                info["scaled_per_step_from_steps"] = steps
                info["scale_factor"] = workload.steps / steps
        if extra:
            info.update(extra)
        self.ledger.add(Entry(benchmark.group or workload.key, impl, threads, best / n, info))
        return result

    def floor_entry(
        self, benchmark: Any, workload: mb.Workload, threads: int, rounds: int = 3
    ) -> None:
        """The group's RNG floor entry: the workload's generator (``mb.rng_floor``: the lane
        generator for W1–W3, the scalar one for W4) drawing the normals of the workload's Rust
        size on ``threads`` threads (stored for the other entries' floor multiple)."""
        n, generator = workload.normals, workload.floor_generator
        self(
            benchmark,
            workload,
            "rng_floor",
            lambda: mb.rng_floor(n, threads, repeats=1, generator=generator),
            threads=threads,
            rounds=rounds,
            samples=workload.rust_units,
        )
        info = benchmark.extra_info
        info["normals"] = n
        info["ns_per_normal_per_core"] = info["seconds_best"] * threads / n * 1e9
        self.floor.store(n, threads, generator, info["seconds_best"])


@pytest.fixture(scope="session")
def measure(
    size_set: str,
    machine: dict[str, Any],
    floor: FloorCache,
    ledger: Ledger,
    pytestconfig: pytest.Config,
) -> Measure:
    return Measure(size_set, machine, floor, ledger, _disabled(pytestconfig))


# ---------------------------------------------------------------------------------------
# end-of-session summary of the ratios
# ---------------------------------------------------------------------------------------
def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _LEDGER.groups:
        return
    tr = terminalreporter
    tr.section("mixforget benchmark ratios (per sample, equal work)")
    machine = mb.machine_info()
    sets = sorted(
        {str(e.info.get("size_set")) for g in _LEDGER.groups.values() for e in g.values()}
    )
    tr.write_line(
        f"{machine['cpu']}, {machine['cores']} usable cores, NumPy {machine['numpy']}; "
        f"sizes: {', '.join(sets)}"
        + (" (smoke run: timings meaningless)" if sets == ["smoke"] else "")
    )
    tr.write_line(
        f"{'group':<38} {'impl':<12} {'thr':>3} {'s (Rust size)':>13} {'ns/sample/core':>15} "
        f"{'× floor':>8} {'vs NumPy':>9} {'vs loop':>9} {'loop/core':>9} {'vs 1 thr':>9}"
    )

    def ratio(value: Optional[float], digits: int = 1) -> str:
        return f"{value:.{digits}f}×" if value else "—"

    for group, entries in _LEDGER.groups.items():
        for e in entries.values():
            i = e.info
            tr.write_line(
                f"{group[:38]:<38} {e.impl:<12} {e.threads:>3} {i['seconds_at_rust_size']:>13.4g} "
                f"{i['ns_per_sample_per_core']:>15.1f} {i['floor_multiple']:>8.2f} "
                f"{ratio(i.get('speedup_vs_numpy')):>9} {ratio(i.get('speedup_vs_numpy_loop')):>9} "
                f"{ratio(i.get('per_core_vs_numpy_loop')):>9} "
                f"{ratio(i.get('speedup_vs_1_thread'), 2):>9}"
            )
    tr.write_line(
        "vs NumPy: the generic twin (mixforget.reference); vs loop: the specialised vectorised "
        "NumPy loop (one core), all the entry's threads; loop/core: the same per core "
        "(one thread vs one core); vs 1 thr: thread scaling."
    )
