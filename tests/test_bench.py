"""mixforget.bench (``mixforget bench``) on tiny sizes, and the benches/ suite as a smoke run
under ``--benchmark-disable`` (docs: speed-workloads). No timed asserts: only structure and
arithmetic."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mixforget.bench as mb

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [
    "workload",
    "sizes",
    "Rust",
    "NumPy",
    "speed-up",
    "ns/sample/core",
    "× RNG floor",
    "threads",
    "vs NumPy loop",
    "per core",
]


def test_main_quick_prints_full_table(capsys):
    assert (
        mb.main(argparse.Namespace(quick=True, command="bench"), sizes=mb.SMOKE_SIZES, repeats=1)
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "machine:" in out
        and "usable cores" in out
        and f"NumPy {__import__('numpy').__version__}" in out
    )
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    for col in COLUMNS:
        assert col in header
    for key in mb.WORKLOADS:
        assert any(line.split()[:1] == [key] for line in out.splitlines()), key
    assert "RNG floor" in out and "8-lane SIMD generator" in out
    loop_note = next(line for line in out.splitlines() if line.startswith("vs NumPy loop"))
    assert "bench.numpy_loop" in loop_note and "W1" in loop_note and "W2" in loop_note
    w2 = next(line for line in out.splitlines() if line.split()[:1] == ["W2"])
    assert not w2.rstrip().endswith("—")  # W2 has its specialised-loop ratios


def test_main_accepts_argv_list(capsys):
    assert mb.main(["--quick"], sizes=mb.SMOKE_SIZES, repeats=1) == 0
    assert "ns/sample/core" in capsys.readouterr().out


def test_rows_are_consistent():
    rows = mb.run_benchmarks(quick=True, sizes=mb.SMOKE_SIZES, repeats=1, threads=2)
    keys = [r["workload"] for r in rows]
    assert keys == ["W1", "W1 1t", "W1s", "W1s 1t", "W2", "W3a", "W3b", "W4"]
    for r in rows:
        for k in ("rust_s", "numpy_s", "numpy_measured_s", "floor_s"):
            assert r[k] > 0 and math.isfinite(r[k]), (r["workload"], k)
        assert r["speedup"] == pytest.approx(r["numpy_s"] / r["rust_s"])
        assert r["floor_multiple"] == pytest.approx(r["rust_s"] / r["floor_s"])
        assert r["rust_ns_per_sample_core"] == pytest.approx(
            r["rust_s"] * r["threads"] / r["samples"] * 1e9
        )
        assert r["numpy_s"] == pytest.approx(r["numpy_measured_s"] * r["numpy_scale"])
    assert [r["floor_generator"] for r in rows] == ["lane"] * 7 + ["scalar"]
    for r in rows:
        has_loop = r["workload"] in ("W1", "W1 1t", "W1s", "W1s 1t", "W2")
        assert ("numpy_loop_s" in r) == has_loop, r["workload"]
        if has_loop:
            assert r["numpy_loop_s"] > 0
            assert r["loop_speedup"] == pytest.approx(r["numpy_loop_s"] / r["rust_s"])
            assert r["loop_speedup_per_core"] == pytest.approx(r["loop_speedup"] / r["threads"])
            assert r["numpy_loop_s"] == pytest.approx(
                r["numpy_loop_ns_per_sample_core"] * 1e-9 * r["samples"]
            )
    w1, w1_1t, w1s, w1s_1t, w2 = rows[:5]
    assert w1["threads"] == 2 and w1_1t["threads"] == 1
    assert w1["thread_speedup"] == pytest.approx(w1_1t["rust_s"] / w1["rust_s"])
    assert w1s_1t["threads"] == 1 and " B=8 " in w1s["sizes"]
    assert w1s["thread_speedup"] == pytest.approx(w1s_1t["rust_s"] / w1s["rust_s"])
    assert mb.FULL_SIZES["W1s"]["batch_size"] == 8 and mb.CLI_SIZES["W1s"]["batch_size"] == 8
    s = mb.SMOKE_SIZES["W2"]
    assert w2["samples"] == s["replicates"] * s["batch_size"] * s["steps"]
    assert w2["normals"] == w2["samples"] * 32
    assert w2["numpy_scale"] == pytest.approx(s["steps"] / s["numpy_steps"]) and w2["numpy_scaled"]


def test_rng_floor_times_the_generator_asked_for(monkeypatch):
    """The default floor is the lane generator's (what simulate draws from); "scalar" times
    the scalar Ziggurat; anything else is refused before any work."""
    from mixforget import _core

    calls = []
    for name in ("lane_normal_floor", "normal_floor"):
        monkeypatch.setattr(
            _core, name, lambda n, key, threads, name=name: calls.append((name, n, threads))
        )
    assert mb.rng_floor(1000, 2, repeats=2) >= 0
    assert calls == [("lane_normal_floor", 1000, 2)] * 2
    calls.clear()
    mb.rng_floor(10, 1, repeats=1, generator="scalar")
    assert calls == [("normal_floor", 10, 1)]
    calls.clear()
    with pytest.raises(ValueError, match="generator"):
        mb.rng_floor(10, 1, generator="ziggurat")
    assert calls == []
    assert mb.FLOOR_GENERATORS == ("lane", "scalar")
    assert [mb.make_workload(k, mb.SMOKE_SIZES[k]).floor_generator for k in mb.WORKLOADS] == [
        "lane",
        "lane",
        "lane",
        "lane",
        "lane",
        "scalar",
    ]


def test_one_thread_has_no_scaling_row():
    rows = mb.run_benchmarks(quick=True, sizes=mb.SMOKE_SIZES, repeats=1, threads=1)
    assert [r["workload"] for r in rows] == list(mb.WORKLOADS)
    assert "Thread scaling" not in mb.format_table(rows)


def test_workloads_match_design_sizes():
    w1 = mb.make_workload("W1", {"replicates": 3, "steps": 20, "numpy_steps": 10, "batch_size": 4})
    assert (w1.rust_units, w1.numpy_units, w1.normals) == (3 * 20 * 4, 3 * 10 * 4, 3 * 20 * 4)
    assert mb.FULL_SIZES["W1"] == {
        "dim": 1,
        "replicates": 1000,
        "batch_size": 64,
        "steps": 1000,
        "numpy_steps": 1000,
    }
    assert mb.FULL_SIZES["W2"]["dim"] == 32 and mb.FULL_SIZES["W3a"]["points"] == 10**7
    assert (
        mb.FULL_SIZES["W3b"] == {"points": 10**6, "dim": 32}
        and mb.FULL_SIZES["W4"]["batches"] == 10**8
    )
    target, start = mb.default_problem(32)
    assert target.dim == 32 and target.separation == pytest.approx(6.5)
    assert start == target.replace(new_mean=0.5 * __import__("numpy").ones(32) / math.sqrt(32))


def test_bad_sizes_and_workloads():
    with pytest.raises(ValueError, match="unknown workload"):
        mb.make_workload("W9")
    with pytest.raises(ValueError, match="unknown workloads"):
        mb.run_benchmarks(quick=True, sizes={"W9": {}})


def test_machine_info():
    info = mb.machine_info()
    assert info["cores"] >= 1 and info["cpu"] and info["numpy"]


def test_module_help_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "mixforget.bench", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout


@pytest.mark.slow
def test_benches_smoke_run():
    """benches/ imports and every entry runs once under --benchmark-disable (smoke sizes)."""
    pytest.importorskip("pytest_benchmark")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXFORGET_BENCH_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benches",
            "--benchmark-disable",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout and "mixforget benchmark ratios" in proc.stdout
