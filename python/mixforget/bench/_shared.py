"""The default problem of the benchmarks and their recording interval, shared by the workloads
and the NumPy baseline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._defaults import DEFAULT_PROBLEM
from ..mixture import TwoMode


def default_problem(dim: int = 1) -> tuple[Any, Any]:
    """The default problem of docs: theory-model in ``dim`` dimensions, means along u = (1, …,
    1)/√d: target TwoMode(old_mean=−3u, new_mean=3.5u, old_weight=0.75, cov=1.0) and the start
    ``target.replace(new_mean=0.5u)``. Returns (target, start)."""
    u = np.ones(int(dim)) / math.sqrt(int(dim))
    along_u = {**DEFAULT_PROBLEM["target"]}
    along_u.update({key: along_u[key][0] * u for key in ("old_mean", "new_mean")})
    target = TwoMode(**along_u)
    return target, target.replace(new_mean=DEFAULT_PROBLEM["start_new_mean"][0] * u)


def _record_every(steps: int) -> int:
    return math.gcd(int(steps), 10)
