"""Long calls stop promptly on Ctrl-C, impossible sizes raise instead of aborting, runaway
replicates are stopped by the engine, and none of it depends on how a run is cut into calls."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mixforget as mf
from mixforget import _core
from mixforget._problem import build_problem, check_lr_scale
from mixforget._rng import resolve_rng, root_key

T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
S = T.replace(new_mean=[0.5])

_CHILD_PRELUDE = """
import json, os, signal, threading, time
import mixforget as mf
T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
S = T.replace(new_mean=[0.5])
"""


def _child(code: str, timeout: float = 120) -> dict:
    """Run ``code`` after the prelude in a fresh interpreter; it prints one JSON line."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Each call would run for hours; SIGINT arrives after 0.5 s, sent by a timer thread of the
# child, which measures the time from the signal to the KeyboardInterrupt in the caller.
_SIGINT_CALLS = """
calls = {
    "simulate": lambda: mf.simulate(
        T, S, mf.ReverseKL(), steps=10**9, record_every=10**9, replicates=32, batch_size=64
    ),
    "estimate_gradient": lambda: mf.estimate_gradient(
        T, S, mf.ReverseKL(), batch_size=4096, batches=10**7
    ),
    "population_flow": lambda: mf.population_flow(
        T, S, mf.ReverseKL(), steps=10**8, record_every=10**8
    ),
    "starvation_counts": lambda: mf.kernels.starvation_counts(0.5, 64, 5 * 10**8),
}
out = {}
for name, call in calls.items():
    sent = []
    def interrupt():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)
    threading.Timer(0.5, interrupt).start()
    began = time.perf_counter()
    try:
        call()
        out[name] = {"finished": time.perf_counter() - began}
    except KeyboardInterrupt:
        out[name] = {"latency": time.perf_counter() - sent[0]}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_sigint_stops_every_long_call_within_half_a_second():
    out = _child(_SIGINT_CALLS)
    for name, result in out.items():
        assert "latency" in result, (name, result)
        assert result["latency"] < 0.5, (name, result)


def test_impossible_sizes_raise_memory_error_instead_of_aborting():
    """Past the memory limit (raised to 4 EiB), a buffer that cannot be allocated is a
    MemoryError naming it, never an abort: in Rust (try_reserve: batch buffers, and the
    outputs of direct _core calls) or in NumPy (outputs allocated before the work)."""
    out = _child(
        """
        import numpy as np
        mf.set_memory_limit(2**62)
        kw = dict(steps=1, record_every=1, replicates=1)
        calls = {
            "simulate batch": lambda: mf.simulate(
                T, S, mf.ReverseKL(), batch_size=10**12, **kw
            ),
            "estimate_gradient batch": lambda: mf.estimate_gradient(
                T, S, mf.ReverseKL(), batch_size=10**12, batches=2
            ),
            "population_flow records": lambda: mf.population_flow(
                T, S, mf.ForwardKL(), steps=10**12, record_every=1
            ),
            "sample_mixture": lambda: mf.kernels.sample_mixture(
                10**13, [0.5, 0.5], [[0.0], [1.0]], [1.0, 1.0]
            ),
            "starvation_counts": lambda: mf.kernels.starvation_counts(0.5, 8, 10**13),
            "_core.sample_mixture": lambda: mf._core.sample_mixture(
                10**13, np.array([0.5, 0.5]), np.array([[0.0], [1.0]]), [np.array(1.0)] * 2,
                (1, 2), 1,
            ),
            "_core.starvation_counts": lambda: mf._core.starvation_counts(
                0.5, 8, 10**13, 0.0, False, (1, 2), 1
            ),
        }
        out = {}
        for name, call in calls.items():
            try:
                call()
                out[name] = "no error"
            except MemoryError as e:
                out[name] = "MemoryError: " + str(e)
        print(json.dumps(out))
        """
    )
    for name, message in out.items():
        assert message.startswith("MemoryError: "), (name, message)
    assert "batch buffers" in out["simulate batch"]
    assert "batch buffers" in out["estimate_gradient batch"]
    assert "samples" in out["_core.sample_mixture"]
    assert "starvation counts" in out["_core.starvation_counts"]


def test_runaway_replicates_are_stopped_by_the_engine():
    """ForwardKL with lr = 10 runs away (means beyond 10^6 Mahalanobis units): the engine
    flags every such replicate ``diverged`` and freezes it where it crossed the bound, which
    Trajectory.runaway (the same constants) recognises."""
    traj = mf.simulate(
        T, S, mf.ForwardKL(), lr=10.0, replicates=20, steps=200, record_every=1, rng=0
    )
    assert traj.diverged.all()
    np.testing.assert_array_equal(traj.runaway, traj.diverged)
    far = np.maximum(traj.drift, traj.new_error) > mf.results.RUNAWAY_DISTANCE
    for r in range(traj.replicates):
        crossed = int(np.argmax(far[r]))
        assert far[r, crossed]
        frozen = slice(crossed, None)
        for recorded in (traj.old_weight, traj.old_mean, traj.new_mean, traj.starved):
            assert (recorded[r, frozen] == recorded[r, crossed]).all()
        # before the crossing the replicate still moved
        assert crossed >= 1 and not far[r, crossed - 1]
    twin = mf.reference.simulate(
        T, S, mf.ForwardKL(), lr=10.0, replicates=20, steps=200, record_every=1, rng=0
    )
    assert twin.diverged.all()
    np.testing.assert_array_equal(twin.runaway, twin.diverged)
    # the flow with lr = 1000: |η| beyond 690.8 after one step, the means still finite
    flow = mf.population_flow(T, S, mf.ForwardKL(), lr=1000.0, steps=20, record_every=1)
    assert flow.diverged[0] and flow.runaway[0]
    assert np.isfinite(flow.new_mean).all() and (flow.new_mean[0, 1:] == flow.new_mean[0, 1]).all()
    assert mf.results.RUNAWAY_DISTANCE == _core.RUNAWAY_DISTANCE == 1e6
    assert mf.results.RUNAWAY_WEIGHT == _core.RUNAWAY_WEIGHT == 1e-300


def _problem(objective: mf.objectives.Objective, lr: float = 0.05):
    return build_problem(T, S, objective, "logit", lr, check_lr_scale(None))


def _cut_run(advance, cuts: list[int], record_every: int) -> list[np.ndarray]:
    parts = [advance(n, record_every) for n in cuts]
    fields = ("weight", "old_mean", "new_mean", "starved")
    return [np.concatenate([getattr(p, f) for p in parts], axis=1) for f in fields]


@pytest.mark.parametrize("cuts", [[1, 2, 97, 200], [150, 150], [7] * 42 + [6]])
def test_records_do_not_depend_on_the_cut(cuts):
    """Records sit at absolute step counts: any cut into calls gives the same arrays (and
    chunks shorter than record_every are allowed)."""
    problem = _problem(mf.ReverseKL(replay=0.2))

    def simulator():
        return _core.Simulator(problem, 16, 4, (3, 4), 2)

    whole = _cut_run(simulator().advance, [300], 50)
    assert whole[0].shape == (4, 6)
    for got, want in zip(_cut_run(simulator().advance, cuts, 50), whole):
        np.testing.assert_array_equal(got, want)
    flow_whole = _cut_run(_core.PopulationFlow(problem).advance, [300], 50)
    for got, want in zip(_cut_run(_core.PopulationFlow(problem).advance, cuts, 50), flow_whole):
        np.testing.assert_array_equal(got, want)


def test_gradient_study_in_chunks_equals_one_call():
    problem = _problem(mf.ReverseKL())
    key = (11, 12)
    per_stream = _core.BATCHES_PER_STREAM
    batches = 5 * per_stream + 17
    one = _core.estimate_gradient(problem, 16, batches, key, 2)
    a = _core.estimate_gradient(problem, 16, 3 * per_stream, key, 2)
    b = _core.estimate_gradient(problem, 16, batches - 3 * per_stream, key, 2, first_stream=3)
    np.testing.assert_array_equal(np.concatenate([a[0], b[0]]), one[0])
    np.testing.assert_array_equal(np.concatenate([a[1], b[1]]), one[1])


def test_kernels_in_chunks_equal_one_call():
    """The chunked kernels (cut at stream boundaries) reproduce one Rust call."""
    w, m, c = np.array([0.3, 0.7]), np.array([[0.0], [2.0]]), [np.array(1.0), np.array(0.5)]
    per_stream = _core.SAMPLES_PER_STREAM
    n = 9 * per_stream + 5
    x, labels = _core.sample_mixture(n, w, m, c, (5, 6), 2)
    x2, labels2 = mf.kernels.sample_mixture(n, w, m, [1.0, 0.5], rng=0)
    key = root_key(resolve_rng(0))
    x3, labels3 = _core.sample_mixture(n, w, m, c, key, 2)
    np.testing.assert_array_equal(x2, x3)
    np.testing.assert_array_equal(labels2, labels3)
    a = _core.sample_mixture(4 * per_stream, w, m, c, (5, 6), 2)
    b = _core.sample_mixture(n - 4 * per_stream, w, m, c, (5, 6), 2, first_stream=4)
    np.testing.assert_array_equal(np.concatenate([a[0], b[0]]), x)
    np.testing.assert_array_equal(np.concatenate([a[1], b[1]]), labels)
    counts = _core.starvation_counts(0.1, 16, n, 0.0, False, (5, 6), 2)
    a = _core.starvation_counts(0.1, 16, per_stream, 0.0, False, (5, 6), 2)
    b = _core.starvation_counts(0.1, 16, n - per_stream, 0.0, False, (5, 6), 2, first_stream=1)
    np.testing.assert_array_equal(np.concatenate([a, b]), counts)
    np.testing.assert_array_equal(
        mf.kernels.starvation_counts(0.1, 16, n, rng=0),
        _core.starvation_counts(0.1, 16, n, 0.0, False, key, 2),
    )
    # pointwise kernels, cut into row ranges
    x = np.linspace(-6.0, 6.0, 3 * mf._kernels.FIRST_ROWS + 7).reshape(-1, 1)
    np.testing.assert_array_equal(
        mf.kernels.responsibilities(x, w, m, [1.0, 0.5]), _core.responsibilities(x, w, m, c, 2)
    )
    np.testing.assert_array_equal(
        mf.kernels.mixture_logpdf(x, w, m, [1.0, 0.5]), _core.mixture_logpdf(x, w, m, c, 2)
    )
    problem = build_problem(T, S, mf.ReverseKL(replay=0.3), "logit", 1.0, check_lr_scale(None))
    np.testing.assert_array_equal(
        mf.kernels.replay_weights(x, S, T, 0.3), _core.replay_weights(problem, x, 2)
    )
