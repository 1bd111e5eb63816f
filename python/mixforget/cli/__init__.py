"""The ``mixforget`` command line (docs: api).

Subcommands::

    mixforget demo [--out DIR] [--replicates N] [--threads T] [--steps S] [--seed S] [--no-figures]
                   [--progress | --no-progress]   (default: progress when stderr is a terminal)
    mixforget simulate CONFIG.toml --out FILE.npz [--threads T] [--progress]
    mixforget sweep CONFIG.toml --db FILE [--scheduler ADDRESS] [--workers N]
                    [--keep-trajectories DIR] [--progress]
    mixforget bench [--quick]          (implemented in mixforget.bench)

A bare ``mixforget`` prints this command's help (exit status 0).

Exit status: 0 success; 1 a failed run: an I/O failure (unwritable output, unreachable
scheduler, database error), a failure after output was written, a sweep that waited too long
for another process's points, or a demo whose numbers do not show the expected effects; 2 a
usage or configuration error, or a missing optional library (checked before any work: nothing
written); 130 interrupted (a sweep keeps every finished point). Every expected failure is one
line on stderr; ``--debug`` (before or after the subcommand) also prints the traceback.
Configuration files are described in :mod:`mixforget.config`: ``simulate`` and ``sweep`` run
what the file holds, a two-mode or K-component run (``[target]``, ``[start]``, ``[objective]``,
``[run]``; the .npz is a Trajectory or MixtureTrajectory) or a task sequence (``[sequence]``,
:mod:`mixforget.sequences.config`; the .npz is a SequenceResult, and the printed summary its
weight matrix with average, BWT and forgetting).
"""

from __future__ import annotations

from ..studies.demo import DEMO_SETTINGS
from .demo import FIGURE_FORMATS, format_demo_table, run_demo
from .main import build_parser, main

__all__ = [
    "DEMO_SETTINGS",
    "FIGURE_FORMATS",
    "build_parser",
    "format_demo_table",
    "main",
    "run_demo",
]
