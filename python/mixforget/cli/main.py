"""The argument parser and the entry point ``mixforget.cli:main``: dispatch to the
subcommands, map failures to exit statuses and one-line messages."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from typing import Any, Optional

from ..studies.demo import DEMO_SETTINGS
from ._errors import _RunError, _UsageError
from .bench_command import _cmd_bench
from .demo import FIGURE_FORMATS, _cmd_demo
from .run_config import _cmd_simulate, _cmd_sweep


# ---------------------------------------------------------------------------------------
# parser and entry point
# ---------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _dpi(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in 10..2400, got {text!r}") from None
    if not 10 <= value <= 2400:
        raise argparse.ArgumentTypeError(f"must be an integer in 10..2400, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``mixforget`` command."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="mixforget", description="Forgetting in two-mode Gaussian mixtures, measured."
    )
    parser.add_argument("--version", action="version", version=f"mixforget {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of a failure, too"
    )
    # not required: a bare `mixforget` prints the help (main), not a usage error
    sub = parser.add_subparsers(dest="command", metavar="{demo,simulate,sweep,bench}")

    _add_demo_command(sub)
    _add_simulate_command(sub)
    _add_sweep_command(sub)
    _add_bench_command(sub)
    for command in sub.choices.values():  # --debug also after the subcommand
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def _add_demo_command(sub: Any) -> None:
    """``mixforget demo`` and its options."""
    p = sub.add_parser(
        "demo",
        help="the canonical study: forward vs reverse KL, replay, starvation",
        description=(
            "The canonical study on the default problem (1-D, old mode at -3, new target at "
            "3.5, start new mean 0.5, alpha* = 0.75): forward KL (SFT) against reverse KL "
            "(on-policy), each without and with replay 0.25, many replicates each, beside the "
            "exact population flow, and the starvation rate of finite batches against the "
            "batch size. Prints a table, checks the expected effects (forward KL forgets the "
            "old mass, reverse KL keeps it; exit status 1 if not) and writes summary.json and "
            "three figures (densities, forgetting, starvation) into --out."
        ),
    )
    p.add_argument(
        "--out",
        default="mixforget-demo",
        help="output directory, created if needed (default: mixforget-demo)",
    )
    p.add_argument(
        "--replicates",
        type=_positive_int,
        default=DEMO_SETTINGS["replicates"],
        help=f"replicates per run (default {DEMO_SETTINGS['replicates']})",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="threads (default: all cores)"
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=(
            f"training steps, a multiple of {DEMO_SETTINGS['record_every']} "
            f"(default {DEMO_SETTINGS['steps']})"
        ),
    )
    p.add_argument("--seed", type=_nonneg_int, default=0, help="root seed (default 0)")
    p.add_argument("--no-figures", action="store_true", help="print the table only")
    p.add_argument(
        "--format",
        choices=FIGURE_FORMATS,
        default="png",
        help="figure file format (default png)",
    )
    p.add_argument(
        "--dpi",
        type=_dpi,
        default=120,
        help="resolution of the figures in dots per inch, 10..2400 (default 120)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show which stage is running on stderr (default: only when stderr is a terminal)",
    )
    p.set_defaults(func=_cmd_demo)


def _add_simulate_command(sub: Any) -> None:
    """``mixforget simulate CONFIG --out FILE`` and its options."""
    p = sub.add_parser(
        "simulate",
        help="run one configuration (two-mode, K-component or [sequence]) and save it (.npz)",
    )
    p.add_argument(
        "config", help="TOML configuration (see mixforget.config, mixforget.sequences.config)"
    )
    p.add_argument(
        "--out",
        required=True,
        help="output .npz (mixforget.Trajectory.load or, for a [sequence], "
        "mixforget.sequences.SequenceResult.load reads it)",
    )
    p.add_argument(
        "--threads", type=_positive_int, default=None, help="threads (default: config or all cores)"
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_simulate)


def _add_sweep_command(sub: Any) -> None:
    """``mixforget sweep CONFIG --db FILE`` and its options."""
    p = sub.add_parser(
        "sweep", help="run a configuration's [sweep.grid] into a resumable SQLite db"
    )
    p.add_argument(
        "config", help="TOML configuration (a run or a [sequence]) with a [sweep.grid] table"
    )
    p.add_argument("--db", required=True, help="SQLite file; re-running resumes it")
    p.add_argument(
        "--scheduler",
        default=None,
        help="dask.distributed scheduler address (tcp://host:8786), or 'local' for a local cluster",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="points computed concurrently (threads; with --scheduler local: worker processes)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="threads per point (default: config or all cores)",
    )
    p.add_argument(
        "--keep-trajectories",
        default=None,
        metavar="DIR",
        help="save each point's Trajectory there",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_sweep)


def _add_bench_command(sub: Any) -> None:
    """``mixforget bench`` and its options."""
    p = sub.add_parser(
        "bench",
        help="Rust vs NumPy timings on this machine (mixforget.bench)",
        description=(
            "Times the Rust kernels against NumPy on this machine, in ns per sample per core: "
            "simulate (W1: ReverseKL d=1, W2: d=32), responsibilities (W3) and the starvation "
            "counts (W4), next to a specialised NumPy loop and the pure-NumPy twin "
            "(mixforget.reference), and prints the table (docs: speed). --quick runs small "
            "workloads only (about ten seconds); --backend X times W1 on another array "
            "backend of mixforget.simulate (numpy, torch, cupy, jax, ...) next to Rust instead."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small workloads only")
    p.add_argument("--backend", default=None, help="W1 on this simulate backend, next to Rust")
    p.add_argument("--device", default=None, help="device of --backend")
    p.add_argument("--precision", default="float64", help="float64 or float32 (--backend)")
    p.add_argument("--replicates", type=int, default=1000, help="R for --backend")
    p.add_argument("--steps", type=int, default=1000, help="T for --backend")
    p.set_defaults(func=_cmd_bench)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``mixforget`` command; returns the exit status (0 ok, 1 failure,
    2 usage or configuration error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command is None:  # a bare `mixforget` (or only --debug): the help, exit status 0
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _report(args, "interrupted", prefix="mixforget")
        return 130
    except _UsageError as exc:
        _report(args, str(exc))
        return 2
    except (ValueError, TypeError) as exc:  # arguments the library refused
        _report(args, str(exc))
        return 2
    except ImportError as exc:  # an optional library the arguments need is missing
        _report(args, str(exc))
        return 2
    except _RunError as exc:
        _report(args, str(exc))
        return 1
    except TimeoutError as exc:  # a bounded wait ran out (sweep's wait_timeout)
        _report(args, str(exc))
        return 1
    except (OSError, sqlite3.Error) as exc:
        _report(args, f"I/O error: {_describe_os_error(exc)}")
        return 1
    except MemoryError:
        _report(args, "out of memory")
        return 1
    except Exception as exc:  # an unexpected failure: still one line (traceback with --debug)
        _report(args, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
        return 1


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def _report(args: argparse.Namespace, message: str, prefix: Optional[str] = None) -> None:
    """One line on stderr (the traceback before it with --debug)."""
    if getattr(args, "debug", False):
        traceback.print_exc()
    head = prefix or f"mixforget {args.command}: error"
    print(f"{head}: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
