"""W2: simulate ReverseKL d = 32 (means along (1, …, 1)/√32, Σ = I), R = 1000, B = 64,
T = 1000 (docs: speed-workloads): Rust vs the NumPy twin vs the specialised NumPy loop
(``mixforget.bench.numpy_loop`` at d = 32: the best a NumPy user would write for this one
workload) vs the RNG floor (the lane generator W2 draws from). At full size the twin takes about a
minute and the loop about half of it, so both run one round (``MIXFORGET_BENCH_ROUNDS``
overrides). The summary reports every entry against the specialised loop per core and on all
cores."""

from __future__ import annotations

import pytest

from mixforget import bench as mb

GROUP = "W2 simulate ReverseKL d=32"


@pytest.fixture(scope="module")
def workload(sizes):
    return mb.make_workload("W2", sizes["W2"])


def _check(res, replicates, steps):
    assert res.old_mean.shape == (replicates, steps // mb._record_every(steps) + 1, 32)
    assert not res.diverged.any()


@pytest.mark.benchmark(group=GROUP)
def test_w2_rng_floor(benchmark, measure, workload, threads, rounds):
    measure.floor_entry(benchmark, workload, threads, rounds(3))


@pytest.mark.benchmark(group=GROUP)
def test_w2_rust(benchmark, measure, workload, threads, rounds):
    res = measure(
        benchmark,
        workload,
        "rust",
        lambda: workload.rust(threads),
        threads=threads,
        rounds=rounds(3),
        steps=workload.steps,
    )
    _check(res, workload.sizes["replicates"], workload.steps)


@pytest.mark.benchmark(group=GROUP)
def test_w2_numpy(benchmark, measure, workload, rounds):
    big = workload.numpy_units >= 10**7
    res = measure(
        benchmark,
        workload,
        "numpy",
        workload.numpy,
        threads=1,
        rounds=rounds(1 if big else 3),
        samples=workload.numpy_units,
        steps=workload.numpy_steps,
    )
    _check(res, workload.sizes["replicates"], workload.numpy_steps)


@pytest.mark.benchmark(group=GROUP)
def test_w2_numpy_loop(benchmark, measure, workload, rounds):
    big = workload.numpy_units >= 10**7
    rec = measure(
        benchmark,
        workload,
        "numpy_loop",
        workload.numpy_loop,
        threads=1,
        rounds=rounds(1 if big else 3),
        samples=workload.numpy_units,
        steps=workload.numpy_steps,
    )
    assert rec["old_mean"].shape == (
        workload.sizes["replicates"],
        workload.numpy_steps // mb._record_every(workload.numpy_steps) + 1,
        32,
    )
    assert not rec["diverged"].any()
