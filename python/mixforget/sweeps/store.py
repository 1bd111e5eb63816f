"""The SQLite store of a sweep: its marks and layout, the claims that let several processes
share one database, the writing of finished points and :func:`load_sweep`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .grid import COLUMNS, FORMAT, _display

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


#: The per-point summary of K-component and sequence points (JSON text of a dict): its own
#: table, made with the first such point, so that the ``points`` layout and every two-mode
#: store stay exactly as they were.
_SUMMARIES_TABLE = (
    "CREATE TABLE IF NOT EXISTS summaries (point INTEGER PRIMARY KEY, summary TEXT NOT NULL)"
)

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
def _proc_stat(pid: int) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (field 3 on: state first, start
    time at index 19), [] when unknown (no such process, or not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _process_start(pid: int) -> str:
    """Start time of a process (clock ticks since boot, Linux, field 22 of /proc/<pid>/stat),
    '' when unknown: with the pid it identifies a process even after its pid is reused."""
    fields = _proc_stat(pid)
    return fields[19].decode() if len(fields) > 19 else ""


def _owner() -> str:
    return f"{socket.gethostname()}|{os.getpid()}|{_process_start(os.getpid())}"


def _owner_alive(owner: str) -> bool:
    """Whether the process that made a claim still runs: its pid exists, is not a zombie
    (killed, not yet reaped: state Z or X) and started when the claim's process did (a reused
    pid is another process). Claims made on another host count as alive (they cannot be
    checked from here)."""
    host, pid_text, started = ([*owner.split("|"), "", "", ""])[:3]
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
        if pid <= 0:  # kill(0 or -n) would probe a process group
            return False
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass  # exists, owned by another user
    fields = _proc_stat(pid)
    if fields and fields[0] in (b"Z", b"X"):
        return False
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
        if row.get("summary") is not None:
            conn.execute(_SUMMARIES_TABLE)
            conn.execute(
                "INSERT OR IGNORE INTO summaries (point, summary) VALUES (?, ?)",
                (row["point"], json.dumps(row["summary"])),  # in the summary's own order
            )
        conn.execute("DELETE FROM claims WHERE point = ?", (row["point"],))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _read_rows(conn: sqlite3.Connection, db: str | Path) -> list[dict[str, Any]]:
    """Every stored row, each checked (:func:`_checked_row`), as the returned table's rows."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    grid_keys: list[str] = []
    if "grid" in meta:
        try:
            grid_keys = [k for k, _ in json.loads(meta["grid"])]
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"db: {db}: the stored grid (meta table, key 'grid') is corrupt: {exc}"
            ) from None
    n_points = meta.get("n_points", "")
    summaries = _read_summaries(conn, db)
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM points ORDER BY point")
    rows = []
    for record in cur.fetchall():
        raw = dict(zip(COLUMNS, record))
        params = _checked_row(raw, int(n_points) if n_points.isdigit() else None, db)
        row: dict[str, Any] = {"point": raw["point"]}
        for key in grid_keys:
            row[key] = _display(params.get(key))
        for c in COLUMNS[1:]:
            if c not in ("params", "config"):
                row[c] = raw[c]
        row.update(summaries.get(raw["point"], {}))
        row["params"] = raw["params"]
        row["config"] = raw["config"]
        rows.append(row)
    return rows


def _read_summaries(conn: sqlite3.Connection, db: str | Path) -> dict[int, dict[str, Any]]:
    """point → its stored summary (none in a store without the table: two-mode sweeps made
    before it existed)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "summaries" not in tables:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for point, text in conn.execute("SELECT point, summary FROM summaries"):
        try:
            summary = json.loads(text)
        except (ValueError, TypeError):
            summary = None
        if not isinstance(summary, dict):
            raise ValueError(
                f"db: {db}: point {point}: the stored summary (table summaries) is not a JSON "
                "object; the store was not changed"
            )
        out[int(point)] = summary
    return out


#: Stored columns holding JSON text of a given type, and the integer columns.
_JSON_COLUMNS = {"params": dict, "config": dict, "seed_spawn_key": list}
_INT_COLUMNS = ("replicates", "diverged")
_TEXT_COLUMNS = ("seed_entropy", "params", "config", "seed_spawn_key", "trajectory")


def _checked_row(raw: Mapping[str, Any], n_points: int | None, db: str | Path) -> dict[str, Any]:
    """Validate one stored row (types of every column, JSON of the JSON columns, the point
    index in range); returns its parsed ``params``. A row edited or damaged outside
    mixforget raises ValueError naming the store, the point and the column."""
    point = raw["point"]

    def corrupt(column: str, why: str) -> ValueError:
        return ValueError(
            f"db: {db}: the stored row of point {point} is corrupt (column {column!r}: {why}); "
            f"the store was not changed: delete that row (DELETE FROM points WHERE point = "
            f"{point}) to recompute it, or use another db"
        )

    if not isinstance(point, int) or point < 0 or (n_points is not None and point >= n_points):
        raise corrupt("point", f"{point!r} is not a point index of this sweep")
    for column in _TEXT_COLUMNS:
        value = raw[column]
        if not isinstance(value, str) and not (column == "trajectory" and value is None):
            raise corrupt(column, f"expected text, got {type(value).__name__}")
    parsed: dict[str, Any] = {}
    for column, kind in _JSON_COLUMNS.items():
        try:
            parsed[column] = json.loads(raw[column])
        except ValueError as exc:
            raise corrupt(column, f"not valid JSON: {exc}") from None
        if not isinstance(parsed[column], kind):
            raise corrupt(column, f"expected a JSON {kind.__name__}")
    for column in COLUMNS:
        value = raw[column]
        if column in _TEXT_COLUMNS or column == "point" or value is None:
            continue
        wanted = (int,) if column in _INT_COLUMNS else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise corrupt(column, f"expected a number, got {value!r}")
        if column in _INT_COLUMNS and value < 0:
            raise corrupt(column, f"expected a count >= 0, got {value}")
    return parsed["params"]


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
    per grid key, then the stored columns (see the module docstring). Every row is checked
    on load: a row damaged outside mixforget raises ValueError naming the store, the point
    and the column."""
    if not isinstance(db, (str, os.PathLike)):
        raise TypeError(f"db must be the path of a sweep database, got {type(db).__name__}")
    if not Path(db).exists():
        raise FileNotFoundError(f"no sweep database at {db}")
    if not _inspect_store(db):
        raise _not_a_store(db, "no sweep in it")
    conn = _connect(db)
    try:
        return _as_table(_read_rows(conn, db))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
