"""The sweep driver, :func:`sweep`: validate the call, open or create the store, claim the
missing points, compute them (in process or on an executor) and write each finished point."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import numbers
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .._chunks import abandon_on
from .._files import check_writable
from .._rng import RngLike, resolve_rng, seed_from_record, seed_record
from ..mixture import TwoMode
from ..results import Trajectory
from ._kinds import point_kind
from ._point import _compute_point
from .grid import (
    _EXECUTION_KEYS,
    FORMAT,
    SEPARATION_MODES,
    _canonical_values,
    _check_base,
    _check_distinct,
    _check_execution,
    _check_grid,
    _dumps,
    _grid_axes,
    _plain,
    _resolve_point,
    _stored_config,
    _task,
    expand_grid,
)
from .store import (
    _as_table,
    _claim,
    _connect,
    _create,
    _different_sweep,
    _owner,
    _owner_alive,
    _read_rows,
    _release,
    _stored_meta,
    _write_point,
)

#: Default of sweep(wait_timeout=): seconds without any new row after which a process stops
#: waiting for the points that other live processes claimed.
WAIT_TIMEOUT = 3600.0


class _TextBar:
    def __init__(self, total: int, initial: int) -> None:
        self.total, self.done = total, initial

    def update(self, n: int = 1) -> None:
        self.done += n
        sys.stderr.write(f"\rmixforget sweep: {self.done}/{self.total} points")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _bar(progress: bool, total: int, initial: int) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, initial)
    return tqdm(total=total, initial=initial, unit="point", desc="mixforget sweep")


def _completed(futures: Sequence[Any]) -> Iterator[Any]:
    if all(isinstance(f, concurrent.futures.Future) for f in futures):
        yield from concurrent.futures.as_completed(futures)
    else:  # any object with .result(): collect in submission order
        yield from futures


def sweep(
    base: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    db: str | Path,
    executor: Any = None,
    rng: RngLike = 0,
    progress: bool = False,
    keep_trajectories: Optional[str | Path] = None,
    population: bool = False,
    separation_mode: str = "proportional",
    wait_timeout: float = WAIT_TIMEOUT,
) -> Any:
    """Run :func:`mixforget.simulate` (or :func:`mixforget.sequence`) on every point of a
    grid, storing one SQLite row per point (docs: api, design-reliability).

    Parameters
    ----------
    base : dict
        Keyword arguments of :func:`mixforget.simulate` (``target``, ``start`` and
        ``objective`` required; not ``rng``/``progress``). ``threads`` and ``memory_limit``
        are passed through but do not count as part of the sweep's identity. The models may
        be :class:`~mixforget.Mixture` values (K-component runs); a base with ``tasks`` holds
        keyword arguments of :func:`mixforget.sequence` instead (``tasks`` and ``objective``
        required) and sweeps task sequences.
    grid : dict of key -> list of values
        Cartesian product in key order, last key fastest (:func:`expand_grid`). Keys: any
        simulate argument of ``base`` except threads/memory_limit (e.g. ``batch_size``,
        ``lr``, ``objective``), ``"separation"`` (the target's Mahalanobis Δ, see
        :func:`apply_separation`, applied last), ``"old_weight"`` (target's and start's α),
        ``"target.<field>"`` / ``"start.<field>"`` (one TwoMode field) and
        ``"objective.<field>"`` (e.g. ``"objective.replay"``, applied to the point's
        objective with ``dataclasses.replace``). With Mixture models: ``"weights"`` (the
        target's and the start's) and ``"target.<field>"`` / ``"start.<field>"`` (weights,
        means, cov, covs) instead of ``"separation"``, ``"old_weight"`` and the TwoMode
        fields. With ``tasks``: any keyword of :func:`mixforget.sequence` but tasks, rng,
        threads and progress (``"memory"``, ``"schedule"``, …, also written
        ``"sequence.memory"``), ``"tasks.<field>"``, ``"objective"`` and
        ``"objective.<field>"``. Every point is validated before any work.
    db : path
        SQLite file. A new file is initialised; an existing one made by the same sweep
        (same base, grid, root seed, ``population``) is resumed: finished points are skipped.
        A db made by a different sweep raises ValueError, and so does any file that is not a
        sweep store (marked by SQLite ``application_id`` and ``user_version``): foreign
        SQLite files, other files and corrupt stores are refused untouched. Several
        processes may run the same sweep on one db at once: each point is claimed atomically
        before it is computed, so every point is computed exactly once (a claim of a process
        that died is taken over; a process waits for the points that live processes on the
        same host are computing, then returns the full table; see ``wait_timeout``).
        Every argument and every point (including backend, precision, threads, memory_limit
        and the memory estimate, and the import of an array backend's library) is checked
        before the store is created, so a refused call leaves no file; a grid key whose
        values repeat (``[0.1, 0.1]``, ``[1, 1.0]``) and an empty grid are refused.
    executor : concurrent.futures-style object, optional
        Anything with ``submit(fn, task)`` returning futures with ``result()``: a
        ``ThreadPoolExecutor`` (the Rust core releases the GIL), a ``ProcessPoolExecutor``,
        or ``dask.distributed.Client(address).get_executor()`` for a cluster (extra 'dask').
        Workers only compute (plain data in and out); this process writes the db and the
        trajectory files. ``None``: serial, in this process.
    rng : SPEC 7 seed
        Root seed; point i uses ``SeedSequence(root.entropy, spawn_key=root.spawn_key + (i,))``.
        With ``rng=None`` a new db draws OS entropy (recorded in its meta table) and an
        existing db reuses its recorded root seed.
    progress : bool
        Progress bar over points (tqdm when installed, else a line on stderr).
    keep_trajectories : directory, optional
        Save each point's :class:`~mixforget.Trajectory` (a MixtureTrajectory, a
        :class:`~mixforget.sequences.SequenceResult`) as ``point_<i>.npz`` there and store
        the path in the row.
    population : bool
        Also run :func:`mixforget.population_flow` per point (columns
        ``old_weight_population``, ``sup_drift_population``; for K-component and sequence
        points the ``…_population`` summary entries).
    separation_mode : 'proportional' or 'fixed'
        How the grid key ``"separation"`` moves the start's new mean (:func:`apply_separation`):
        'proportional' keeps its relative position between the modes, 'fixed' keeps its offset
        from the target's new mean (the family of docs: theory-pred-drift).
    wait_timeout : float
        Seconds (default :data:`WAIT_TIMEOUT`, one hour) this process waits, once its own
        points are done, for points claimed by other live processes without any new row
        appearing; then TimeoutError (nothing is lost: rerun to resume). A claim's process
        counts as dead when its pid is gone, is a zombie (killed, not yet reaped) or belongs
        to a process started later (a reused pid); its points are then computed here.

    Returns
    -------
    pandas.DataFrame (when pandas is installed) or list of dicts, one row per point ordered
    by point index: ``point``, one column per grid key, then the columns of the ``points``
    table and, for K-component and sequence points, the entries of their stored summary
    (module docstring: average, BWT and forgetting per point for sequences).

    Reliability: each finished point is written in its own transaction, so an interrupted
    sweep (Ctrl-C, ``kill -9``) loses at most the points in flight. On Ctrl-C (or a failure)
    with an executor, every point already computed is written, and the points in flight are
    abandoned within about :data:`ABANDON_SECONDS` (a ``ThreadPoolExecutor``'s threads stop
    at their next chunk of work) and their claims released. Rows are bit-identical
    whatever the executor or the interruptions (only ``wall_time`` differs).
    """
    base = _check_base(base)
    grid = _check_grid(grid, point_kind(base))
    _check_call(
        executor, progress, population, keep_trajectories, db, separation_mode, wait_timeout
    )
    resolved = _resolve_points(base, grid, separation_mode, bool(population))
    _check_distinct(grid, _grid_axes(grid, resolved))

    stored = _stored_meta(db)
    if rng is None and "seed" in stored:
        root = seed_from_record(json.loads(stored["seed"]))
    else:
        root = resolve_rng(rng)
    meta = _identity_meta(
        base, grid, resolved, seed_record(root), bool(population), separation_mode
    )
    if stored and stored.get("hash") != meta["hash"]:
        raise _different_sweep(db, stored.get("hash", "?"), meta["hash"])
    keep_dir = _keep_dir(keep_trajectories)

    conn = _connect(db)
    run = _PointRun(conn, executor, keep_dir)
    try:
        _create(conn, meta, db)
        run.plan(resolved, root, population)
        bar = _bar(progress, len(resolved), len(resolved) - len(run.tasks))
        run.bar = bar
        try:
            run.compute(list(run.tasks))
            run.wait_for_other_processes(wait_timeout)
        finally:
            if bar is not None:
                bar.close()
        return _as_table(_read_rows(conn, db))
    finally:
        run.release_unfinished()
        conn.close()


def _check_call(
    executor: Any,
    progress: Any,
    population: Any,
    keep_trajectories: Any,
    db: Any,
    separation_mode: Any,
    wait_timeout: Any,
) -> None:
    """Type and value checks of sweep's arguments other than base and grid (before any work)."""
    if isinstance(wait_timeout, bool) or not isinstance(wait_timeout, numbers.Real):
        raise TypeError(f"wait_timeout must be a number of seconds, got {wait_timeout!r}")
    if not (math.isfinite(float(wait_timeout)) and float(wait_timeout) > 0):
        raise ValueError(f"wait_timeout must be a finite number of seconds > 0, got {wait_timeout}")
    for name, flag in (("population", population), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "executor must have a submit(fn, arg) method (e.g. concurrent.futures."
            f"ThreadPoolExecutor) or be None, got {type(executor).__name__}"
        )
    if keep_trajectories is not None and not isinstance(keep_trajectories, (str, os.PathLike)):
        raise TypeError(
            f"keep_trajectories must be a directory path or None, got {keep_trajectories!r}"
        )
    keep = None if keep_trajectories is None else Path(keep_trajectories)
    if keep is not None and keep.exists() and not keep.is_dir():
        raise ValueError(
            f"keep_trajectories: {keep} exists and is not a directory; give a directory "
            "(created when missing)"
        )
    if not isinstance(db, (str, os.PathLike)):
        raise TypeError(f"db must be a file path, got {type(db).__name__}")
    if separation_mode not in SEPARATION_MODES:
        raise ValueError(
            f"separation_mode must be one of {list(SEPARATION_MODES)}, got {separation_mode!r}"
        )


