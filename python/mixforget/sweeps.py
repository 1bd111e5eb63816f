"""Resumable parameter sweeps stored in SQLite (docs: api, design-reliability).

:func:`sweep` runs :func:`mixforget.simulate` on every point of a Cartesian grid and writes
one row per finished point into an SQLite database, each in its own transaction: a sweep
killed at any moment (even ``kill -9``) loses at most the points in flight, and running the
same call again computes only the missing points. Every point has its own child seed,
``SeedSequence(root.entropy, spawn_key=root.spawn_key + (i,))`` — the i-th child of a fresh
``root.spawn(n_points)`` — so the rows do not depend on the executor, the order in which
points finish, or how often the sweep was interrupted.

Database layout (``sqlite3``)
-----------------------------
The file is marked as a sweep store by ``PRAGMA application_id`` = 0x4D465357 ("MFSW") and
``PRAGMA user_version`` = 1 (the layout); any other file (another application's SQLite
database, a non-SQLite or corrupt file) is refused untouched with one ValueError. Stores made
before the marks existed (same tables and format) are adopted and marked.

``claims(point INTEGER PRIMARY KEY, owner TEXT)``: points being computed, claimed atomically
(``BEGIN IMMEDIATE``) by ``host|pid|process start time``, so that several processes running
the same sweep on one db compute every point exactly once; a claim whose process has died is
taken over, and a finished point drops its claim in the transaction that writes its row.

``meta(key TEXT PRIMARY KEY, value TEXT)``: ``hash`` (SHA-256 of base + grid + root seed +
population flag + separation mode; a db made by another sweep is refused), ``seed`` (root
seed record, JSON), ``base``, ``grid`` (canonical JSON), ``n_points``, ``format``.

``points``: one row per finished point — ``point`` (index in the grid order), ``params``
(JSON of this point's grid values), ``config`` (JSON of the full resolved simulate
arguments), ``seed_entropy``, ``seed_spawn_key`` (JSON list), ``separation`` and
``bhattacharyya`` of the point's target, ``replicates`` (non-diverged), ``diverged``, and for
each of old_weight, drift (final), sup_drift (sup over the records of each replicate),
new_error and starved (cumulative starved batches per replicate): ``<name>_mean``,
``<name>_lo``, ``<name>_hi`` (95% interval of the mean over replicates, as in
:meth:`Trajectory.summary`; NULL when every replicate diverged); ``old_weight_population``
and ``sup_drift_population`` (the population flow, with ``population=True``), ``wall_time``
(seconds of simulation) and ``trajectory`` (path of the kept .npz or NULL).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import inspect
import itertools
import json
import math
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._defaults import DEFAULT_LR
from ._problem import (
    check_lr,
    check_lr_scale,
    check_models,
    check_objective,
    check_steps,
    check_weight_param,
)
from ._rng import RngLike, resolve_rng, seed_from_record, seed_record
from ._validate import as_positive_int, as_probability
from .mixture import TwoMode
from .objectives import Objective, objective_from_dict
from .population import population_flow
from .results import Trajectory, numpy_to_plain
from .simulate import simulate

__all__ = [
    "COLUMNS",
    "METRICS",
    "SEPARATION_MODES",
    "apply_separation",
    "expand_grid",
    "load_sweep",
    "sweep",
]

FORMAT = "mixforget-sweep-1"

#: Summary quantities stored per point, each as <name>_mean, <name>_lo, <name>_hi.
METRICS = ("old_weight", "drift", "sup_drift", "new_error", "starved")

_METRIC_COLUMNS = [f"{m}_{s}" for m in METRICS for s in ("mean", "lo", "hi")]
#: Columns of the ``points`` table, in order.
COLUMNS = [
    "point",
    "params",
    "config",
    "seed_entropy",
    "seed_spawn_key",
    "separation",
    "bhattacharyya",
    "replicates",
    "diverged",
    *_METRIC_COLUMNS,
    "old_weight_population",
    "sup_drift_population",
    "wall_time",
    "trajectory",
]

_SIM_PARAMS = list(inspect.signature(simulate).parameters)
#: base keys that do not change results (left out of the hash and of the stored config).
_EXECUTION_KEYS = ("threads", "memory_limit")
_BASE_KEYS = [k for k in _SIM_PARAMS if k not in ("rng", "progress")]
_GRID_PLAIN_KEYS = (
    "target",
    "start",
    "objective",
    "steps",
    "batch_size",
    "lr",
    "replicates",
    "record_every",
    "weight_param",
    "lr_scale",
)
_MODEL_FIELDS = ("old_mean", "new_mean", "old_weight", "cov", "old_cov", "new_cov")


# ---------------------------------------------------------------------------------------
# grid geometry
# ---------------------------------------------------------------------------------------
SEPARATION_MODES = ("proportional", "fixed")


def apply_separation(
    target: TwoMode, start: TwoMode, separation: float, mode: str = "proportional"
) -> tuple[TwoMode, TwoMode]:
    """Move the new means so that the target's Mahalanobis separation Δ equals ``separation``
    (docs: theory-geometry).

    With o = target.old_mean, v = target.new_mean − o and k = separation / target.separation,
    the target's new mean becomes o + k·v (Δ scales linearly, so it is exactly
    ``separation``). The start's new mean μ moves along the same old→new direction:

    - ``mode="proportional"`` (default): μ ← μ + (k − 1)·a·v with a = (μ − o)·v / (v·v) its
      position along the axis (0 at the old mean, 1 at the target's new mean). The start keeps
      its relative position between the modes, and its offset from the target's new mean
      along the axis is scaled by k. Always well defined. Note: the drift of the old mean is
      then gated by the *start's* overlap, ≈ exp(−(aΔ)²/8), so log sup drift against Δ² has
      slope → −a²/8, not −1/8.
    - ``mode="fixed"``: μ ← μ + (k − 1)·v, the same shift as the target's new mean, so the
      start's offset from the target's new mean is unchanged (its error does not grow with
      Δ). This is the family of docs: theory-pred-drift (slope → −1/8 as Δ grows); it needs Δ larger
      than that offset, or the start's new mode sits on or beyond the old one.

    Components orthogonal to the axis, old means, weights and covariances are unchanged.
    """
    if mode not in SEPARATION_MODES:
        raise ValueError(f"separation mode must be one of {list(SEPARATION_MODES)}, got {mode!r}")
    sep = float(separation)
    if not (math.isfinite(sep) and sep > 0):
        raise ValueError(f"separation must be a finite number > 0, got {separation!r}")
    delta0 = target.separation
    if delta0 <= 0:
        raise ValueError(
            "separation: the target's old and new means coincide, the direction is undefined"
        )
    k = sep / delta0
    o = target.old_mean
    v = target.new_mean - o
    a = float((start.new_mean - o) @ v / (v @ v)) if mode == "proportional" else 1.0
    new_target = target.replace(new_mean=o + k * v)
    new_start = start.replace(new_mean=start.new_mean + (k - 1.0) * a * v)
    return new_target, new_start


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of ``grid`` in its key order, last key fastest
    (``itertools.product``): point i of a sweep is element i of this list."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]


# ---------------------------------------------------------------------------------------
# canonical plain-data forms (hashing, JSON columns, tasks for workers)
# ---------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, TwoMode):
        return {"TwoMode": value.to_dict()}
    if isinstance(value, Objective):
        return {"Objective": value.as_dict()}
    if isinstance(value, (np.ndarray, np.integer, np.floating)):
        return numpy_to_plain(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))


def short_objective(objective: Objective) -> str:
    """Compact text of an objective for tables: :attr:`mixforget.Objective.label`."""
    return objective.label


def _display(value: Any) -> Any:
    """Column value of a grid key in the returned table: scalars as is, models by their
    repr, objectives by their :attr:`~mixforget.Objective.label`, other containers as JSON
    text."""
    if isinstance(value, dict) and set(value) == {"TwoMode"}:
        return repr(TwoMode(**value["TwoMode"]))
    if isinstance(value, dict) and set(value) == {"Objective"}:
        return objective_from_dict(value["Objective"]).label
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


# ---------------------------------------------------------------------------------------
# validation and resolution of the points
# ---------------------------------------------------------------------------------------
def _check_base(base: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(base, Mapping):
        raise TypeError(
            "base must be a dict of mixforget.simulate keyword arguments, got "
            f"{type(base).__name__}"
        )
    for key in base:
        if key in ("rng", "progress"):
            raise ValueError(f"base[{key!r}] is not allowed: pass {key}= to sweep() itself")
        if key not in _BASE_KEYS:
            raise ValueError(f"unknown base key {key!r}; allowed: {_BASE_KEYS}")
    for key in ("target", "start", "objective"):
        if key not in base:
            raise ValueError(
                f"base must contain {key!r} (keys of mixforget.simulate: {_BASE_KEYS})"
            )
    return dict(base)


def _grid_key_ok(key: str) -> bool:
    if key in _GRID_PLAIN_KEYS or key in ("separation", "old_weight"):
        return True
    head, _, name = key.partition(".")
    if head in ("target", "start") and name in _MODEL_FIELDS:
        return True
    return head == "objective" and bool(name)


def _check_grid(grid: Mapping[str, Any]) -> dict[str, list[Any]]:
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of key -> list of values, got {type(grid).__name__}")
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not isinstance(key, str) or not _grid_key_ok(key):
            raise ValueError(
                f"unknown grid key {key!r}; allowed: {list(_GRID_PLAIN_KEYS)}, "
                "'separation', 'old_weight', 'target.<field>', 'start.<field>' "
                f"(fields {list(_MODEL_FIELDS)}), 'objective.<field>'"
            )
        if isinstance(values, (str, bytes)) or not isinstance(
            values, (list, tuple, np.ndarray, range)
        ):
            raise TypeError(f"grid[{key!r}] must be a list of values, got {type(values).__name__}")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{key!r}] must not be empty")
        out[key] = values
    return out


def _resolve_point(
    base: Mapping[str, Any], values: Mapping[str, Any], separation_mode: str = "proportional"
) -> dict[str, Any]:
    """simulate() keyword arguments of one grid point (validated)."""
    kw = dict(base)
    for key, value in values.items():
        if key in _GRID_PLAIN_KEYS:
            kw[key] = value
    check_models(kw["target"], kw["start"])
    target, start, objective = kw["target"], kw["start"], kw["objective"]
    for key, value in values.items():
        head, _, name = key.partition(".")
        if key == "old_weight":
            target = target.replace(old_weight=value)
            start = start.replace(old_weight=value)
        elif head == "target" and name:
            target = target.replace(**{name: value})
        elif head == "start" and name:
            start = start.replace(**{name: value})
    objective = check_objective(objective)
    for key, value in values.items():
        head, _, name = key.partition(".")
        if head == "objective" and name:
            fields = [f.name for f in dataclasses.fields(objective)]  # type: ignore[arg-type]
            if name not in fields:
                raise ValueError(
                    f"grid key {key!r}: {type(objective).__name__} has fields {fields}"
                )
            objective = dataclasses.replace(objective, **{name: value})  # type: ignore[type-var]
    if "separation" in values:
        target, start = apply_separation(target, start, values["separation"], separation_mode)
    check_models(target, start)
    kw["target"], kw["start"], kw["objective"] = target, start, objective
    # the same checks simulate() makes, so that a bad point fails before any work
    kw["batch_size"] = as_positive_int("batch_size", kw.get("batch_size", 64))
    check_objective(objective, kw["batch_size"])
    kw["steps"], kw["record_every"] = check_steps(kw.get("steps", 2000), kw.get("record_every", 10))
    kw["lr"] = check_lr(kw.get("lr", DEFAULT_LR))
    kw["replicates"] = as_positive_int("replicates", kw.get("replicates", 1000))
    kw["weight_param"] = check_weight_param(kw.get("weight_param", "logit"))
    kw["lr_scale"] = check_lr_scale(kw.get("lr_scale"), kw.get("train_scales", False))
    return kw


def _canonical_values(values: Mapping[str, Any], kw: Mapping[str, Any]) -> dict[str, Any]:
    """This point's grid values in canonical plain form (1 and 1.0 hash alike, etc.)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        head, _, name = key.partition(".")
        if key in _GRID_PLAIN_KEYS:
            out[key] = _plain(kw[key])
        elif key == "separation":
            out[key] = float(value)
        elif key == "old_weight":
            out[key] = as_probability("old_weight", value)
        elif head == "objective":
            out[key] = _plain(getattr(kw["objective"], name))
        else:
            out[key] = _plain(np.asarray(value, dtype=np.float64))
    return out


def _task(
    kw: Mapping[str, Any], seed: dict[str, Any], keep: bool, population: bool
) -> dict[str, Any]:
    """Plain-data description of one point, picklable for any executor."""
    run = {k: v for k, v in kw.items() if k not in ("target", "start", "objective")}
    return {
        "target": kw["target"].to_dict(),
        "start": kw["start"].to_dict(),
        "objective": kw["objective"].as_dict(),
        "run": run,
        "seed": seed,
        "keep": keep,
        "population": population,
    }


def _stored_config(task: Mapping[str, Any]) -> dict[str, Any]:
    run = {k: v for k, v in task["run"].items() if k not in _EXECUTION_KEYS}
    return {"target": task["target"], "start": task["start"], "objective": task["objective"], **run}


# ---------------------------------------------------------------------------------------
# the work of one point (runs on a worker: plain data in, plain data out)
# ---------------------------------------------------------------------------------------
def _compute_point(task: Mapping[str, Any]) -> dict[str, Any]:
    target = TwoMode(**task["target"])
    start = TwoMode(**task["start"])
    objective = objective_from_dict(task["objective"])
    began = time.perf_counter()
    traj = simulate(target, start, objective, rng=seed_from_record(task["seed"]), **task["run"])
    wall = time.perf_counter() - began
    summary = traj.summary()
    metrics: dict[str, Any] = {
        "separation": target.separation,
        "bhattacharyya": target.bhattacharyya,
        "replicates": summary["replicates"],
        "diverged": summary["diverged"],
        "old_weight_population": None,
        "sup_drift_population": None,
    }
    for name in METRICS:
        stats = summary.get(name)
        for s in ("mean", "lo", "hi"):
            metrics[f"{name}_{s}"] = None if stats is None else float(stats[s])
    if task["population"]:
        run = task["run"]
        flow = population_flow(
            target,
            start,
            objective,
            steps=run["steps"],
            lr=run["lr"],
            record_every=run["record_every"],
            weight_param=run["weight_param"],
            lr_scale=run["lr_scale"],
            train_scales=run.get("train_scales", False),
            scale_param=run.get("scale_param", "direct"),
        )
        if not bool(flow.diverged[0]):
            metrics["old_weight_population"] = float(flow.old_weight[0, -1])
            metrics["sup_drift_population"] = float(flow.drift[0].max())
    payload = None
    if task["keep"]:
        payload = {
            "steps": traj.steps,
            "old_weight": traj.old_weight,
            "old_mean": traj.old_mean,
            "new_mean": traj.new_mean,
            "starved": traj.starved,
            "diverged": traj.diverged,
            "target": target.to_dict(),
            "meta": traj.meta,
            "old_scale": traj.old_scale,
            "new_scale": traj.new_scale,
        }
    return {"metrics": metrics, "wall_time": wall, "trajectory": payload}


# ---------------------------------------------------------------------------------------
# database
# ---------------------------------------------------------------------------------------
_SQL_TYPES = {
    "point": "INTEGER PRIMARY KEY",
    "params": "TEXT NOT NULL",
    "config": "TEXT NOT NULL",
    "seed_entropy": "TEXT NOT NULL",
    "seed_spawn_key": "TEXT NOT NULL",
    "replicates": "INTEGER",
    "diverged": "INTEGER",
    "trajectory": "TEXT",
}


#: SQLite header marks of a sweep store (``PRAGMA application_id`` / ``user_version``):
#: ASCII "MFSW" and the layout version. Any other file is refused untouched.
APPLICATION_ID = 0x4D465357
USER_VERSION = 1
#: Seconds a writer waits for another one's lock before failing.
_BUSY_TIMEOUT = 60.0


def _connect(db: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), timeout=_BUSY_TIMEOUT, isolation_level=None)  # explicit
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _not_a_store(db: str | Path, why: str) -> ValueError:
    return ValueError(
        f"db: {db} is not a mixforget sweep database ({why}); it was left untouched: "
        "use another path"
    )


