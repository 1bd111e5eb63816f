"""Resumable parameter sweeps stored in SQLite (docs: api, design-reliability).

:func:`sweep` runs :func:`mixforget.simulate` (two-mode or K-component models) or
:func:`mixforget.sequence` (a base with ``tasks``) on every point of a Cartesian grid and writes
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
the same sweep on one db compute every point exactly once; a claim whose process has died (pid
gone, a zombie, or a reused pid: its start time differs) is taken over, a finished point drops
its claim in the transaction that writes its row, and a process waits for other live
processes' claims at most ``wait_timeout`` seconds without progress (:data:`WAIT_TIMEOUT`).

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
(seconds of simulation) and ``trajectory`` (path of the kept .npz or NULL). Points of
K-component runs (K >= 3) and of task sequences leave the two-mode columns NULL.

``summaries(point INTEGER PRIMARY KEY, summary TEXT)``: made with the first such point (a
two-mode store never has it), in the transaction that writes the point's row: the JSON of
the point's summary, whose entries are columns of the returned table. K-component runs:
``weight_<j>_<mean|lo|hi>``, ``drift_<j>_…``, ``sup_drift_<j>_…``, ``starved_<j>_…`` per
component (:meth:`MixtureTrajectory.summary`; with ``population=True`` also
``weight_<j>_population`` and ``sup_drift_<j>_population``). Task sequences: for each matrix
kind (weight, mean_error, log_likelihood) ``<kind>_average``, ``<kind>_bwt``,
``<kind>_mean_forgetting`` and ``<kind>_forgetting`` (one per old task,
:meth:`SequenceResult.summary`; with ``population=True`` the same of the population flow,
suffixed ``_population``).
"""

from __future__ import annotations

from .grid import COLUMNS, METRICS, SEPARATION_MODES, apply_separation, expand_grid
from .run import ABANDON_SECONDS, WAIT_TIMEOUT, sweep
from .store import APPLICATION_ID as APPLICATION_ID  # the store's marks (see above)
from .store import USER_VERSION as USER_VERSION
from .store import load_sweep

__all__ = [
    "ABANDON_SECONDS",
    "COLUMNS",
    "METRICS",
    "SEPARATION_MODES",
    "WAIT_TIMEOUT",
    "apply_separation",
    "expand_grid",
    "load_sweep",
    "sweep",
]