def _resolve_points(
    base: Mapping[str, Any], grid: Mapping[str, list[Any]], separation_mode: str, population: bool
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every point of the grid as (simulate keyword arguments, canonical grid values); any
    invalid point raises, naming its index and values, before any work."""
    resolved = []
    for i, values in enumerate(expand_grid(grid)):
        try:
            kw = _resolve_point(base, values, separation_mode)
            _check_execution(kw, population)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise type(exc)(f"grid point {i} {values}: {exc}") from None
        resolved.append((kw, _canonical_values(values, kw)))
    return resolved


def _identity_meta(
    base: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    resolved: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    root_record: dict[str, Any],
    population: bool,
    separation_mode: str,
) -> dict[str, str]:
    """The ``meta`` table of the sweep's store: its identity (canonical base and grid, root
    seed, population flag, separation mode) and the SHA-256 ``hash`` of that identity."""
    # keys the grid overrides do not count as part of the base
    base_plain = {k: v for k, v in _base_identity(base).items() if k not in grid}
    grid_plain = [[key, axis] for key, axis in zip(grid, _grid_axes(grid, resolved))]
    identity = {
        "format": FORMAT,
        "base": base_plain,
        "grid": grid_plain,
        "seed": root_record,
        "population": population,
    }
    if "separation" in grid:
        identity["separation_mode"] = separation_mode
    return {
        "hash": hashlib.sha256(_dumps(identity).encode()).hexdigest(),
        "format": FORMAT,
        "seed": json.dumps(root_record),
        "base": _dumps(base_plain),
        "grid": _dumps(grid_plain),
        "n_points": str(len(resolved)),
    }


def _keep_dir(keep_trajectories: Optional[str | Path]) -> Optional[Path]:
    """The directory for the points' trajectories (created, and checked writable), or None."""
    if keep_trajectories is None:
        return None
    keep_dir = Path(keep_trajectories)
    keep_dir.mkdir(parents=True, exist_ok=True)  # a file there was refused by _check_call
    try:
        check_writable(keep_dir / "point_000000.npz", "keep_trajectories")
    except OSError as exc:
        raise ValueError(str(exc)) from None
    return keep_dir


