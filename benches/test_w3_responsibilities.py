"""W3: kernels.responsibilities on 10^7 points in d = 1 (W3a) and 10^6 points in d = 32
(W3b), default two-mode mixture (docs: speed-workloads): Rust vs the NumPy twin vs the RNG floor
(n·d normals: the cost of producing as many numbers as the kernel reads)."""

from __future__ import annotations

import numpy as np
import pytest

from mixforget import bench as mb

GROUPS = {"W3a": "W3a responsibilities d=1", "W3b": "W3b responsibilities d=32"}
KEYS = [pytest.param(k, marks=pytest.mark.benchmark(group=g), id=k) for k, g in GROUPS.items()]

_cache: dict = {}


@pytest.fixture
def workload(sizes, request):
    key = request.node.callspec.params["key"]
    if _cache.get("key") != key:  # one workload (and its input points) alive at a time
        _cache.clear()
        _cache.update(key=key, w=mb.make_workload(key, sizes[key]))
    return _cache["w"]


def _check(r, w):
    assert r.shape == (w.sizes["points"], 2)
    np.testing.assert_allclose(r[:100].sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("key", KEYS)
def test_w3_rng_floor(benchmark, measure, workload, threads, rounds, key):
    measure.floor_entry(benchmark, workload, threads, rounds(3))


@pytest.mark.parametrize("key", KEYS)
def test_w3_rust(benchmark, measure, workload, threads, rounds, key):
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


@pytest.mark.parametrize("key", KEYS)
def test_w3_numpy(benchmark, measure, workload, rounds, key):
    _check(
        measure(benchmark, workload, "numpy", workload.numpy, threads=1, rounds=rounds(3)), workload
    )
