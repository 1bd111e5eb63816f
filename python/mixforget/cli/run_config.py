"""``mixforget simulate`` and ``mixforget sweep``: run a TOML configuration
(:mod:`mixforget.config`, or a task sequence's :mod:`mixforget.sequences.config`) and write
its trajectory, sequence result or sweep database."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..sequences.config import SequenceConfig
from ..simulate import simulate
from ._errors import _RunError, _UsageError
from ._format import _fmt_ci
from .sequence_run import (
    SEQUENCE_COLUMNS,
    mixture_columns,
    print_summary_points,
    run_sequence,
)

#: Seconds to wait for a dask scheduler before giving up.
SCHEDULER_TIMEOUT = 5


# ---------------------------------------------------------------------------------------
# simulate / sweep
# ---------------------------------------------------------------------------------------
def _load(path: str) -> Any:
    """The configuration of ``path``: a :class:`~mixforget.config.Config`, or a
    :class:`~mixforget.sequences.SequenceConfig` when the file has a ``[sequence]`` section."""
    from ..config import ConfigError, parse_config, read_toml
    from ..sequences.config import parse_sequence_config

    try:
        data = read_toml(path)
        if "sequence" in data:
            return parse_sequence_config(data, source=path)
        return parse_config(data, source=path)
    except (ConfigError, UnicodeDecodeError) as exc:
        raise _UsageError(f"invalid config {path}: {exc}") from None


def _check_output_path(path: str, what: str) -> Path:
    """Before any work: the output's directory exists (else usage error, 2) and a file can
    be written there (else runtime error, 1)."""
    from .._files import check_writable

    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise _UsageError(f"{what}: directory {parent} does not exist")
    if p.is_dir():
        raise _UsageError(f"{what}: {p} is a directory")
    try:
        return check_writable(p, what)
    except OSError as exc:
        raise _RunError(str(exc)) from None


def _print_summary(summary: dict[str, Any], stream: Any) -> None:
    """A trajectory's summary: the two-mode quantities, or for a K-component run every
    component's weight_j, drift_j, sup_drift_j and starved_j (in the summary's order)."""
    print(f"replicates {summary['replicates']} (diverged {summary['diverged']})", file=stream)
    if "weight_0" in summary:
        names = [k for k, v in summary.items() if isinstance(v, dict)]
    else:
        names = ["old_weight", "drift", "sup_drift", "new_error", "starved"]
    for name in names:
        if name in summary:
            print(f"  {name:<11} {_fmt_ci(summary[name])}", file=stream)


def _cmd_simulate(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    out = _check_output_path(args.out, "--out")
    if cfg.grid is not None:
        print("note: the [sweep] section is ignored by `mixforget simulate`", file=sys.stderr)
    if isinstance(cfg, SequenceConfig):
        return run_sequence(cfg, args, out)
    kwargs = cfg.simulate_kwargs()
    if args.threads is not None:
        kwargs["threads"] = args.threads
    try:
        traj = simulate(**kwargs, progress=args.progress)
    except (ValueError, TypeError) as exc:
        raise _UsageError(str(exc)) from None
    traj.save(out)
    print(
        f"{cfg.objective!r}: {traj.replicates} replicates, {int(traj.steps[-1])} steps in "
        f"{traj.meta['wall_time']:.2f} s"
    )
    _print_summary(traj.summary(), sys.stdout)
    print(f"wrote {out}")
    return 0


def _executor(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """(executor or None, objects to close afterwards)."""
    if args.scheduler:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise _UsageError(
                "--scheduler needs dask.distributed, the optional extra 'dask': "
                "pip install 'mixforget[dask]'"
            ) from None
        if args.scheduler == "local":
            cluster = LocalCluster(
                n_workers=args.workers or 1, threads_per_worker=1, processes=True
            )
            client = Client(cluster)
            return client.get_executor(), [client, cluster]
        try:
            client = Client(args.scheduler, timeout=SCHEDULER_TIMEOUT)
        except ValueError as exc:  # a malformed address
            raise _UsageError(f"--scheduler: {exc}") from None
        except Exception as exc:  # unreachable, timed out, or not a dask scheduler
            raise _RunError(
                f"--scheduler: no dask scheduler reachable at {args.scheduler} "
                f"(waited at most {SCHEDULER_TIMEOUT} s): {type(exc).__name__}: {exc}"
            ) from None
        return client.get_executor(), [client]
    if args.workers and args.workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=args.workers)
        return pool, [pool]
    return None, []


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ..sweeps import sweep

    cfg = _load(args.config)
    if cfg.grid is None:
        raise _UsageError(
            f"invalid config {args.config}: `mixforget sweep` needs a [sweep.grid] table "
            "(key = [values]; see mixforget.config)"
        )
    _check_output_path(args.db, "--db")
    if Path(args.db).exists() and not os.access(args.db, os.W_OK):
        raise _RunError(f"--db: {args.db} is not writable")
    keep = args.keep_trajectories or cfg.keep_trajectories
    base = cfg.sweep_base()
    if args.threads is not None:
        base["threads"] = args.threads
    existed = Path(args.db).exists()
    stored_before = _stored_points(args.db)
    executor, closers = _executor(args)
    began = time.perf_counter()
    try:
        try:
            rows = sweep(
                base,
                cfg.grid,
                args.db,
                executor=executor,
                rng=cfg.rng,
                progress=args.progress,
                keep_trajectories=keep,
                population=cfg.population,
                separation_mode=getattr(cfg, "separation_mode", "proportional"),
            )
        except (ValueError, TypeError, NotImplementedError) as exc:
            # sweep() checks everything before it creates the store: a refusal then is a
            # usage error with nothing written; a failure after the store changed is not
            exists = Path(args.db).exists()
            if exists == existed and (not exists or _stored_points(args.db) == stored_before):
                raise _UsageError(str(exc)) from None
            raise _RunError(
                f"{exc} (the store {args.db} was written: the points finished before the "
                "failure are kept)"
            ) from None
    finally:
        _close(closers)
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    computed = [r for r in records if int(r["point"]) not in stored_before]
    skipped = len(records) - len(computed)
    if skipped and not computed:
        print(
            f"nothing to compute: all {len(records)} points are already in {args.db} "
            f"(skipped); read them with mixforget.load_sweep({str(args.db)!r})"
        )
        return 0
    records = computed
    if isinstance(cfg, SequenceConfig):
        print_summary_points(records, list(cfg.grid), SEQUENCE_COLUMNS)
    elif records and records[0].get("weight_0_mean") is not None:  # K >= 3 components
        print_summary_points(records, list(cfg.grid), mixture_columns(records))
    else:
        _print_points(records, list(cfg.grid))
    elapsed = time.perf_counter() - began
    if skipped:
        print(
            f"resumed {args.db}: {skipped} points were already stored (skipped), "
            f"{len(records)} computed now ({elapsed:.1f} s); all {skipped + len(records)}: "
            f"mixforget.load_sweep({str(args.db)!r})"
        )
    else:
        print(f"{len(records)} points in {args.db} ({elapsed:.1f} s)")
    return 0


def _close(closers: list[Any]) -> None:
    """Release the sweep's executors: a dask Client / LocalCluster is closed (the scheduler
    is never shut down); a ThreadPoolExecutor, whose queued points sweep() cancelled, is shut
    down."""
    for obj in closers:
        try:
            if hasattr(obj, "close"):
                obj.close()
            else:
                obj.shutdown(wait=True, cancel_futures=True)
        except Exception:  # pragma: no cover - best effort
            pass


def _print_points(records: list[dict[str, Any]], keys: list[str]) -> None:
    """The computed points as an aligned text table: grid values and each point's summary."""
    header = ["point", *keys, "old weight α_T", "sup drift", "new error", "starved", "wall s"]
    body = []
    for r in records:
        body.append(
            [
                str(r["point"]),
                *(str(r[k]) for k in keys),
                *(
                    f"{r[c]:.4f}" if r[c] is not None else "n/a"
                    for c in ("old_weight_mean", "sup_drift_mean", "new_error_mean")
                ),
                f"{r['starved_mean']:.1f}" if r["starved_mean"] is not None else "n/a",
                f"{r['wall_time']:.2f}",
            ]
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths)))


def _stored_points(db: str) -> set[int]:
    """Indices of the points already in a sweep database (empty when there is none yet, or
    when it is not a sweep database: the sweep itself then reports the problem)."""
    if not Path(db).is_file():
        return set()
    from ..sweeps import load_sweep

    try:
        rows = load_sweep(db)
    except Exception:  # not a sweep database: sweep() raises its own clear error
        return set()
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    return {int(r["point"]) for r in records}
