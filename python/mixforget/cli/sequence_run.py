"""``mixforget simulate`` on a file with a ``[sequence]`` section
(:mod:`mixforget.sequences.config`): run the task sequence, save its
:class:`~mixforget.sequences.SequenceResult` and print its accuracy matrix and the
forgetting metrics (average, BWT, forgetting per task); and the table that ``mixforget
sweep`` prints for sequence and K-component sweeps."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..sequences.result import MATRIX_KINDS
from ._errors import _UsageError


def _format_summary(kind: str, summary: dict[str, Any]) -> str:
    forgetting = ", ".join(f"{f:.4f}" for f in summary["forgetting"])
    return (
        f"  {kind:<14} average {summary['average']:.4f}  BWT {summary['bwt']:.4f}  "
        f"forgetting [{forgetting}] (mean {summary['mean_forgetting']:.4f})"
    )


def run_sequence(cfg: Any, args: argparse.Namespace, out: Path) -> int:
    """Run ``cfg`` (a SequenceConfig), write the result to ``out`` and print its metrics."""
    overrides: dict[str, Any] = {"progress": bool(args.progress)}
    if args.threads is not None:
        overrides["threads"] = args.threads
    began = time.perf_counter()
    try:
        result = cfg.run(**overrides)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise _UsageError(str(exc)) from None
    wall = time.perf_counter() - began
    result.save(out)
    print(
        f"sequence of {result.n_tasks} tasks ({len(result.stages)} stages), "
        f"{cfg.objective!r}: {result.kept.size} replicates ({int((~result.kept).sum())} "
        f"diverged), {result.stages[-1].end_step} steps in {wall:.2f} s"
    )
    print(result.to_markdown("weight", digits=4))
    print("summaries (larger is better; mean_error negated):")
    for kind in MATRIX_KINDS:
        print(_format_summary(kind, result.summary(kind)))
    print(f"wrote {out} (mixforget.sequences.SequenceResult.load reads it)")
    return 0


#: the columns of a sequence sweep's table: (row key, header)
SEQUENCE_COLUMNS = [
    ("weight_average", "average"),
    ("weight_bwt", "BWT"),
    ("weight_mean_forgetting", "mean forgetting"),
]


def mixture_columns(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The columns of a K-component sweep's table: every component's final mean weight."""
    n = sum(
        1
        for key in (records[0] if records else {})
        if key.startswith("weight_") and key.endswith("_mean")
    )
    return [(f"weight_{j}_mean", f"weight {j}") for j in range(n)]


def print_summary_points(
    records: list[dict[str, Any]], keys: list[str], columns: list[tuple[str, str]]
) -> None:
    """The computed points of a sequence or K-component sweep as an aligned text table:
    grid values, the summary ``columns``, replicates kept, seconds."""
    header = ["point", *keys, *(label for _, label in columns), "replicates", "wall s"]
    body = [
        [
            str(r["point"]),
            *(str(r[k]) for k in keys),
            *(f"{r[c]:.4f}" if r.get(c) is not None else "n/a" for c, _ in columns),
            str(r["replicates"]),
            f"{r['wall_time']:.2f}",
        ]
        for r in records
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths)))
    sys.stdout.flush()
