"""mf.sweep: grid expansion, per-point seeds, SQLite storage, resume, executors (docs: api,
design-reliability)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget.config import load_config
from mixforget.sweeps import COLUMNS, apply_separation, expand_grid, load_sweep, sweep

ROOT = Path(__file__).resolve().parents[1]
# subprocesses import the same mixforget as this process (installed wheel or editable tree)
PACKAGE_PARENT = str(Path(mf.__file__).resolve().parent.parent)
#: columns that legitimately differ between two runs of the same sweep
VOLATILE = ("wall_time", "trajectory")


def _records(table):
    return table.to_dict("records") if hasattr(table, "to_dict") else list(table)


def _stable(table):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in _records(table)]


@pytest.fixture
def base(target, start):
    return dict(
        target=target,
        start=start,
        objective=mf.ReverseKL(),
        steps=100,
        batch_size=32,
        lr=0.05,
        replicates=64,
        record_every=10,
    )


GRID = {"separation": [3.0, 5.0], "objective.replay": [0.0, 0.25], "batch_size": [8, 32]}


def test_expand_grid_order_is_cartesian_last_key_fastest():
    pts = expand_grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert pts == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 1, "b": "z"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 2, "b": "z"},
    ]


@pytest.mark.parametrize("mode", ["proportional", "fixed"])
def test_apply_separation(target, start, mode):
    for delta in (2.0, 4.0, 9.0):
        t, s = apply_separation(target, start, delta, mode)
        assert t.separation == pytest.approx(delta, rel=1e-12)
        np.testing.assert_array_equal(t.old_mean, target.old_mean)
        np.testing.assert_array_equal(s.old_mean, start.old_mean)
        assert s.old_weight == start.old_weight
        k = delta / target.separation
        if mode == "proportional":  # offset from the target's new mean scales with Δ
            np.testing.assert_allclose(
                s.new_mean - t.new_mean, k * (start.new_mean - target.new_mean), rtol=1e-12
            )
        else:  # offset kept
            np.testing.assert_allclose(
                s.new_mean - t.new_mean, start.new_mean - target.new_mean, atol=1e-12
            )


def test_apply_separation_2d_keeps_orthogonal_part():
    tgt = mf.TwoMode(old_mean=[0.0, 0.0], new_mean=[4.0, 0.0], old_weight=0.5, cov=[1.0, 4.0])
    st = tgt.replace(new_mean=[2.0, 1.0])
    t, s = apply_separation(tgt, st, 8.0)
    assert t.separation == pytest.approx(8.0)
    np.testing.assert_allclose(t.new_mean, [8.0, 0.0])
    np.testing.assert_allclose(s.new_mean, [4.0, 1.0])


def test_serial_rows_and_seeds(tmp_path, base):
    table = sweep(base, GRID, tmp_path / "a.sqlite", rng=7)
    rows = _records(table)
    assert [r["point"] for r in rows] == list(range(8))
    points = expand_grid(GRID)
    for r, p in zip(rows, points):
        assert json.loads(r["params"]) == p
        assert (r["separation"], r["objective.replay"], r["batch_size"]) == (
            p["separation"],
            p["objective.replay"],
            p["batch_size"],
        )
        assert r["bhattacharyya"] == pytest.approx(np.exp(-(p["separation"] ** 2) / 8))
        assert r["replicates"] + r["diverged"] == 64
        assert r["old_weight_lo"] <= r["old_weight_mean"] <= r["old_weight_hi"]
        assert r["trajectory"] is None and r["old_weight_population"] is None
    # point i is reproduced by simulate with the i-th child of SeedSequence(rng)
    i = 5
    child = np.random.SeedSequence(7).spawn(8)[i]
    assert rows[i]["seed_entropy"] == "7" and json.loads(rows[i]["seed_spawn_key"]) == [i]
    t, s = apply_separation(base["target"], base["start"], points[i]["separation"])
    kw = {k: v for k, v in base.items() if k not in ("target", "start", "objective")}
    kw["batch_size"] = points[i]["batch_size"]
    traj = mf.simulate(t, s, mf.ReverseKL(replay=points[i]["objective.replay"]), rng=child, **kw)
    summ = traj.summary()
    for name in ("old_weight", "sup_drift", "new_error", "starved"):
        assert rows[i][f"{name}_mean"] == summ[name]["mean"]
        assert rows[i][f"{name}_hi"] == summ[name]["hi"]


def test_db_layout(tmp_path, base):
    db = tmp_path / "a.sqlite"
    sweep(base, {"lr": [0.05, 0.1]}, db, rng=1)
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(points)")]
    assert cols == list(COLUMNS)
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert {"hash", "seed", "base", "grid", "n_points", "format"} <= set(meta)
    assert meta["n_points"] == "2" and json.loads(meta["seed"]) == {"entropy": "1", "spawn_key": []}
    conn.close()


def test_thread_executor_equals_serial(tmp_path, base):
    serial = sweep(base, GRID, tmp_path / "serial.sqlite", rng=3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = sweep(base, GRID, tmp_path / "threads.sqlite", executor=pool, rng=3)
    assert _stable(threaded) == _stable(serial)


def test_dask_cluster_equals_serial(tmp_path, base):
    distributed = pytest.importorskip("distributed")
    serial = sweep(base, GRID, tmp_path / "serial.sqlite", rng=11)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask_rows = sweep(
            base, GRID, tmp_path / "dask.sqlite", executor=client.get_executor(), rng=11
        )
    assert _stable(dask_rows) == _stable(serial)


class _Lazy:
    """A minimal future-like object (only result() and cancel()), computed on demand."""

    def __init__(self, fn, args, fail: bool) -> None:
        self.fn, self.args, self.fail = fn, args, fail

    def result(self):
        if self.fail:
            raise KeyboardInterrupt
        return self.fn(*self.args)

    def cancel(self) -> bool:
        return True


class _FailingExecutor:
    """submit/result only (not concurrent.futures): results are collected in submission
    order, and the n-th one raises KeyboardInterrupt (Ctrl-C in the middle of a sweep)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.count = fail_at, 0

    def submit(self, fn, *args):
        fut = _Lazy(fn, args, self.count == self.fail_at)
        self.count += 1
        return fut


