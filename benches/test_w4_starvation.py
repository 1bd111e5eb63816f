"""W4: kernels.starvation_counts over 10^8 batches, α = 0.05, B = 32 (docs: speed-workloads,
theory-starvation): Rust vs the NumPy twin vs the RNG floor (one normal per batch: each count is one
binomial variate, the samples are not materialised)."""

from __future__ import annotations

import pytest

from mixforget import bench as mb

GROUP = "W4 starvation_counts"


@pytest.fixture(scope="module")
def workload(sizes):
    return mb.make_workload("W4", sizes["W4"])


def _check(c, w):
    assert c.shape == (w.sizes["batches"],)
    assert int(c[:1000].min()) >= 0 and int(c[:1000].max()) <= w.sizes["batch_size"]


@pytest.mark.benchmark(group=GROUP)
def test_w4_rng_floor(benchmark, measure, workload, threads, rounds):
    measure.floor_entry(benchmark, workload, threads, rounds(3))


@pytest.mark.benchmark(group=GROUP)
def test_w4_rust(benchmark, measure, workload, threads, rounds):
    _check(
        measure(
            benchmark,
            workload,
            "rust",
            lambda: workload.rust(threads),
            threads=threads,
            rounds=rounds(3),
        ),
        workload,
    )


@pytest.mark.benchmark(group=GROUP)
def test_w4_numpy(benchmark, measure, workload, rounds):
    _check(
        measure(benchmark, workload, "numpy", workload.numpy, threads=1, rounds=rounds(3)), workload
    )
