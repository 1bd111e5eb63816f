"""``mixforget bench``: its arguments and :func:`main`, which runs the benchmarks and prints
the table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .report import _fmt_s, format_table, run_backend_w1, run_benchmarks
from .timing import machine_info


# entry points
# ---------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mixforget bench",
        description="Rust vs NumPy timings on this machine (docs: speed-workloads).",
    )
    p.add_argument("--quick", action="store_true", help="small workloads only (about ten seconds)")
    add_backend_arguments(p)
    return p


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend/--device/--precision/--replicates/--steps``: W1 on one backend."""
    p.add_argument(
        "--backend",
        default=None,
        help="time W1 (ReverseKL d=1, B=64) on this backend of mixforget.simulate (rust, numpy, "
        "torch, cupy, jax, array_api_strict) next to Rust, instead of the Rust/NumPy table",
    )
    p.add_argument("--device", default=None, help="device of --backend (default: its own)")
    p.add_argument("--precision", default="float64", help="float64 or float32 (--backend)")
    p.add_argument("--replicates", type=int, default=1000, help="R for --backend (1000)")
    p.add_argument("--steps", type=int, default=1000, help="T for --backend (1000)")


def _main_backend(args: argparse.Namespace, repeats: int) -> int:
    """``mixforget bench --backend X``: W1 on X and on Rust at the same sizes. X, its device
    and precision (its library imported) and the sizes are checked before anything runs."""
    _check_backend_run(args)
    machine = machine_info()
    print(f"mixforget bench --backend {args.backend}: W1 on {machine['cpu']}", flush=True)
    rows = []
    sizes = dict(replicates=args.replicates, steps=args.steps, repeats=repeats)
    rows.append(run_backend_w1("rust", **sizes))
    if args.backend != "rust":
        rows.append(run_backend_w1(args.backend, args.device, args.precision, **sizes))
    print("| backend | device | precision | R | T | B | time | ns/sample |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['device']} | {r['precision']} | {r['replicates']} | "
            f"{r['steps']} | {r['batch_size']} | {_fmt_s(r['seconds'])} | "
            f"{r['ns_per_sample']:.3g} |"
        )
    return 0


def _check_backend_run(args: argparse.Namespace) -> None:
    """ValueError (bad name, device, precision or size) or ImportError (the backend's library
    is missing, naming the extra) before any benchmark runs."""
    from .._validate import as_positive_int
    from ..reference._backend import check_backend_args, get_backend

    check_backend_args(args.backend, args.device, args.precision)
    as_positive_int("--replicates", args.replicates)
    as_positive_int("--steps", args.steps)
    if args.backend != "rust":
        get_backend(args.backend, args.device, args.precision)


def main(
    args: argparse.Namespace | Sequence[str] | None = None,
    *,
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    repeats: int = 3,
) -> int:
    """Run the benchmarks and print the table (``mixforget bench [--quick]``). ``args``: an
    argparse Namespace with a ``quick`` attribute (the CLI's), a list of command-line words,
    or None (``sys.argv``). ``sizes``/``repeats`` as in :func:`run_benchmarks`. Returns 0."""
    if args is None or not isinstance(args, argparse.Namespace):
        args = _parser().parse_args(None if args is None else list(args))
    if getattr(args, "backend", None) is not None:
        return _main_backend(args, repeats)
    quick = bool(getattr(args, "quick", False))
    machine = machine_info()
    print(
        f"mixforget bench{' --quick' if quick else ''}: Rust vs NumPy on {machine['cpu']} "
        f"({machine['cores']} cores)",
        flush=True,
    )
    t0 = time.perf_counter()
    rows = run_benchmarks(
        quick=quick,
        sizes=sizes,
        repeats=repeats,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    print(format_table(rows, machine))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # python -m mixforget.bench [--quick]
    raise SystemExit(main())
