"""Machine and timing helpers of the benchmarks: usable cores, the machine description, the
best of a few repeats and the RNG floor (the time the generator alone takes)."""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Any, Callable

import numpy as np

from .workloads import _FLOOR_KEY, FLOOR_GENERATORS


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
    from .. import __version__

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
    from .. import _core

    if generator not in FLOOR_GENERATORS:
        raise ValueError(f"generator must be one of {list(FLOOR_GENERATORS)}, got {generator!r}")
    draw = _core.lane_normal_floor if generator == "lane" else _core.normal_floor
    n = max(1, int(normals))
    return best_of(lambda: draw(n, _FLOOR_KEY, int(threads)), repeats)
