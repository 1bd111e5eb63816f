"""W2: simulate ReverseKL d = 32 (means along (1, …, 1)/√32, Σ = I), R = 1000, B = 64,
T = 1000 (docs: speed-workloads): Rust vs the NumPy twin vs the RNG floor. At full size NumPy takes
about a minute, so it runs one round (``MIXFORGET_BENCH_ROUNDS`` overrides)."""

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