def _inspect_store(db: str | Path) -> bool:
    """Check, read-only and before anything is written, that ``db`` is either absent (or an
    empty file, or an SQLite file without any table: a new store) or a sweep store of this
    layout; returns True when it is an existing store. Raises ValueError naming the file
    otherwise (foreign SQLite file, another layout, not SQLite, corrupt, missing directory)."""
    path = Path(db)
    if str(db) == ":memory:":
        return False
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ValueError(f"db: directory {directory} does not exist")
    if path.is_dir():
        raise ValueError(f"db: {db} is a directory")
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise ValueError(f"db: cannot read {db}: {exc.strerror or exc}") from None
    if header != b"SQLite format 3\x00":
        raise _not_a_store(db, "not an SQLite file")
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT
        )
    except sqlite3.Error as exc:
        raise _not_a_store(db, f"cannot open it: {exc}") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        n_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and n_objects == 0:
            return False
        if app_id == 0 and _is_unmarked_store(conn):
            return True  # made before the marks existed; marked on the next write
        if app_id != APPLICATION_ID:
            raise _not_a_store(db, f"SQLite application_id {app_id:#x}, not {APPLICATION_ID:#x}")
        if version != USER_VERSION:
            raise _not_a_store(
                db, f"store layout version {version}, this mixforget reads {USER_VERSION}"
            )
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _not_a_store(db, f"corrupt: {check}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "points", "claims"} <= tables:
            raise _not_a_store(db, "tables missing")
        return True
    except sqlite3.DatabaseError as exc:
        raise _not_a_store(db, f"corrupt: {exc}") from None
    finally:
        conn.close()


def _stored_meta(db: str | Path) -> dict[str, str]:
    """The meta table of an existing store ({} for a new one); refuses foreign files."""
    if not _inspect_store(db):
        return {}
    conn = _connect(db)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


def _create(conn: sqlite3.Connection, meta: Mapping[str, str], db: str | Path) -> None:
    """Initialise a new store, or check that an existing one was made by this sweep (the
    check runs inside the write transaction, so two processes starting together agree)."""
    cols = ", ".join(f"{c} {_SQL_TYPES.get(c, 'REAL')}" for c in COLUMNS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        n_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and n_objects == 0:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {USER_VERSION}")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute(f"CREATE TABLE points ({cols})")
            conn.execute("CREATE TABLE claims (point INTEGER PRIMARY KEY, owner TEXT NOT NULL)")
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))
        elif app_id == 0 and _is_unmarked_store(conn):
            stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if stored.get("hash") != meta["hash"]:
                raise _different_sweep(db, stored.get("hash", "?"), meta["hash"])
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {USER_VERSION}")
            conn.execute("CREATE TABLE claims (point INTEGER PRIMARY KEY, owner TEXT NOT NULL)")
        elif app_id != APPLICATION_ID:
            raise _not_a_store(db, f"SQLite application_id {app_id:#x}, not {APPLICATION_ID:#x}")
        else:
            stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if stored.get("hash") != meta["hash"]:
                raise _different_sweep(db, stored.get("hash", "?"), meta["hash"])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _is_unmarked_store(conn: sqlite3.Connection) -> bool:
    """A store written by mixforget before the SQLite marks (application_id 0): exactly the
    tables meta and points, points with this layout's columns, meta with this format."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables != {"meta", "points"}:
        return False
    columns = [r[1] for r in conn.execute("PRAGMA table_info(points)")]
    if columns != list(COLUMNS):
        return False
    meta_columns = [r[1] for r in conn.execute("PRAGMA table_info(meta)")]
    if meta_columns != ["key", "value"]:
        return False
    row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    return row is not None and row[0] == FORMAT


def _different_sweep(db: str | Path, stored: str, digest: str) -> ValueError:
    return ValueError(
        f"the database {db} was made by a different sweep (its base, grid, rng or population "
        f"flag differ: stored hash {stored[:12]}…, this sweep {digest[:12]}…); "
        "use another db path or the original arguments"
    )


# -- claims: several processes on one store compute every point exactly once -------------
def _process_start(pid: int) -> str:
    """Start time of a process (clock ticks since boot, Linux), '' when unknown: with the pid
    it identifies a process even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _owner() -> str:
    return f"{socket.gethostname()}|{os.getpid()}|{_process_start(os.getpid())}"


