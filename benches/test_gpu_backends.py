"""GPU group (issue 14): W1 (simulate ReverseKL d = 1, B = 64) through the array backends of
``mixforget.simulate`` on a GPU — JAX, torch, CuPy in float32 and float64 — at R = 131072
(full sizes; the other size sets use R = 1000 × their T). Skipped without a GPU or without
the library. The one-shot check with markdown output is ``scripts/gpu_check.py``."""

from __future__ import annotations

import importlib.util
import math

import pytest

import mixforget as mf
from mixforget import bench as mb

GROUP = "W1 GPU backends"
DEVICES = {"jax": "gpu", "torch": "cuda", "cupy": None}


def _gpu_reason(backend: str) -> str:
    """'' when ``backend`` runs on a GPU here, else why not."""
    if importlib.util.find_spec(backend) is None:
        return f"{backend} not installed"
    try:
        from mixforget.reference._backend import get_backend

        get_backend(backend, DEVICES[backend])
    except (ImportError, ValueError) as exc:
        return f"no GPU for {backend}: {exc}"
    return ""


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("backend", list(DEVICES))
def test_w1_gpu(benchmark, sizes, size_set, rounds, backend, precision):
    reason = _gpu_reason(backend)
    if reason:
        pytest.skip(reason)
    s = sizes["W1"]
    r = 131072 if size_set == "full" else int(s["replicates"])
    steps, b = int(s["steps"]), int(s["batch_size"])
    target, start = mb.default_problem(1)
    kw = dict(
        steps=steps,
        batch_size=b,
        lr=0.05,
        replicates=r,
        record_every=math.gcd(steps, 10),
        rng=0,
        backend=backend,
        device=DEVICES[backend],
        precision=precision,
    )
    mf.simulate(target, start, mf.ReverseKL(), **kw)  # compile / CUDA start-up, untimed
    res = benchmark.pedantic(
        lambda: mf.simulate(target, start, mf.ReverseKL(), **kw), rounds=rounds(3), iterations=1
    )
    assert res.old_weight.shape == (r, steps // kw["record_every"] + 1)
    assert not res.diverged.any()
    if benchmark.stats is not None:
        best = benchmark.stats.stats.min
        benchmark.extra_info.update(
            backend=backend,
            precision=precision,
            replicates=r,
            steps=steps,
            batch_size=b,
            ns_per_sample=best / (r * steps * b) * 1e9,
        )