#: Seconds an interrupted sweep waits for the points in flight to finish or stop (threads
#: stop at their next chunk, about 0.1 s) before it abandons them.
ABANDON_SECONDS = 0.5


def _abandonable_point(abandon: threading.Event, task: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`_compute_point` in an executor thread, stopped (Abandoned) once ``abandon``
    is set."""
    with abandon_on(abandon):
        return _compute_point(task)


class _PointRun:
    """The missing points of one sweep and their computation by this process: claim a point,
    compute it (in process or on the executor), write its row; wait for or take over the
    points other processes have claimed."""

    def __init__(self, conn: sqlite3.Connection, executor: Any, keep_dir: Optional[Path]):
        self.conn, self.executor, self.keep_dir = conn, executor, keep_dir
        self.owner = _owner()
        self.mine: set[int] = set()  # points claimed by this process and not yet written
        self.tasks: dict[int, dict[str, Any]] = {}
        self.params: dict[int, str] = {}
        self.bar: Any = None

    def plan(
        self,
        resolved: Sequence[tuple[dict[str, Any], dict[str, Any]]],
        root: np.random.SeedSequence,
        population: bool,
    ) -> None:
        """The task of every point without a row, each with its child seed of ``root``."""
        done = {r[0] for r in self.conn.execute("SELECT point FROM points")}
        for i, (kw, canon) in enumerate(resolved):
            if i in done:
                continue
            child = np.random.SeedSequence(root.entropy, spawn_key=(*tuple(root.spawn_key), i))
            self.tasks[i] = _task(kw, seed_record(child), self.keep_dir is not None, population)
            self.params[i] = _dumps(canon)

    def finish(self, i: int, result: Mapping[str, Any]) -> None:
        """Write point ``i``'s row (and its trajectory file), releasing its claim."""
        task = self.tasks[i]
        row: dict[str, Any] = {
            "point": i,
            "params": self.params[i],
            "config": _dumps(_stored_config(task)),
            "seed_entropy": task["seed"]["entropy"],
            "seed_spawn_key": json.dumps(task["seed"]["spawn_key"]),
            "wall_time": result["wall_time"],
            "trajectory": None,
            "summary": result.get("summary"),
            **result["metrics"],
        }
        payload = result["trajectory"]
        if self.keep_dir is not None and payload is not None:
            path = self.keep_dir / f"point_{i:06d}.npz"
            if isinstance(payload, Mapping):  # a two-mode trajectory's arrays
                fields = {**payload, "target": TwoMode(**payload["target"])}
                Trajectory(**fields).save(path)
            else:  # a MixtureTrajectory or SequenceResult
                payload.save(path)
            row["trajectory"] = str(path)
        _write_point(self.conn, row)
        self.mine.discard(i)
        if self.bar is not None:
            self.bar.update(1)

    def compute(self, batch: list[int]) -> None:
        """Claim and compute the points of ``batch`` that no other process holds."""
        if self.executor is None:
            for i in batch:
                if _claim(self.conn, i, self.owner):
                    self.mine.add(i)
                    self.finish(i, _compute_point(self.tasks[i]))
            return
        futures: dict[Any, int] = {}
        abandon = threading.Event()
        in_threads = isinstance(self.executor, concurrent.futures.ThreadPoolExecutor)
        try:
            for i in batch:
                if _claim(self.conn, i, self.owner):
                    self.mine.add(i)
                    if in_threads:  # threads never see Ctrl-C: they watch the event
                        fut = self.executor.submit(_abandonable_point, abandon, self.tasks[i])
                    else:
                        fut = self.executor.submit(_compute_point, self.tasks[i])
                    futures[fut] = i
            for fut in _completed(list(futures)):
                self.finish(futures[fut], fut.result())
        except BaseException:
            abandon.set()
            for fut in futures:
                fut.cancel()
            self._commit_finished(futures)
            raise

    def _commit_finished(self, futures: Mapping[Any, int]) -> None:
        """After Ctrl-C or a failure: write every point whose computation has finished (or
        finishes within :data:`ABANDON_SECONDS`), abandon the others (their claims are
        released by :meth:`release_unfinished`)."""
        running = [f for f in futures if isinstance(f, concurrent.futures.Future)]
        if running:
            concurrent.futures.wait(running, timeout=ABANDON_SECONDS)
        for fut, i in futures.items():
            done = getattr(fut, "done", None)
            if i not in self.mine or not callable(done) or not done() or fut.cancelled():
                continue
            if fut.exception() is None:
                self.finish(i, fut.result())

    def wait_for_other_processes(self, timeout: float) -> None:
        """Points claimed by other live processes on this host: wait for their rows, and
        take over those whose owner has died (claims from other hosts are not awaited).
        TimeoutError when no awaited row has appeared for ``timeout`` seconds."""
        progress_at, n_finished = time.monotonic(), -1
        while True:
            finished = {r[0] for r in self.conn.execute("SELECT point FROM points")}
            claims = dict(self.conn.execute("SELECT point, owner FROM claims").fetchall())
            waiting = [i for i in self.tasks if i not in finished and i in claims]
            local = [i for i in waiting if claims[i].split("|")[0] == socket.gethostname()]
            orphans = [i for i in local if claims[i] == self.owner or not _owner_alive(claims[i])]
            if len(finished) != n_finished:
                progress_at, n_finished = time.monotonic(), len(finished)
            if orphans:
                self.compute(orphans)
            elif not local:
                break
            elif time.monotonic() - progress_at > timeout:
                owners = sorted({claims[i].split("|")[1] for i in local})
                raise TimeoutError(
                    f"sweep: waited {timeout:g} s (wait_timeout) for points {local[:10]} that "
                    f"live processes (pid {', '.join(owners)}) claimed, without any new row; "
                    "every point this process computed is stored: rerun later to resume, or "
                    "stop those processes"
                )
            else:
                time.sleep(0.2)

    def release_unfinished(self) -> None:
        """Drop this process's claims of points it did not finish (an interrupted run)."""
        if self.mine:
            _release(self.conn, sorted(self.mine), self.owner)


def _base_identity(base: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical plain form of ``base`` for the sweep's hash (numbers normalised by the same
    checks simulate() makes; execution-only keys left out)."""
    try:
        kw = _resolve_point(base, {})
    except (ValueError, TypeError):
        kw = dict(base)
    return {k: _plain(v) for k, v in kw.items() if k not in _EXECUTION_KEYS}
