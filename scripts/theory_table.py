#!/usr/bin/env python
"""Print the README's theory-vs-measurement tables (markdown) and the command that made them.

    python scripts/theory_table.py            # the README tables (~15 s on 2 cores)
    python scripts/theory_table.py --quick    # smaller runs, same layout
    python scripts/theory_table.py --check    # the README's stored tables still hold (exact)
    python scripts/theory_table.py --check --quick   # the same at reduced size (~5 s)
    python scripts/theory_table.py --write    # store the tables in README.md

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
import sys
import time
from pathlib import Path

import numpy as np

import mixforget as mf
from mixforget import studies

sys.path.insert(0, str(Path(__file__).resolve().parent))
import table_check  # the sibling module, found from any working directory

BLOCK = "theory_table"


#: per table of the block, the columns that depend on the run's size (the rest are closed
#: forms and population flows, the same at any size)
STOCHASTIC_COLUMNS = [{4, 5}, {4, 6, 7, 8, 9}]


def tables(
    replicates: int, batches: int, seed: int
) -> tuple[str, tuple[studies.DriftStudy, studies.StarvationStudy]]:
    """The README block: both studies as markdown, with their settings."""
    separations = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    drift = studies.drift_vs_separation(
        separations,
        mf.ReverseKL(baseline="none"),
        old_weight=0.75,
        start_offset=2.0,
        steps=3000,
        lr=0.1,
        batch_size=64,
        replicates=replicates,
        fit_points=4,
        rng=seed,
    )
    starve = studies.starvation(
        [0.02, 0.05, 0.1],
        [4, 8, 16, 32],
        [0.25],
        objective=mf.ReverseKL(),
        separation=4.0,
        old_mean_offset=0.3,
        batches=batches,
        rng=seed,
    )
    return "\n".join(
        [
            "**Old-mode drift vs separation** (docs: theory-pred-drift). ReverseKL (no "
            "baseline), α* = 0.75, standard start with the new mean 2σ beyond its target, "
            f"lr = 0.1, 3000 steps; finite batches: B = 64, {replicates} replicates.",
            "",
            drift.to_markdown(),
            "",
            "**Starvation and replay** (docs: theory-starvation, theory-pred-starvation, "
            "theory-pred-replay). ReverseKL (loo baseline) with bernoulli replay λ = 0.25; the "
            "model is the target (Δ = 4) with its old mean moved by 0.3σ.",
            "",
            starve.to_markdown(),
        ]
    ), (drift, starve)


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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="compare with the README's stored block (exit 1 on a difference): every line "
        "exactly at full size; with --quick, exact closed forms and population values and "
        "intervals within 5 combined standard errors",
    )
    mode.add_argument("--write", action="store_true", help="store the block in README.md")
    args = parser.parse_args(argv)

    replicates = args.replicates if args.replicates is not None else (50 if args.quick else 200)
    batches = args.batches if args.batches is not None else (20_000 if args.quick else 100_000)
    full = (replicates, batches) == (200, 100_000)
    if (args.check or args.write) and (args.seed != 0 or (args.write and not full)):
        parser.error("--write stores the full-size, seed-0 tables; --check compares with them")
    began = time.perf_counter()
    block, (drift, starve) = tables(replicates, batches, args.seed)
    wall = time.perf_counter() - began
    print(block)
    print(
        f"\n(mixforget {mf.__version__}, numpy {np.__version__}, Python "
        f"{platform.python_version()}; {wall:.1f} s)",
        file=sys.stderr,
    )
    if args.write:
        table_check.write_block(BLOCK, block)
    if args.check:
        stored = table_check.stored_block(BLOCK)
        if full:
            problems = table_check.exact_differences(stored, block)
        else:
            problems = table_check.cell_differences(stored, block, STOCHASTIC_COLUMNS)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{BLOCK}: {len(problems)} difference(s) from README.md", file=sys.stderr)
        if problems:
            return 1
    if args.plots:
        import matplotlib

        matplotlib.use("Agg")
        drift.plot().figure.savefig(f"{args.plots}_drift.png", dpi=120, bbox_inches="tight")
        starve.plot().figure.savefig(f"{args.plots}_starvation.png", dpi=120, bbox_inches="tight")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