def _owner_alive(owner: str) -> bool:
    """Whether the process that made a claim still runs. Claims made on another host count as
    alive (they cannot be checked from here)."""
    host, pid_text, started = ([*owner.split("|"), "", "", ""])[:3]
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return _process_start(pid) == started


def _claim(conn: sqlite3.Connection, point: int, owner: str) -> bool:
    """Atomically take point ``point`` for this process: True when it is neither finished
    nor claimed by a live process (a dead owner's claim is taken over)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM points WHERE point = ?", (point,)).fetchone():
            conn.execute("COMMIT")
            return False
        row = conn.execute("SELECT owner FROM claims WHERE point = ?", (point,)).fetchone()
        if row is not None and row[0] != owner and _owner_alive(row[0]):
            conn.execute("COMMIT")
            return False
        conn.execute("INSERT OR REPLACE INTO claims (point, owner) VALUES (?, ?)", (point, owner))
        conn.execute("COMMIT")
        return True
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _release(conn: sqlite3.Connection, points: Sequence[int], owner: str) -> None:
    """Drop this process's claims on unfinished points (after an error or Ctrl-C)."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "DELETE FROM claims WHERE point = ? AND owner = ?", [(p, owner) for p in points]
        )
        conn.execute("COMMIT")


def _write_point(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    """One finished point = one transaction (the row, and its claim dropped)."""
    placeholders = ", ".join("?" for _ in COLUMNS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"INSERT OR IGNORE INTO points ({', '.join(COLUMNS)}) VALUES ({placeholders})",
            [row.get(c) for c in COLUMNS],
        )
        conn.execute("DELETE FROM claims WHERE point = ?", (row["point"],))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _read_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM points ORDER BY point")
    grid_keys: list[str] = []
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "grid" in meta:
        grid_keys = [k for k, _ in json.loads(meta["grid"])]
    rows = []
    for record in cur.fetchall():
        raw = dict(zip(COLUMNS, record))
        params = json.loads(raw["params"])
        row: dict[str, Any] = {"point": raw["point"]}
        for key in grid_keys:
            row[key] = _display(params.get(key))
        for c in COLUMNS[1:]:
            if c not in ("params", "config"):
                row[c] = raw[c]
        row["params"] = raw["params"]
        row["config"] = raw["config"]
        rows.append(row)
    return rows


def _as_table(rows: list[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        return rows
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    return pd.DataFrame(rows)


def load_sweep(db: str | Path) -> Any:
    """Rows of a sweep database (finished points, ordered by point index): a pandas
    DataFrame when pandas is installed, else a list of dicts. Columns: ``point``, one column
    per grid key, then the stored columns (see the module docstring)."""
    if not Path(db).exists():
        raise FileNotFoundError(f"no sweep database at {db}")
    if not _inspect_store(db):
        raise _not_a_store(db, "no sweep in it")
    conn = _connect(db)
    try:
        return _as_table(_read_rows(conn))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------
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
) -> Any:
    """Run :func:`mixforget.simulate` on every point of a grid, storing one SQLite row per
    point (docs: api, design-reliability).

    Parameters
    ----------
    base : dict
        Keyword arguments of :func:`mixforget.simulate` (``target``, ``start`` and
        ``objective`` required; not ``rng``/``progress``). ``threads`` and ``memory_limit``
        are passed through but do not count as part of the sweep's identity.
    grid : dict of key -> list of values
        Cartesian product in key order, last key fastest (:func:`expand_grid`). Keys: any
        simulate argument of ``base`` except threads/memory_limit (e.g. ``batch_size``,
        ``lr``, ``objective``), ``"separation"`` (the target's Mahalanobis Δ, see
        :func:`apply_separation`, applied last), ``"old_weight"`` (target's and start's α),
        ``"target.<field>"`` / ``"start.<field>"`` (one TwoMode field) and
        ``"objective.<field>"`` (e.g. ``"objective.replay"``, applied to the point's
        objective with ``dataclasses.replace``). Every point is validated before any work.
    db : path
        SQLite file. A new file is initialised; an existing one made by the same sweep
        (same base, grid, root seed, ``population``) is resumed: finished points are skipped.
        A db made by a different sweep raises ValueError, and so does any file that is not a
        sweep store (marked by SQLite ``application_id`` and ``user_version``): foreign
        SQLite files, other files and corrupt stores are refused untouched. Several
        processes may run the same sweep on one db at once: each point is claimed atomically
        before it is computed, so every point is computed exactly once (a claim of a process
        that died is taken over; a process waits for the points that live processes on the
        same host are computing, then returns the full table).
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
        Save each point's :class:`~mixforget.Trajectory` as ``point_<i>.npz`` there and store
        the path in the row.
    population : bool
        Also run :func:`mixforget.population_flow` per point (columns
        ``old_weight_population``, ``sup_drift_population``).
    separation_mode : 'proportional' or 'fixed'
        How the grid key ``"separation"`` moves the start's new mean (:func:`apply_separation`):
        'proportional' keeps its relative position between the modes, 'fixed' keeps its offset
        from the target's new mean (the family of docs: theory-pred-drift).

    Returns
    -------
    pandas.DataFrame (when pandas is installed) or list of dicts, one row per point ordered
    by point index: ``point``, one column per grid key, then the columns of the ``points``
    table (module docstring).

    Reliability: each finished point is written in its own transaction, so an interrupted
    sweep (Ctrl-C, ``kill -9``) loses at most the points in flight; rows are bit-identical
    whatever the executor or the interruptions (only ``wall_time`` differs).
    """
    base = _check_base(base)
    grid = _check_grid(grid)
    for name, flag in (("population", population), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {flag!r}")
    population = bool(population)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "executor must have a submit(fn, arg) method (e.g. concurrent.futures."
            f"ThreadPoolExecutor) or be None, got {type(executor).__name__}"
        )
    if keep_trajectories is not None and not isinstance(keep_trajectories, (str, os.PathLike)):
        raise TypeError(
            f"keep_trajectories must be a directory path or None, got {keep_trajectories!r}"
        )
    if not isinstance(db, (str, os.PathLike)):
        raise TypeError(f"db must be a file path, got {type(db).__name__}")
    if separation_mode not in SEPARATION_MODES:
        raise ValueError(
            f"separation_mode must be one of {list(SEPARATION_MODES)}, got {separation_mode!r}"
        )
    points = expand_grid(grid)
    resolved = []
    for i, values in enumerate(points):
        try:
            kw = _resolve_point(base, values, separation_mode)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"grid point {i} {values}: {exc}") from None
        resolved.append((kw, _canonical_values(values, kw)))

    stored = _stored_meta(db)
    if rng is None and "seed" in stored:
        root = seed_from_record(json.loads(stored["seed"]))
    else:
        root = resolve_rng(rng)
    root_record = seed_record(root)
    base_plain = {
        k: v for k, v in _base_identity(base).items() if k not in grid
    }  # overridden keys do not count
    shape = [len(v) for v in grid.values()]
    index = list(itertools.product(*(range(n) for n in shape)))
    grid_plain = []
    for p, key in enumerate(grid):
        first = [next(i for i, idx in enumerate(index) if idx[p] == j) for j in range(shape[p])]
        grid_plain.append([key, [resolved[i][1][key] for i in first]])
    identity = {
        "format": FORMAT,
        "base": base_plain,
        "grid": grid_plain,
        "seed": root_record,
        "population": population,
    }
    if "separation" in grid:
        identity["separation_mode"] = separation_mode
    digest = hashlib.sha256(_dumps(identity).encode()).hexdigest()
    if stored and stored.get("hash") != digest:
        raise _different_sweep(db, stored.get("hash", "?"), digest)

    keep_dir = None if keep_trajectories is None else Path(keep_trajectories)
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
        from ._files import check_writable

        try:
            check_writable(keep_dir / "point_000000.npz", "keep_trajectories")
        except OSError as exc:
            raise ValueError(str(exc)) from None
    conn = _connect(db)
    owner = _owner()
    mine: set[int] = set()  # points claimed by this process and not yet written
    try:
        _create(
            conn,
            {
                "hash": digest,
                "format": FORMAT,
                "seed": json.dumps(root_record),
                "base": _dumps(base_plain),
                "grid": _dumps(grid_plain),
                "n_points": str(len(points)),
            },
            db,
        )
        done = {r[0] for r in conn.execute("SELECT point FROM points")}
        tasks: dict[int, dict[str, Any]] = {}
        params: dict[int, str] = {}
        for i, (kw, canon) in enumerate(resolved):
            if i in done:
                continue
            child = np.random.SeedSequence(root.entropy, spawn_key=(*tuple(root.spawn_key), i))
            tasks[i] = _task(kw, seed_record(child), keep_dir is not None, population)
            params[i] = _dumps(canon)
        bar = _bar(progress, len(points), len(done))

        def finish(i: int, result: Mapping[str, Any]) -> None:
            task = tasks[i]
            row: dict[str, Any] = {
                "point": i,
                "params": params[i],
                "config": _dumps(_stored_config(task)),
                "seed_entropy": task["seed"]["entropy"],
                "seed_spawn_key": json.dumps(task["seed"]["spawn_key"]),
                "wall_time": result["wall_time"],
                "trajectory": None,
                **result["metrics"],
            }
            if keep_dir is not None and result["trajectory"] is not None:
                payload = dict(result["trajectory"])
                payload["target"] = TwoMode(**payload["target"])
                path = Trajectory(**payload).save(keep_dir / f"point_{i:06d}.npz")
                row["trajectory"] = str(path)
            _write_point(conn, row)
            mine.discard(i)
            if bar is not None:
                bar.update(1)

        def compute(batch: list[int]) -> None:
            if executor is None:
                for i in batch:
                    if _claim(conn, i, owner):
                        mine.add(i)
                        finish(i, _compute_point(tasks[i]))
                return
            futures = {}
            try:
                for i in batch:
                    if _claim(conn, i, owner):
                        mine.add(i)
                        futures[executor.submit(_compute_point, tasks[i])] = i
                for fut in _completed(list(futures)):
                    finish(futures[fut], fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise

        try:
            compute(list(tasks))
            # Points claimed by other live processes on this host: wait for their rows, and
            # take over those whose owner has died (claims from other hosts are not awaited).
            while True:
                finished = {r[0] for r in conn.execute("SELECT point FROM points")}
                claims = dict(conn.execute("SELECT point, owner FROM claims").fetchall())
                waiting = [i for i in tasks if i not in finished and i in claims]
                local = [i for i in waiting if claims[i].split("|")[0] == socket.gethostname()]
                orphans = [i for i in local if claims[i] == owner or not _owner_alive(claims[i])]
                if orphans:
                    compute(orphans)
                elif local:
                    time.sleep(0.2)
                else:
                    break
        finally:
            if bar is not None:
                bar.close()
        return _as_table(_read_rows(conn))
    finally:
        if mine:
            _release(conn, sorted(mine), owner)
        conn.close()


def _base_identity(base: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical plain form of ``base`` for the sweep's hash (numbers normalised by the same
    checks simulate() makes; execution-only keys left out)."""
    try:
        kw = _resolve_point(base, {})
    except (ValueError, TypeError):
        kw = dict(base)
    return {k: _plain(v) for k, v in kw.items() if k not in _EXECUTION_KEYS}
