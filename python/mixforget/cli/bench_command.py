"""``mixforget bench``: the benchmark tables of :mod:`mixforget.bench`, imported only when
the subcommand runs (its extra dependencies are optional)."""

from __future__ import annotations

import argparse
import sys


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run :func:`mixforget.bench.main` with the parsed arguments; 1 when it cannot load."""
    try:
        import mixforget.bench as bench
    except ImportError as exc:
        print(f"mixforget: bench is not available: {exc}", file=sys.stderr)
        return 1
    rc = bench.main(args)
    return int(rc or 0)
