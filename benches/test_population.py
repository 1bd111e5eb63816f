"""Population flow: one exact-gradient step of ``mixforget.population_flow`` on 1-, 2- and
3-dimensional spans of the means (docs: theory-population), ReverseKL, one thread.

Each entry runs a few steps of the flow and records milliseconds per step in ``extra_info``.
The problems: the target TwoMode(old −3, new 3.5, α* = 0.75) along the first axis, and a
start whose means leave that line (2-D: new mean (0.5, 1); 3-D: old mean (−2.5, 0, 1), new
mean (0.5, 1, 0)), so that the quadrature runs on a genuinely 2- or 3-dimensional span.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import mixforget as mf

GROUP = "population flow step"

# span dimension -> (target, start, steps per timed call)
_PROBLEMS = {
    1: (([-3.0], [3.5]), ([-3.0], [0.5]), 50),
    2: (([-3.0, 0.0], [3.5, 0.0]), ([-3.0, 0.0], [0.5, 1.0]), 10),
    3: (([-3.0, 0.0, 0.0], [3.5, 0.0, 0.0]), ([-2.5, 0.0, 1.0], [0.5, 1.0, 0.0]), 2),
}


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("span", [1, 2, 3])
def test_population_step(benchmark, span, rounds):
    (t_old, t_new), (s_old, s_new), steps = _PROBLEMS[span]
    target = mf.TwoMode(old_mean=t_old, new_mean=t_new, old_weight=0.75, cov=1.0)
    start = target.replace(old_mean=s_old, new_mean=s_new)
    objective = mf.ReverseKL()
    times: list[float] = []

    def run() -> mf.Trajectory:
        t0 = time.perf_counter()
        out = mf.population_flow(target, start, objective, steps=steps, lr=0.05, record_every=steps)
        times.append(time.perf_counter() - t0)
        return out

    flow = benchmark.pedantic(run, rounds=rounds(5), iterations=1, warmup_rounds=1)
    assert np.all(np.isfinite(flow.new_mean)) and not bool(np.any(flow.diverged))
    benchmark.extra_info.update(
        {"span": span, "steps": steps, "ms_per_step": min(times) / steps * 1e3}
    )
