#!/usr/bin/env python
"""Print the README's theory-vs-measurement tables (markdown) and the command that made them.

    python scripts/theory_table.py            # the README tables (~30 s on 2 cores)
    python scripts/theory_table.py --quick    # smaller runs, same layout

Two studies of :mod:`mixforget.studies`:
1. drift vs separation (docs: theory-pred-drift): ReverseKL from the standard start (old
   component correct, new mean 2σ beyond its target), population flow and finite batches;
2. starvation and replay (docs: theory-starvation, theory-pred-starvation, theory-pred-replay):
   predicted vs measured starvation and the variance of the old-mean gradient estimate with and
   without replay.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time

import numpy as np

import mixforget as mf
from mixforget import studies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicates and batches")
    parser.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    parser.add_argument(
        "--replicates", type=int, default=None, help="finite-batch replicates per Δ"
    )
    parser.add_argument("--batches", type=int, default=None, help="batches per starvation setting")
    parser.add_argument(
        "--plots",
        metavar="PREFIX",
        default=None,
        help="also write PREFIX_drift.png and PREFIX_starvation.png (needs matplotlib)",
    )
    args = parser.parse_args(argv)

    replicates = args.replicates if args.replicates is not None else (50 if args.quick else 200)
    batches = args.batches if args.batches is not None else (20_000 if args.quick else 100_000)
    separations = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    objective = mf.ReverseKL(baseline="none")

    began = time.perf_counter()
    drift = studies.drift_vs_separation(
        separations,
        objective,
        old_weight=0.75,
        start_offset=2.0,
        steps=3000,
        lr=0.1,
        batch_size=64,
        replicates=replicates,
        fit_points=4,
        rng=args.seed,
    )
    starve = studies.starvation(
        [0.02, 0.05, 0.1],
        [4, 8, 16, 32],
        [0.25],
        objective=mf.ReverseKL(),
        separation=4.0,
        old_mean_offset=0.3,
        batches=batches,
        rng=args.seed,
    )
    wall = time.perf_counter() - began

    command = "python " + " ".join(
        shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    )
    print(f"<!-- produced by: {command} -->")
    print(
        f"<!-- mixforget {mf.__version__}, numpy {np.__version__}, Python "
        f"{platform.python_version()}, "
        f"{wall:.1f} s -->"
    )
    print()
    print(
        "**Old-mode drift vs separation** (docs: theory-pred-drift). ReverseKL (no baseline), α* = "
        "0.75, "
        "standard start with the new mean 2σ beyond its target, lr = 0.1, 3000 steps; "
        f"finite batches: B = 64, {replicates} replicates."
    )
    print()
    print(drift.to_markdown())
    print()
    print(
        "**Starvation and replay** (docs: theory-starvation, theory-pred-starvation, "
        "theory-pred-replay). ReverseKL (loo baseline) with bernoulli "
        "replay λ = 0.25; the model is the target (Δ = 4) with its old mean moved by 0.3σ."
    )
    print()
    print(starve.to_markdown())
    if args.plots:
        import matplotlib

        matplotlib.use("Agg")
        drift.plot().figure.savefig(f"{args.plots}_drift.png", dpi=120, bbox_inches="tight")
        starve.plot().figure.savefig(f"{args.plots}_starvation.png", dpi=120, bbox_inches="tight")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
