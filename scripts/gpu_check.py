"""One-shot GPU check of mixforget's array backends (issue 14): speed of W1 and agreement in
distribution with the Rust engine, printed as markdown tables.

Run on a machine with one GPU, mixforget installed from a wheel and any of torch / jax /
cupy installed (missing ones are reported and skipped)::

    python scripts/gpu_check.py [--json out.json] [--budget 360]

What it does, within about ``--budget`` seconds (default 360; compiles can add a minute):

1. W1 = ``simulate`` ReverseKL d = 1, B = 64, T = 1000 at R = 1000 and R = 131072, in
   float32 and float64, on each available GPU backend (one untimed run first: JAX compiles,
   CUDA initialises; then the best of two), and on Rust (all CPU cores) for reference.
   ns/sample = wall time / (R·T·B). When the projected time of a run exceeds its share of
   the budget, T is lowered (ns/sample is per step, so it stays comparable; the table says
   which T ran).
2. Agreement with Rust at small size (R = 4000, B = 16, T = 40) for ReverseKL with replay,
   SDFT, TTT-Discover (adaptive β) and OAPL: two-sample z-scores of the final old weight,
   means and starved counts; PASS when every |z| < 5.

Targets (issue 14): at R ≥ 131072, float32 ≤ 0.04 ns/sample, float64 ≤ 0.1 ns/sample.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
from typing import Any

import numpy as np

# JAX would take 75 % of the GPU's memory up front, starving torch and CuPy in this process
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import mixforget as mf
from mixforget.bench import default_problem

GPU_BACKENDS = {"jax": "gpu", "torch": "cuda", "cupy": None}
SIZES = (1000, 131072)
PRECISIONS = ("float32", "float64")
B, T = 64, 1000


def _available() -> dict[str, str]:
    """backend → '' when usable on a GPU, else the reason it is not."""
    out = {}
    for name, device in GPU_BACKENDS.items():
        if importlib.util.find_spec(name) is None:
            out[name] = "not installed"
            continue
        try:
            mf.simulate(
                *default_problem(1),
                mf.ReverseKL(),
                steps=2,
                batch_size=4,
                replicates=4,
                record_every=1,
                backend=name,
                device=device,
            )
            out[name] = ""
        except Exception as exc:  # report every failure, keep checking the others
            out[name] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def _w1(backend: str, device: Any, precision: str, r: int, steps: int) -> float:
    target, start = default_problem(1)
    kw: dict[str, Any] = dict(
        steps=steps,
        batch_size=B,
        lr=0.05,
        replicates=r,
        record_every=math.gcd(steps, 10),
        rng=0,
        backend=backend,
        precision=precision,
    )
    if backend != "rust":
        kw["device"] = device
    t0 = time.perf_counter()
    res = mf.simulate(target, start, mf.ReverseKL(), **kw)
    assert res.old_weight.shape[0] == r
    return time.perf_counter() - t0


def measure_speed(backends: list[str], budget: float) -> list[dict[str, Any]]:
    rows = []
    configs = [("rust", None, "float64", r) for r in SIZES]
    configs += [(b, GPU_BACKENDS[b], p, r) for b in backends for p in PRECISIONS for r in SIZES]
    share = budget / max(1, len(configs))
    for backend, device, precision, r in configs:
        try:
            probe_steps = 10
            _w1(backend, device, precision, r, probe_steps)  # compile / warm up
            probe = _w1(backend, device, precision, r, probe_steps)
            per_step = probe / probe_steps
            # timed: one warm-up (JAX compiles again for the new T) + two runs
            steps = (
                T if 3 * per_step * T <= share else max(20, int(share / (3 * per_step)) // 10 * 10)
            )
            _w1(backend, device, precision, r, steps)
            best = min(_w1(backend, device, precision, r, steps) for _ in range(2))
            rows.append(
                dict(
                    backend=backend,
                    precision=precision,
                    replicates=r,
                    steps=steps,
                    seconds=best,
                    ns_per_sample=best / (r * steps * B) * 1e9,
                )
            )
        except Exception as exc:
            rows.append(
                dict(backend=backend, precision=precision, replicates=r, error=repr(exc)[:200])
            )
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return rows


AGREEMENT_OBJECTIVES = [
    mf.ReverseKL(replay=0.3),
    mf.SDFT(ema=0.2),
    mf.TTTDiscover(beta="adaptive"),
    mf.OAPL(lag=5),
]


def check_agreement(backends: list[str]) -> list[dict[str, Any]]:
    target = mf.TwoMode(old_mean=[-2.0], new_mean=[2.0], old_weight=0.6, cov=1.0)
    start = target.replace(old_mean=[-1.5], new_mean=[0.5], old_weight=0.5)
    kw = dict(steps=40, batch_size=16, lr=0.1, replicates=4000, record_every=10)
    rows = []
    for objective in AGREEMENT_OBJECTIVES:
        rust = mf.simulate(target, start, objective, rng=1, **kw)
        for backend in backends:
            for precision in PRECISIONS:
                try:
                    twin = mf.simulate(
                        target,
                        start,
                        objective,
                        rng=2,
                        backend=backend,
                        device=GPU_BACKENDS[backend],
                        precision=precision,
                        **kw,
                    )
                    zmax = 0.0
                    for name in ("old_weight", "old_mean", "new_mean", "starved"):
                        a = getattr(rust, name)[:, -1].astype(float)
                        b = getattr(twin, name)[:, -1].astype(float)
                        se = np.sqrt(
                            a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b)
                        )
                        z = np.abs(a.mean(axis=0) - b.mean(axis=0)) / np.maximum(se, 1e-300)
                        zmax = max(zmax, float(np.max(z)))
                    rows.append(
                        dict(
                            objective=type(objective).__name__,
                            backend=backend,
                            precision=precision,
                            max_abs_z=zmax,
                            diverged=int(twin.diverged.sum()),
                            ok=zmax < 5.0 and not twin.diverged.any(),
                        )
                    )
                except Exception as exc:
                    rows.append(
                        dict(
                            objective=type(objective).__name__,
                            backend=backend,
                            precision=precision,
                            error=repr(exc)[:200],
                            ok=False,
                        )
                    )
    return rows


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mixforget": getattr(mf, "__version__", "?"),
        "cpu_cores": os.cpu_count(),
    }
    for name in ("jax", "torch", "cupy"):
        if importlib.util.find_spec(name) is not None:
            try:
                env[name] = __import__(name).__version__
            except Exception as exc:
                env[name] = f"import failed: {exc}"
    try:
        import torch

        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    if "gpu" not in env:
        try:
            import jax

            env["gpu"] = str(jax.devices()[0].device_kind)
        except Exception:
            env["gpu"] = "?"
    return env


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--budget", type=float, default=360.0, help="seconds for the whole check")
    p.add_argument("--backends", default="jax,torch,cupy", help="comma-separated subset")
    p.add_argument(
        "--cpu",
        action="store_true",
        help="dry run of this script on the CPU (devices 'cpu', R = 1000 and 8192)",
    )
    args = p.parse_args()
    global SIZES
    if args.cpu:
        GPU_BACKENDS.update(jax="cpu", torch="cpu")
        SIZES = (1000, 8192)
    t0 = time.perf_counter()
    env = _environment()
    avail = _available()
    wanted = [b for b in args.backends.split(",") if b]
    backends = [b for b in wanted if avail.get(b) == ""]
    print("## Environment\n")
    for k, v in env.items():
        print(f"- {k}: {v}")
    for b in wanted:
        print(f"- backend {b}: {'available' if b in backends else avail.get(b, 'unknown')}")
    print(flush=True)

    agreement = check_agreement(backends)
    speed = measure_speed(backends, max(30.0, args.budget - (time.perf_counter() - t0)))

    print("## W1 speed (ReverseKL d=1, B=64), ns per sample (wall clock, whole device)\n")
    print("| backend | precision | R | T run | time | ns/sample |")
    print("|---|---|---:|---:|---:|---:|")
    for r in speed:
        if "error" in r:
            print(
                f"| {r['backend']} | {r['precision']} | {r['replicates']} | – | – | {r['error']} |"
            )
        else:
            print(
                f"| {r['backend']} | {r['precision']} | {r['replicates']} | {r['steps']} | "
                f"{r['seconds']:.3f} s | {r['ns_per_sample']:.4g} |"
            )
    print("\nTargets at R = 131072: float32 ≤ 0.04, float64 ≤ 0.1 ns/sample.\n")
    print("## Agreement with Rust in distribution (R=4000, B=16, T=40; PASS: every |z| < 5)\n")
    print("| objective | backend | precision | max abs z | result |")
    print("|---|---|---|---:|---|")
    for r in agreement:
        if "error" in r:
            print(f"| {r['objective']} | {r['backend']} | {r['precision']} | – | {r['error']} |")
        else:
            verdict = "PASS" if r["ok"] else "FAIL"
            print(
                f"| {r['objective']} | {r['backend']} | {r['precision']} | "
                f"{r['max_abs_z']:.2f} | {verdict} |"
            )
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"environment": env, "speed": speed, "agreement": agreement}, fh, indent=1)
    return 0 if all(r["ok"] for r in agreement) else 1


if __name__ == "__main__":
    raise SystemExit(main())
