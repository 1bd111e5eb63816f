"""Reliability: bad input never aborts the interpreter, threads and memory stay bounded, the
sweep store refuses foreign files and shares work between processes, files are written
atomically and the CLI reports failures in one line (issue 11)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget import _files
from mixforget.cli import main
from mixforget.sweeps import APPLICATION_ID, USER_VERSION, load_sweep, sweep

sys.path.insert(0, str(Path(__file__).parent))
from reliability_cases import CASES

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"
T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
S = T.replace(new_mean=[0.5])


def _python(code: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


# ---------------------------------------------------------------------------------------
# the bad-input matrix, in a subprocess (an abort is a failure of that case only)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case_results(tmp_path_factory):
    """Run every case in one subprocess; when it dies (abort, segfault), record the case
    that killed it and go on from the next one in a fresh subprocess."""
    env = {**os.environ, "MF_CASES_TMP": str(tmp_path_factory.mktemp("cases"))}
    results: dict[int, dict] = {}
    start = 0
    while start < len(CASES):
        proc = subprocess.run(
            [sys.executable, str(HERE / "reliability_runner.py"), str(start)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            results[record["index"]] = record
        if proc.returncode == 0:
            break
        culprit = max(results, default=start - 1) + 1
        results[culprit] = {
            "raised": f"interpreter died (exit status {proc.returncode})",
            "message": proc.stderr[-500:],
        }
        start = culprit + 1
    return results


def test_the_matrix_is_large_and_covers_the_issue():
    assert len(CASES) >= 120
    ids = [c[0] for c in CASES]
    assert len(set(ids)) == len(ids)
    for needed in (
        "simulate-memory-batch",
        "gradient-memory-batch",
        "flow-memory-steps",
        "starvation-separation-neg",
        "sweep-population",
        "sweep-progress",
        "gradient-batches=1",
        "gradient-ttt-b1",
        "gradient-oapl-b1",
        "simulate-steps=2**64",
        "starvation-separation-nan",
        "starvation-weights-str",
        "starvation-batches-1",
        "sweep-db-missing-dir",
        "sweep-executor",
        "load-text",
        "mahalanobis-shape",
        "theory-expected-path",
        "resp-memory",
    ):
        assert needed in ids, needed


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_bad_input_raises_a_named_error(case_results, index):
    _, expression, exc_name, pattern = CASES[index]
    result = case_results[index]
    assert result["raised"] == exc_name, (expression, result)
    assert re.search(pattern, result["message"]), (expression, pattern, result["message"])


@pytest.mark.slow
def test_random_bad_arguments_never_kill_the_interpreter():
    """Hypothesis, in a subprocess: every call with at least one bad argument raises
    ValueError/TypeError; the interpreter survives all of them."""
    code = """
        import math
        import mixforget as mf
        from hypothesis import given, settings, HealthCheck, strategies as st

        T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
        S = T.replace(new_mean=[0.5])
        bad_count = st.one_of(
            st.integers(max_value=0), st.integers(min_value=2**63), st.floats(),
            st.text(max_size=3), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
        )
        # sizes refused by the memory estimate whatever the other arguments
        too_big = st.one_of(bad_count, st.integers(min_value=10**12, max_value=2**63 - 1))
        good = {
            "steps": st.sampled_from([2, 4]), "record_every": st.just(1),
            "batch_size": st.sampled_from([2, 8]), "replicates": st.sampled_from([1, 3]),
            "batches": st.sampled_from([2, 5]), "lr": st.sampled_from([0.01, 0.1]),
            "weight_param": st.sampled_from(["logit", "direct"]),
            "threads": st.sampled_from([None, 1, 2]),
        }
        bad = {
            "steps": bad_count, "record_every": bad_count, "batch_size": too_big,
            "replicates": too_big, "batches": too_big,
            "lr": st.one_of(
                st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.text(max_size=2)
            ),
            "weight_param": st.one_of(
                st.text(max_size=4).filter(lambda s: s not in ("logit", "direct")), st.integers()
            ),
            "threads": st.one_of(
                st.integers(max_value=0), st.integers(min_value=2**20), st.floats(),
                st.text(max_size=2),
            ),
        }
        KEYS = {
            "simulate": [
                "steps", "record_every", "batch_size", "replicates", "lr", "weight_param", "threads"
            ],
            "estimate_gradient": ["batch_size", "batches", "weight_param", "threads"],
            "population_flow": ["steps", "record_every", "lr", "weight_param"],
        }
        OBJECTIVES = [mf.ReverseKL(), mf.ForwardKL(), mf.TTTDiscover(), mf.OAPL(), mf.SDFT()]

        @st.composite
        def calls(draw):
            fn = draw(st.sampled_from(sorted(KEYS)))
            keys = KEYS[fn]
            broken = draw(st.lists(st.sampled_from(keys), min_size=1, unique=True))
            kw = {k: draw(bad[k] if k in broken else good[k]) for k in keys}
            return fn, kw, draw(st.sampled_from(OBJECTIVES))

        @settings(
            max_examples=300, deadline=None, suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(calls())
        def check(call):
            fn, kw, objective = call
            try:
                getattr(mf, fn)(T, S, objective, **kw)
            except (ValueError, TypeError):
                return
            raise AssertionError(f"{fn}({kw}) did not refuse its bad arguments")

        check()
        print("survived")
    """
    proc = _python(code, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "survived" in proc.stdout


# ---------------------------------------------------------------------------------------
# threads and memory
# ---------------------------------------------------------------------------------------
def test_thread_count_is_bounded_and_results_identical_for_threads_1_to_64():
    code = """
        import os, time
        import numpy as np
        import mixforget as mf
        from mixforget import kernels

        def n_threads():
            return len(os.listdir("/proc/self/task"))

        T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
        S = T.replace(new_mean=[0.5])
        RUN = dict(steps=4, batch_size=8, replicates=5, record_every=1)
        ref = mf.simulate(T, S, mf.ReverseKL(), threads=1, **RUN)
        g_ref = mf.estimate_gradient(T, S, mf.ReverseKL(), batch_size=8, batches=600, threads=1)
        before = n_threads()
        for t in range(1, 65):
            tr = mf.simulate(T, S, mf.ReverseKL(), threads=t, **RUN)
            assert np.array_equal(tr.old_mean, ref.old_mean)
            assert np.array_equal(tr.old_weight, ref.old_weight)
            g = mf.estimate_gradient(T, S, mf.ReverseKL(), batch_size=8, batches=600, threads=t)
            assert np.array_equal(g.gradients, g_ref.gradients)
            kernels.sample_mixture(100, [0.5, 0.5], [[0.0], [1.0]], 1.0, threads=t)
        deadline = time.time() + 5
        while n_threads() > before + 4 * (os.cpu_count() or 1) and time.time() < deadline:
            time.sleep(0.05)  # dropped pools' threads exit asynchronously
        print(before, n_threads(), os.cpu_count())
    """
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    before, after, cores = map(int, proc.stdout.split())
    # at most 4 pools of at most `cores` threads each are kept (LRU), whatever was asked
    assert after <= before + 4 * cores, (before, after, cores)


def test_memory_estimate_counts_batch_buffers():
    """A call whose outputs are small but whose per-replicate batches are huge is refused
    before any allocation (it used to abort the interpreter)."""
    with pytest.raises(ValueError, match="batch_size"):
        mf.simulate(T, S, mf.ReverseKL(), steps=1, batch_size=10**12, replicates=1, record_every=1)
    limit = mf.get_memory_limit()
    try:
        # outputs ~ 1 KiB; the batch buffers of one replicate alone: 16 x 2^15 x 2 x 8 B = 8 MiB
        mf.set_memory_limit(4 * 2**20)
        with pytest.raises(ValueError, match="memory limit"):
            mf.simulate(
                T,
                S,
                mf.ReverseKL(),
                steps=1,
                batch_size=2**15,
                replicates=8,
                record_every=1,
                threads=8,
            )
    finally:
        mf.set_memory_limit(limit)


# ---------------------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------------------
def test_runaway_replicates_are_excluded_from_summaries():
    traj = mf.simulate(T, S, mf.ForwardKL(), lr=10.0, replicates=20, steps=200, rng=0)
    summary = traj.summary()
    assert summary["diverged"] == int(traj.excluded.sum()) >= 1
    assert summary["replicates"] + summary["diverged"] == 20
    if "sup_drift" in summary:
        assert summary["sup_drift"]["mean"] <= mf.results.RUNAWAY_DISTANCE
    calm = mf.simulate(T, S, mf.ReverseKL(), lr=0.05, replicates=20, steps=50, rng=0)
    assert not calm.runaway.any() and calm.summary()["diverged"] == 0


# ---------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1.0, 1e200, 1e300])
def test_geometry_is_scale_invariant(scale):
    """Δ and BC do not depend on a common scale of means (×√s) and covariances (×s)."""
    ref = mf.TwoMode(
        [0.0, 1.0], [3.0, -1.0], 0.7, old_cov=[1.0, 2.0], new_cov=[[2.0, 0.3], [0.3, 1.0]]
    )
    scaled = mf.TwoMode(
        ref.old_mean * np.sqrt(scale),
        ref.new_mean * np.sqrt(scale),
        0.7,
        old_cov=np.asarray(ref.old_cov) * scale,
        new_cov=np.asarray(ref.new_cov) * scale,
    )
    assert scaled.separation == pytest.approx(ref.separation, rel=1e-12)
    assert scaled.bhattacharyya == pytest.approx(ref.bhattacharyya, rel=1e-12)
    assert 0.0 < ref.bhattacharyya < 1.0


def test_geometry_extreme_covariances():
    huge = mf.TwoMode([-3.0], [3.5], 0.75, cov=1e308)
    assert huge.separation == pytest.approx(6.5 / 1e154, rel=1e-12)
    assert huge.bhattacharyya == pytest.approx(1.0)
    tiny = mf.TwoMode([-3.0], [3.5], 0.75, cov=1e-300)
    assert tiny.separation == pytest.approx(6.5e150, rel=1e-12)
    assert tiny.bhattacharyya == 0.0 and np.isfinite(tiny.separation)
    far = mf.TwoMode([0.0], [100.0], 0.5)
    assert far.log_bhattacharyya == pytest.approx(-(100.0**2) / 8)


def test_drift_study_warns_below_rounding():
    with pytest.warns(RuntimeWarning, match="rounding"):
        study = mf.studies.drift_vs_separation(
            [2.0, 3.0, 40.0], replicates=0, steps=20, lr=0.1, record_every=1, fit_points=3
        )
    flags = [r["below_rounding"] for r in study.rows]
    assert flags == [False, False, True]


# ---------------------------------------------------------------------------------------
# the sweep store
# ---------------------------------------------------------------------------------------
BASE = dict(
    target=T,
    start=S,
    objective=mf.ReverseKL(),
    steps=20,
    batch_size=8,
    replicates=4,
    record_every=10,
)
GRID = {"lr": [0.02, 0.05, 0.1]}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign_sqlite(path: Path, table: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(table)
    conn.execute("INSERT INTO " + table.split()[2] + " VALUES (1, 'x')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _foreign_sqlite(p, "CREATE TABLE people (id INTEGER, name TEXT)"),
        lambda p: _foreign_sqlite(p, "CREATE TABLE points (point INTEGER, other TEXT)"),
        lambda p: p.write_text("not a database at all\n"),
        lambda p: p.write_bytes(b"SQLite format 3\x00" + os.urandom(4000)),
    ],
    ids=["foreign-tables", "foreign-points-table", "text", "corrupt"],
)
def test_foreign_and_corrupt_dbs_are_refused_untouched(tmp_path, make):
    db = tmp_path / "x.sqlite"
    make(db)
    digest, listing = _digest(db), sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match="not a mixforget sweep database"):
        sweep(BASE, GRID, db)
    with pytest.raises(ValueError, match="not a mixforget sweep database"):
        load_sweep(db)
    assert _digest(db) == digest and sorted(os.listdir(tmp_path)) == listing
    assert main(["sweep", str(EXAMPLES / "sweep.toml"), "--db", str(db)]) == 2
    assert _digest(db) == digest


def test_store_is_marked_and_an_empty_file_is_a_new_store(tmp_path):
    db = tmp_path / "x.sqlite"
    db.touch()
    sweep(BASE, GRID, db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == USER_VERSION
    conn.close()
    assert len(load_sweep(db)) == 3


def test_store_made_before_the_marks_is_adopted(tmp_path):
    db = tmp_path / "old.sqlite"
    sweep(BASE, {"lr": [0.02, 0.05]}, db)
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE claims")
    conn.execute("DELETE FROM points WHERE point = 1")
    conn.execute("PRAGMA application_id = 0")
    conn.execute("PRAGMA user_version = 0")
    conn.commit()
    conn.close()
    assert len(load_sweep(db)) == 1
    assert len(sweep(BASE, {"lr": [0.02, 0.05]}, db)) == 2
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_claims_of_a_dead_process_are_taken_over(tmp_path):
    """A process killed mid-point leaves its claim; the next run takes it over."""
    db = tmp_path / "x.sqlite"
    sweep(BASE, GRID, db, rng=0)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM points WHERE point IN (0, 2)")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    owner = f"{socket.gethostname()}|{int(dead.stdout)}|0"
    conn.executemany("INSERT INTO claims VALUES (?, ?)", [(0, owner), (2, owner)])
    conn.commit()
    conn.close()
    rows = sweep(BASE, GRID, db, rng=0)
    assert len(rows) == 3
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    conn.close()


def test_two_processes_share_one_db(tmp_path):
    """Both exit 0, every point is computed exactly once, and both return the full table."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            """
            import importlib, json, sys
            import mixforget as mf
            sw = importlib.import_module("mixforget.sweeps")
            run = importlib.import_module("mixforget.sweeps.run")  # where sweep looks it up
            compute = run._compute_point
            def logged(task):
                out = compute(task)
                with open(sys.argv[2], "a") as fh:
                    fh.write(json.dumps(task["seed"]["spawn_key"][-1]) + "\\n")
                return out
            run._compute_point = logged
            T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
            base = dict(target=T, start=T.replace(new_mean=[0.5]), objective=mf.ReverseKL(),
                        steps=200, replicates=20, record_every=10)
            rows = sw.sweep(base, {"lr": [0.01, 0.02, 0.03, 0.04], "batch_size": [4, 8, 16]},
                            sys.argv[1], rng=1)
            print(len(rows))
            """
        )
    )
    db = tmp_path / "shared.sqlite"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for log in logs
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.split() == ["12"], out
    computed = [int(x) for log in logs if log.exists() for x in log.read_text().split()]
    assert sorted(computed) == list(range(12)), computed
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    conn.close()


# ---------------------------------------------------------------------------------------
# files: atomic writes, planted symlinks, unwritable outputs
# ---------------------------------------------------------------------------------------
@pytest.fixture
def predictable_names(monkeypatch):
    """Make tempfile's "random" names predictable, so that a test can plant symlinks at
    the names it will try (an attacker guessing them)."""
    names = [f"guess{i}" for i in range(20)]
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(names))
    return names


def _plant(directory: Path, target_name: str, names: list[str], victim: Path, n: int = 5) -> None:
    """Symlinks to ``victim`` at the old predictable names and the first n temporary names."""
    for name in [
        f"{target_name}.tmp.npz",
        f"{target_name}.tmp",
        *(f".{target_name}.{g}.tmp" for g in names[:n]),
    ]:
        (directory / name).symlink_to(victim)


def test_trajectory_save_never_follows_a_planted_symlink(tmp_path, predictable_names):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _plant(out_dir, "x.npz", predictable_names, victim)
    traj = mf.simulate(T, S, mf.ReverseKL(), steps=10, replicates=3, record_every=5)
    traj.save(out_dir / "x.npz")
    assert victim.read_text() == "precious"
    assert np.array_equal(mf.Trajectory.load(out_dir / "x.npz").old_mean, traj.old_mean)
    leftovers = [p for p in out_dir.iterdir() if not p.is_symlink() and p.name != "x.npz"]
    assert leftovers == []


def test_every_cli_file_uses_fresh_temporary_names(tmp_path, predictable_names, capsys):
    """simulate --out, sweep --keep-trajectories, demo (summary.json, figures): nothing
    follows a planted symlink."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "sim"
    out.mkdir()
    _plant(out, "x.npz", predictable_names, victim)
    assert main(["simulate", str(EXAMPLES / "quick.toml"), "--out", str(out / "x.npz")]) == 0
    keep = tmp_path / "keep"
    keep.mkdir()
    for i in range(3):
        _plant(keep, f"point_{i:06d}.npz", predictable_names, victim, n=2)
    sweep(BASE, GRID, tmp_path / "s.sqlite", keep_trajectories=keep)
    demo = tmp_path / "demo"
    demo.mkdir()
    for name in ("summary.json", "densities.png", "forgetting.png", "starvation.png"):
        _plant(demo, name, predictable_names, victim, n=2)
    assert main(["demo", "--out", str(demo), "--replicates", "20", "--steps", "20"]) in (0, 1)
    assert victim.read_text() == "precious"
    assert json.loads((demo / "summary.json").read_text())["settings"]["replicates"] == 20
    for i in range(3):
        kept = keep / f"point_{i:06d}.npz"
        assert not kept.is_symlink() and mf.Trajectory.load(kept).replicates == 4
    capsys.readouterr()


def test_failed_write_leaves_no_temporary_file_and_the_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "x.npz"
    target.write_bytes(b"old")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    traj = mf.simulate(T, S, mf.ReverseKL(), steps=10, replicates=3, record_every=5)
    with pytest.raises(OSError, match="No space"):
        traj.save(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]


def test_atomic_write_text_and_check_writable(tmp_path):
    with _files.atomic_write(tmp_path / "a.json", "w") as fh:
        fh.write("{}")
    assert (tmp_path / "a.json").read_text() == "{}"
    with pytest.raises(ValueError, match="mode"), _files.atomic_write(tmp_path / "b", "a"):
        pass
    regular = tmp_path / "file"
    regular.write_text("")
    with pytest.raises(FileNotFoundError, match="out"):
        _files.check_writable(regular / "x.npz", "out")  # a directory that is a regular file
    with pytest.raises(PermissionError, match="cannot write"):
        _files.check_writable("/proc/x.npz", "out")  # not writable, even for root
    with pytest.raises(IsADirectoryError):
        _files.check_writable(tmp_path, "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "file"]


@pytest.mark.parametrize(
    "argv, status",
    [
        (["simulate", "{quick}", "--out", "/proc/x.npz"], 1),
        (["simulate", "{quick}", "--out", "{file}/x.npz"], 2),
        (["sweep", "{sweep}", "--db", "/proc/x.sqlite"], 1),
        (["sweep", "{sweep}", "--db", "{tmp}/s.sqlite", "--keep-trajectories", "/proc/keep"], 1),
        (["demo", "--out", "/proc/demo"], 1),
        (["demo", "--out", "{file}/demo"], 1),
    ],
)
def test_unwritable_outputs_fail_before_any_work(tmp_path, monkeypatch, capsys, argv, status):
    """Read-only targets (/proc refuses writes even for root; a path under a regular file)
    fail with one line before any simulation starts."""
    regular = tmp_path / "file"
    regular.write_text("")
    called = []
    # where the simulate command and a sweep point look simulate up
    for module in ("mixforget.cli.run_config", "mixforget.sweeps._point"):
        monkeypatch.setattr(
            importlib.import_module(module), "simulate", lambda *a, **k: called.append(1)
        )
    args = [
        a.format(
            quick=EXAMPLES / "quick.toml", sweep=EXAMPLES / "sweep.toml", file=regular, tmp=tmp_path
        )
        for a in argv
    ]
    assert main(args) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert called == []


# ---------------------------------------------------------------------------------------
# CLI: one line per failure, exit codes, --debug
# ---------------------------------------------------------------------------------------
def test_cli_config_not_utf8_and_debug(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b'[run]\nsteps = "\xff\xfe"\n')
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "UTF-8" in err
    assert main(["--debug", "simulate", str(cfg), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith(
        "mixforget simulate: error"
    )
    assert main(["simulate", str(cfg), "--out", str(tmp_path / "x.npz"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_cli_read_only_db_fails_before_computing(tmp_path, capsys, monkeypatch):
    db = tmp_path / "s.sqlite"
    sweep(BASE, {"lr": [0.02]}, db)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as a non-root user would see
    assert main(["sweep", str(EXAMPLES / "sweep.toml"), "--db", str(db)]) == 1
    assert "not writable" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_unreachable_scheduler_fails_fast(tmp_path):
    pytest.importorskip("distributed")
    import socket

    with socket.socket() as s:  # a free port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    began = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mixforget.cli",
            "sweep",
            str(EXAMPLES / "sweep.toml"),
            "--db",
            str(tmp_path / "s.sqlite"),
            "--scheduler",
            f"tcp://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "scheduler" in proc.stderr, proc.stderr
    assert time.monotonic() - began < 30
    assert not (tmp_path / "s.sqlite").exists()


def test_cli_unexpected_error_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        importlib.import_module("mixforget.cli.run_config"),
        "simulate",
        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")),
    )
    assert main(["simulate", str(EXAMPLES / "quick.toml"), "--out", str(tmp_path / "x.npz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "boom" in err and "--debug" in err