def test_interrupted_sweep_resumes(tmp_path, base):
    db = tmp_path / "r.sqlite"
    with pytest.raises(KeyboardInterrupt):
        sweep(base, GRID, db, executor=_FailingExecutor(3), rng=5)
    conn = sqlite3.connect(db)
    before = dict(conn.execute("SELECT point, wall_time FROM points"))
    conn.close()
    assert sorted(before) == [0, 1, 2]
    resumed = sweep(base, GRID, db, rng=5)
    rows = _records(resumed)
    assert [r["point"] for r in rows] == list(range(8))
    for r in rows:  # finished points were not recomputed
        if r["point"] in before:
            assert r["wall_time"] == before[r["point"]]
    full = sweep(base, GRID, tmp_path / "full.sqlite", rng=5)
    assert _stable(resumed) == _stable(full)
    again = sweep(base, GRID, db, rng=5)  # nothing left to do
    assert _records(again) == rows


def test_resume_after_sigkill(tmp_path):
    """A sweep killed with SIGKILL mid-way, then re-run, equals an uninterrupted one."""
    cfg = tmp_path / "kill.toml"
    cfg.write_text(
        "[target]\nold_mean = [-3.0]\nnew_mean = [3.5]\nold_weight = 0.75\n"
        '[start]\nnew_mean = [0.5]\n[objective]\nkind = "ReverseKL"\n'
        "[run]\nsteps = 300\nbatch_size = 64\nlr = 0.05\nreplicates = 200\n"
        "record_every = 10\nrng = 9\n"
        '[sweep.grid]\nseparation = [4.0, 6.0]\n"objective.replay" = [0.0, 0.25]\n'
        "lr = [0.02, 0.05]\n"
    )
    db = tmp_path / "killed.sqlite"
    env = dict(
        os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixforget.cli", "sweep", str(cfg), "--db", str(db)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    rows = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                conn = sqlite3.connect(db, timeout=5)
                rows = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
                conn.close()
            except sqlite3.OperationalError:  # not created yet / locked
                rows = 0
            if rows >= 1:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    conn = sqlite3.connect(db)
    before = dict(conn.execute("SELECT point, wall_time FROM points"))
    conn.close()
    assert 1 <= len(before) < 8

    from mixforget.cli import main

    assert main(["sweep", str(cfg), "--db", str(db)]) == 0
    resumed = load_sweep(db)
    rows_after = _records(resumed)
    assert [r["point"] for r in rows_after] == list(range(8))  # every point exactly once
    for r in rows_after:
        if r["point"] in before:
            assert r["wall_time"] == before[r["point"]]
    c = load_config(cfg)
    full = sweep(c.sweep_base(), c.grid, tmp_path / "full.sqlite", rng=c.rng)
    assert _stable(resumed) == _stable(full)


def test_different_sweep_is_refused(tmp_path, base):
    db = tmp_path / "a.sqlite"
    sweep(base, {"lr": [0.05]}, db, rng=1)
    with pytest.raises(ValueError, match="different sweep"):
        sweep(base, {"lr": [0.05]}, db, rng=2)
    with pytest.raises(ValueError, match="different sweep"):
        sweep(base, {"lr": [0.05, 0.1]}, db, rng=1)
    with pytest.raises(ValueError, match="different sweep"):
        sweep({**base, "steps": 200}, {"lr": [0.05]}, db, rng=1)
    # execution-only settings, base values the grid overrides and equivalent spellings
    # (0 and 0.0) make the same sweep
    sweep({**base, "threads": 1}, {"lr": [0.05]}, db, rng=1)
    sweep({**base, "lr": 1.0}, {"lr": [0.05]}, db, rng=1)
    db2 = tmp_path / "b.sqlite"
    sweep(base, {"objective.replay": [0.0, 0.25]}, db2, rng=1)
    sweep(base, {"objective.replay": [0, 0.25]}, db2, rng=1)


def test_rng_none_reuses_the_recorded_seed(tmp_path, base):
    db = tmp_path / "a.sqlite"
    first = sweep(base, {"lr": [0.05, 0.1]}, db, rng=None)
    again = sweep(base, {"lr": [0.05, 0.1]}, db, rng=None)
    assert _records(again) == _records(first)
    entropy = _records(first)[0]["seed_entropy"]
    other = sweep(
        base, {"lr": [0.05, 0.1]}, tmp_path / "b.sqlite", rng=np.random.SeedSequence(int(entropy))
    )
    assert _stable(other) == _stable(first)


def test_keep_trajectories_and_population(tmp_path, base):
    keep = tmp_path / "traj"
    rows = _records(
        sweep(
            base,
            {"separation": [4.0, 6.0]},
            tmp_path / "a.sqlite",
            rng=2,
            keep_trajectories=keep,
            population=True,
        )
    )
    for r in rows:
        path = Path(r["trajectory"])
        assert path.parent == keep and path.exists()
        traj = mf.Trajectory.load(path)
        assert traj.old_weight.shape == (64, 11)
        assert traj.summary()["old_weight"]["mean"] == r["old_weight_mean"]
        assert traj.target.separation == pytest.approx(r["separation"])
        assert r["sup_drift_population"] > 0 and 0 < r["old_weight_population"] < 1
    # the population sup drift falls with the separation (docs: theory-pred-drift)
    assert rows[1]["sup_drift_population"] < rows[0]["sup_drift_population"]


def test_objective_grid_and_fields(tmp_path, base):
    grid = {"objective": [mf.ForwardKL(), mf.ReverseKL()], "objective.replay": [0.0, 0.5]}
    rows = _records(sweep({**base, "steps": 300}, grid, tmp_path / "a.sqlite", rng=4))
    assert [r["objective"].split("(")[0] for r in rows] == ["ForwardKL"] * 2 + ["ReverseKL"] * 2
    config = [json.loads(r["config"]) for r in rows]
    assert [c["objective"]["replay"] for c in config] == [0.0, 0.5, 0.0, 0.5]
    # ForwardKL's weight heads to λ (docs: theory-forward-kl); ReverseKL keeps α*
    # (docs: theory-reverse-kl)
    assert rows[0]["old_weight_mean"] < 0.2 and abs(rows[1]["old_weight_mean"] - 0.5) < 0.05
    assert abs(rows[3]["old_weight_mean"] - 0.75) < 0.2


def test_old_weight_and_model_field_keys(tmp_path, base):
    rows = _records(
        sweep(
            base,
            {"old_weight": [0.3], "start.old_weight": [0.5], "target.cov": [2.0]},
            tmp_path / "a.sqlite",
            rng=0,
        )
    )
    cfg = json.loads(rows[0]["config"])
    assert cfg["target"]["old_weight"] == 0.3 and cfg["start"]["old_weight"] == 0.5
    assert cfg["target"]["cov"] == 2.0 and cfg["start"]["cov"] == 1.0


@pytest.mark.parametrize(
    "grid, match",
    [
        ({"bogus": [1]}, "unknown grid key"),
        ({"rng": [1, 2]}, "unknown grid key"),
        ({"batch_size": []}, "must not be empty"),
        ({"batch_size": [0]}, "batch_size"),
        ({"objective.replay": [1.5]}, "replay"),
        ({"objective.ema": [0.1]}, "has fields"),
        ({"separation": [-1.0]}, "separation"),
        ({"record_every": [7]}, "record_every"),
    ],
)
def test_bad_grid_fails_before_any_work(tmp_path, base, grid, match):
    db = tmp_path / "bad.sqlite"
    with pytest.raises((ValueError, TypeError), match=match):
        sweep(base, grid, db)
    assert not db.exists()


def test_bad_base(tmp_path, base):
    with pytest.raises(ValueError, match="unknown base key"):
        sweep({**base, "nonsense": 1}, {"lr": [0.1]}, tmp_path / "a.sqlite")
    with pytest.raises(ValueError, match="pass rng"):
        sweep({**base, "rng": 1}, {"lr": [0.1]}, tmp_path / "a.sqlite")
    with pytest.raises(ValueError, match="must contain 'objective'"):
        sweep(
            {k: v for k, v in base.items() if k != "objective"},
            {"lr": [0.1]},
            tmp_path / "a.sqlite",
        )


def test_list_of_dicts_without_pandas(tmp_path, base, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    rows = sweep(base, {"lr": [0.05, 0.1]}, tmp_path / "a.sqlite", rng=0)
    assert isinstance(rows, list) and [r["point"] for r in rows] == [0, 1]
    assert rows[1]["lr"] == 0.1


def test_progress_bar(tmp_path, base, capsys):
    sweep(base, {"lr": [0.05, 0.1]}, tmp_path / "a.sqlite", rng=0, progress=True)
    assert "2/2" in capsys.readouterr().err
