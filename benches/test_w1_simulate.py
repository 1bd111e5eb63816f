"""W1: simulate ReverseKL d = 1, R = 1000, B = 64, T = 1000 (docs: speed-workloads), and W1s, the
same at the small batch B = 8 of starvation studies (issue 23; T = 4000), each Rust vs the
NumPy twin vs the specialised NumPy loop (``mixforget.bench.numpy_loop_w1``: the best a NumPy user
would write for this one workload) vs the RNG floor in one group; thread scaling (1, 2 and
all usable threads) in a second group. The summary reports every entry against the
specialised loop per core and on all cores."""

from __future__ import annotations

import pytest

from mixforget import bench as mb

GROUP = "W1 simulate ReverseKL d=1"
SCALING = "W1 thread scaling"


@pytest.fixture(scope="module", params=["W1", "W1s"])
def workload(request, sizes):
    return mb.make_workload(request.param, sizes[request.param])


def _group(benchmark, workload, base):
    """W1s entries in their own groups (the ledger pairs Rust and NumPy within a group)."""
    if workload.key != "W1":
        benchmark.group = base.replace("W1", workload.key, 1) + " B=8"


def _check(res, replicates, steps):
    assert res.old_weight.shape == (replicates, steps // mb._record_every(steps) + 1)
    assert not res.diverged.any()


@pytest.mark.benchmark(group=GROUP)
def test_w1_rng_floor(benchmark, measure, workload, threads, rounds):
    _group(benchmark, workload, GROUP)
    measure.floor_entry(benchmark, workload, threads, rounds(3))


@pytest.mark.benchmark(group=GROUP)
def test_w1_rust(benchmark, measure, workload, threads, rounds):
    _group(benchmark, workload, GROUP)
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
def test_w1_numpy(benchmark, measure, workload, rounds):
    _group(benchmark, workload, GROUP)
    res = measure(
        benchmark,
        workload,
        "numpy",
        workload.numpy,
        threads=1,
        rounds=rounds(3),
        samples=workload.numpy_units,
        steps=workload.numpy_steps,
    )
    _check(res, workload.sizes["replicates"], workload.numpy_steps)


@pytest.mark.benchmark(group=GROUP)
def test_w1_numpy_loop(benchmark, measure, workload, rounds):
    _group(benchmark, workload, GROUP)
    rec = measure(
        benchmark,
        workload,
        "numpy_loop",
        workload.numpy_loop,
        threads=1,
        rounds=rounds(3),
        samples=workload.numpy_units,
        steps=workload.numpy_steps,
    )
    assert rec["old_weight"].shape == (
        workload.sizes["replicates"],
        workload.numpy_steps // mb._record_every(workload.numpy_steps) + 1,
    )
    assert not rec["diverged"].any()


@pytest.mark.benchmark(group=SCALING)
@pytest.mark.parametrize("n_threads", sorted({1, 2, mb.usable_cores()}))
def test_w1_threads(benchmark, measure, workload, rounds, n_threads):
    _group(benchmark, workload, SCALING)
    res = measure(
        benchmark,
        workload,
        f"rust_{n_threads}t",
        lambda: workload.rust(n_threads),
        threads=n_threads,
        rounds=rounds(3),
        steps=workload.steps,
        extra={"usable_cores": mb.usable_cores()},
    )
    _check(res, workload.sizes["replicates"], workload.steps)
