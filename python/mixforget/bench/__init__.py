"""``mixforget bench [--quick]``: the Rust engine against its honest NumPy twin on this machine
(docs: speed-workloads).

Workloads (docs: speed-workloads; the pytest-benchmark suite in ``benches/`` runs them at full size,
this command at sizes that finish in under a minute, ``--quick`` in about ten seconds):

- **W1** ``simulate`` ReverseKL, d = 1 (default problem of docs: theory-model, start with the new
  mean at 0.5), R replicates × B samples × T steps; also timed on one thread (thread scaling);
- **W1s** W1 at the small batch B = 8 of starvation studies (issue 23), also on one thread;
- **W2** the same at d = 32, means along the unit direction (1, …, 1)/√32, Σ = I;
- **W3a / W3b** ``kernels.responsibilities`` (docs: theory-geometry) on n points, d = 1 and d = 32;
- **W4** ``kernels.starvation_counts`` (docs: theory-starvation), α = 0.05, B = 32.

Each row reports the best of a few repeats, the speed-up per unit of work (the NumPy twin may
run fewer steps; its time is scaled per step to the Rust size), the Rust cost in ns per sample
per core, and its multiple of the *RNG floor*: the time the workload's generator takes to draw
the same number of standard normals alone (same threads) in this run. W1, W1s and W2 draw every
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

Layout: ``workloads`` (sizes and :func:`make_workload`), ``numpy_baseline`` (the specialised
NumPy loop and why it exists), ``timing`` (machine, repeats, RNG floor), ``report`` (the
table) and ``command`` (``mixforget bench``); the public names are re-exported here.
"""

from __future__ import annotations

from ._shared import _record_every as _record_every  # benches/ records on the same grid
from ._shared import default_problem
from .command import main
from .numpy_baseline import numpy_loop, numpy_loop_w1
from .report import format_table, run_backend_w1, run_benchmarks
from .timing import best_of, machine_info, rng_floor, usable_cores
from .workloads import (
    CLI_SIZES,
    FLOOR_GENERATORS,
    FULL_SIZES,
    QUICK_SIZES,
    SMOKE_SIZES,
    WORKLOADS,
    Workload,
    make_workload,
)

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
