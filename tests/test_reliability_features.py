"""Reliability of the features added after the first hardening round (issue 24, classes 3 and
5-9): refusals leave no file and come before any work, Ctrl-C of a threaded sweep keeps every
finished point and stops at once, dead claims (zombies, reused pids) are taken over and
waiting is bounded, silently accepted inputs are refused, messages name what is wrong, and
written files honour the umask. The bad-input cases themselves are in reliability_cases.py."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget import _files, studies
from mixforget.cli import main
from mixforget.config import ConfigError, load_config
from mixforget.sweeps import load_sweep, sweep
from mixforget.sweeps import store as sweep_store

T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
S = T.replace(new_mean=[0.5])
BASE = dict(target=T, start=S, objective=mf.ReverseKL(), steps=10, batch_size=8, replicates=4)
BASE["record_every"] = 5
GRID = {"lr": [0.02, 0.05, 0.1]}

CONFIG = """
[target]
old_mean = [-3.0]
new_mean = [3.5]
old_weight = 0.75
cov = 1.0

[start]
new_mean = [0.5]

[objective]
kind = "{kind}"

[run]
steps = {steps}
batch_size = {batch_size}
replicates = {replicates}
record_every = {record_every}

[sweep.grid]
{grid}
"""


def _config(tmp_path: Path, name: str = "c.toml", **fields: object) -> Path:
    values = dict(
        kind="ReverseKL", steps=10, batch_size=8, replicates=4, record_every=5, grid="lr = [0.1]"
    )
    values.update(fields)
    path = tmp_path / name
    path.write_text(CONFIG.format(**values))
    return path


# ---------------------------------------------------------------------------------------
# class 3: every argument checked before any work or any file
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, fixed",
    [
        ({"backend": "nope"}, {}),
        ({"precision": "float32"}, {}),
        ({"train_scales": "yes"}, {}),
        ({"scale_param": "exp"}, {}),
        ({"threads": 0}, {}),
        ({"memory_limit": 0}, {}),
        ({"replicates": 10**9}, {"replicates": 4}),
        ({"memory_limit": 4096}, {}),
    ],
    ids=lambda v: ",".join(f"{k}={v[k]}" for k in v) or "-",
)
def test_a_refused_sweep_leaves_no_store_and_the_corrected_call_runs(tmp_path, bad, fixed):
    db = tmp_path / "s.sqlite"
    with pytest.raises((ValueError, TypeError), match=next(iter(bad)).replace("_limit", "")):
        sweep({**BASE, **bad}, GRID, db)
    assert sorted(os.listdir(tmp_path)) == []
    corrected = {**BASE, **fixed}
    assert len(sweep(corrected, GRID, db)) == 3


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"replicates": 10**9}, "memory limit"),
        ({"kind": "TTTDiscover", "batch_size": 1}, "batch_size"),
        ({"grid": "lr = [0.1, 0.1]"}, "repeats"),
        ({"grid": "lr = [1, 1.0]"}, "repeats"),
    ],
    ids=["memory", "ttt-b1", "repeated", "repeated-int-float"],
)
def test_cli_sweep_refusal_exits_2_and_writes_nothing(tmp_path, capsys, fields, needle):
    cfg = _config(tmp_path, **fields)
    db = tmp_path / "s.sqlite"
    assert main(["sweep", str(cfg), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not db.exists()


def test_cli_sweep_failure_after_writing_is_not_reported_as_nothing_written(
    tmp_path, capsys, monkeypatch
):
    point = importlib.import_module("mixforget.sweeps.run")
    real = point._compute_point

    def second_fails(task):
        if task["seed"]["spawn_key"][-1] == 1:
            raise ValueError("point 1 failed")
        return real(task)

    monkeypatch.setattr(point, "_compute_point", second_fails)
    db = tmp_path / "s.sqlite"
    assert main(["sweep", str(_config(tmp_path, grid="lr = [0.1, 0.2]")), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "point 1 failed" in err and "was written" in err, err
    assert len(load_sweep(db)) == 1


def test_drop_vs_gain_refuses_before_its_first_simulation(monkeypatch):
    calls = []
    drop_gain = importlib.import_module("mixforget.studies.drop_gain")
    monkeypatch.setattr(drop_gain, "simulate", lambda *a, **k: calls.append(1))
    t2 = mf.TwoMode([0.0, 0.0], [3.0, 0.0], 0.75, cov=1.0)
    with pytest.raises(NotImplementedError, match="covariance"):
        studies.drop_vs_gain(t2, t2.replace(cov=2.0), [mf.ReverseKL()], [0.1], steps=5)
    with pytest.raises(ValueError, match="batch_size"):  # the second run's objective
        studies.drop_vs_gain(T, S, [mf.ReverseKL(), mf.OAPL()], [0.1], batch_size=1, steps=5)
    with pytest.raises(ValueError, match="lr"):  # a later learning rate
        studies.drop_vs_gain(T, S, [mf.ReverseKL()], [0.1, -1.0], steps=5)
    assert calls == []


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--backend", "cupy"], "mixforget[cupy]"),
        (["--backend", "nope"], "backend must be one of"),
        (["--backend", "numpy", "--precision", "half"], "precision"),
        (["--backend", "numpy", "--replicates", "0"], "--replicates"),
    ],
)
def test_bench_backend_is_checked_before_the_rust_benchmark(monkeypatch, capsys, argv, needle):
    backend = importlib.import_module("mixforget.reference._backend")
    monkeypatch.setitem(backend._MODULES, "cupy", "mixforget_missing_library")
    command = importlib.import_module("mixforget.bench.command")
    ran = []
    monkeypatch.setattr(command, "run_backend_w1", lambda *a, **k: ran.append(a))
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "--debug" not in err, err
    assert ran == []


# ---------------------------------------------------------------------------------------
# class 5: Ctrl-C of a threaded sweep
# ---------------------------------------------------------------------------------------
_INTERRUPTED_SWEEP = """
import os, signal, sys, threading, time
import mixforget as mf
from concurrent.futures import ThreadPoolExecutor
from mixforget.sweeps import run

T = mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)
base = dict(target=T, start=T.replace(new_mean=[0.5]), objective=mf.ReverseKL(),
            batch_size=64, replicates=20, record_every=1000)
write = run._write_point
slowed = []
def slow_first_write(conn, row):
    # the main thread is busy writing point 0 while point 1 finishes; Ctrl-C lands here
    if not slowed:
        slowed.append(row["point"])
        time.sleep(3.0)
    write(conn, row)
run._write_point = slow_first_write
sent = []
def interrupt():
    time.sleep(2.0)
    sent.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt, daemon=True).start()
pool = ThreadPoolExecutor(max_workers=2)
try:
    run.sweep(base, {"steps": [1000, 2000, 10**7, 2 * 10**7]}, sys.argv[1], executor=pool)
except KeyboardInterrupt:
    pool.shutdown(wait=True, cancel_futures=True)
    print(f"stopped {time.monotonic() - sent[0]:.3f}")
"""


def test_ctrl_c_of_a_threaded_sweep_keeps_finished_points_and_stops_at_once(tmp_path):
    db = tmp_path / "s.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_SWEEP, str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stopped = float(proc.stdout.split()[-1])
    assert stopped <= 1.0, proc.stdout
    assert sorted(r["point"] for r in _records(load_sweep(db))) == [0, 1]
    assert _claims(db) == 0


def test_ctrl_c_of_cli_sweep_with_workers(tmp_path):
    cfg = _config(
        tmp_path,
        steps=10**7,
        batch_size=64,
        replicates=2,
        record_every=10**5,
        grid="steps = [100000, 10000000, 20000000]",
    )
    db = tmp_path / "s.sqlite"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mixforget.cli",
            "sweep",
            str(cfg),
            "--db",
            str(db),
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (db.exists() and _rows(db)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent <= 1.5, err  # ≤ 1 s plus the interpreter's exit
    assert proc.returncode == 130, err
    assert _rows(db) == [0] and _claims(db) == 0


def _records(rows):
    return rows.to_dict("records") if hasattr(rows, "to_dict") else rows


def _rows(db: Path) -> list[int]:
    try:
        conn = sqlite3.connect(db)
        try:
            return [r[0] for r in conn.execute("SELECT point FROM points ORDER BY point")]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def _claims(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM claims").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# class 6: dead claims and bounded waiting
# ---------------------------------------------------------------------------------------
def _claim_all_but_first(db: Path, owner: str) -> None:
    sweep(BASE, GRID, db, rng=0)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM points WHERE point IN (1, 2)")
    conn.executemany("INSERT INTO claims VALUES (?, ?)", [(1, owner), (2, owner)])
    conn.commit()
    conn.close()


def _owner_of(pid: int, started: str | None = None) -> str:
    start = sweep_store._process_start(pid) if started is None else started
    return f"{socket.gethostname()}|{pid}|{start}"


@pytest.mark.parametrize("claimant", ["zombie", "reused-pid"])
def test_claims_of_zombies_and_reused_pids_are_taken_over(tmp_path, claimant):
    if claimant == "zombie":
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        deadline = time.monotonic() + 30
        while sweep_store._proc_stat(child.pid)[:1] != [b"Z"] and time.monotonic() < deadline:
            time.sleep(0.01)  # exited, not reaped: a zombie
        assert sweep_store._proc_stat(child.pid)[:1] == [b"Z"]
        owner = _owner_of(child.pid)
    else:  # a live process whose start time is not the claim's: the pid was reused
        child = subprocess.Popen(["sleep", "60"])
        owner = _owner_of(child.pid, started="1")
    try:
        assert not sweep_store._owner_alive(owner)
        db = tmp_path / "s.sqlite"
        _claim_all_but_first(db, owner)
        assert len(sweep(BASE, GRID, db, rng=0, wait_timeout=10)) == 3
        assert _claims(db) == 0
    finally:
        child.kill()
        child.wait()


def test_waiting_for_a_live_claim_is_bounded(tmp_path):
    child = subprocess.Popen(["sleep", "60"])
    try:
        owner = _owner_of(child.pid)
        assert sweep_store._owner_alive(owner)
        db = tmp_path / "s.sqlite"
        _claim_all_but_first(db, owner)
        began = time.monotonic()
        with pytest.raises(TimeoutError, match=rf"wait_timeout.*pid {child.pid}"):
            sweep(BASE, GRID, db, rng=0, wait_timeout=0.5)
        assert time.monotonic() - began < 10
        assert _rows(db) == [0]  # nothing of the live process's points was touched
    finally:
        child.kill()
        child.wait()
    assert len(sweep(BASE, GRID, db, rng=0)) == 3  # its claims are dead now


# ---------------------------------------------------------------------------------------
# class 7: silently accepted inputs (stored rows validated on load)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "column, value, needle",
    [
        ("params", "{not json", "not valid JSON"),
        ("config", "[1, 2]", "expected a JSON dict"),
        ("seed_spawn_key", "", "not valid JSON"),
        ("old_weight_mean", "abc", "expected a number"),
        ("replicates", -3, "count >= 0"),
        ("point", 99, "not a point index"),
    ],
)
@pytest.mark.parametrize("reader", ["load_sweep", "sweep", "cli"])
def test_damaged_stored_rows_are_refused_naming_store_point_and_column(
    tmp_path, capsys, column, value, needle, reader
):
    db = tmp_path / "s.sqlite"
    cfg = _config(tmp_path, grid="lr = [0.02, 0.05, 0.1]")
    if reader == "sweep":
        sweep(BASE, GRID, db)
    else:
        assert main(["sweep", str(cfg), "--db", str(db)]) == 0
        capsys.readouterr()
    conn = sqlite3.connect(db)
    conn.execute(f"UPDATE points SET {column} = ? WHERE point = 1", (value,))
    conn.commit()
    conn.close()
    point = 99 if column == "point" else 1
    pattern = rf"{re.escape(str(db))}.*point {point}.*'{column}'.*{needle}"
    if reader == "cli":
        assert main(["sweep", str(cfg), "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "JSONDecodeError" not in err, err
        assert re.search(pattern, err), err
        return
    with pytest.raises(ValueError, match=pattern):
        if reader == "load_sweep":
            load_sweep(db)
        else:
            sweep(BASE, GRID, db)


def test_normalised_reinforce_at_batch_size_2_still_runs():
    objective = mf.NewModeREINFORCE(advantage="normalised")
    traj = mf.simulate(T, S, objective, steps=4, batch_size=2, replicates=3, record_every=1)
    assert traj.old_weight.shape == (3, 5)


# ---------------------------------------------------------------------------------------
# class 8: messages
# ---------------------------------------------------------------------------------------
def test_toml_with_a_byte_order_mark_is_read(tmp_path):
    plain = _config(tmp_path, "plain.toml")
    marked = tmp_path / "bom.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert load_config(marked).run == load_config(plain).run
    assert main(["simulate", str(marked), "--out", str(tmp_path / "x.npz")]) == 0


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"steps": 2**64}, "run.steps"),
        ({"record_every": 2**64}, "run.record_every"),
        ({"replicates": 10**30}, "run.replicates"),
        ({"batch_size": -(2**63) - 1}, "run.batch_size"),
        ({"grid": f"steps = [10, {2**70}]"}, r"sweep.grid.steps\[1\]"),
    ],
)
def test_toml_integers_beyond_64_bits_are_named_as_such(tmp_path, capsys, fields, key):
    cfg = _config(tmp_path, **fields)
    with pytest.raises(ConfigError, match=rf"{key} = -?\d+ is beyond TOML's 64-bit"):
        load_config(cfg)
    assert main(["sweep", str(cfg), "--db", str(tmp_path / "s.sqlite")]) == 2
    assert "64-bit" in capsys.readouterr().err and not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--out", "{file}", "--no-figures"],
        ["sweep", "{cfg}", "--db", "{tmp}/s.sqlite", "--keep-trajectories", "{file}"],
    ],
    ids=["demo-out", "keep-trajectories"],
)
def test_an_output_directory_that_is_a_file_is_a_usage_error(tmp_path, capsys, argv):
    regular = tmp_path / "file"
    regular.write_text("x")
    cfg = _config(tmp_path)
    args = [a.format(file=regular, cfg=cfg, tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and err.count("\n") == 1, err
    assert regular.read_text() == "x" and not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("writer", ["trajectory", "atomic_write"])
def test_saving_into_a_missing_directory_names_the_users_path(tmp_path, writer):
    target = tmp_path / "missing" / "x.npz"
    with pytest.raises(FileNotFoundError) as info:
        if writer == "trajectory":
            mf.simulate(T, S, mf.ReverseKL(), steps=2, replicates=1, record_every=1).save(target)
        else:
            with _files.atomic_write(target) as fh:
                fh.write(b"x")
    message = str(info.value)
    assert str(target) in message and "does not exist" in message and ".tmp" not in message


@pytest.mark.parametrize("limit", [1, 100, 1000, 5000, 2**20 + 1])
def test_memory_messages_show_small_sizes_exactly(limit):
    with pytest.raises(ValueError, match="memory limit") as info:
        mf.simulate(T, S, mf.ReverseKL(), steps=10, replicates=10**4, memory_limit=limit)
    message = str(info.value)
    assert "0.00 GiB" not in message, message
    assert re.search(
        rf"over the memory limit ({limit} bytes|[\d.]+ [KM]iB \({limit} bytes\))", message
    )


@pytest.mark.parametrize(
    "old, new, cov, expected",
    [
        ([-1e308], [1e308], 1.0, np.inf),  # Δ = 2e308: beyond float64
        ([-1e308], [1e308], 1e300, 2e158),
        ([-1e308, 0.0], [1e308, 0.0], [4e306, 1.0], 1e155),
        ([-1e200], [1e200], 1.0, 2e200),
    ],
)
def test_separation_of_extreme_means_is_exact_or_inf_never_nan(old, new, cov, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        model = mf.TwoMode(old, new, 0.75, cov=cov)
        delta = model.separation
        assert delta == pytest.approx(expected, rel=1e-12)
        assert model.bhattacharyya == 0.0 and not np.isnan(model.log_bhattacharyya)


# ---------------------------------------------------------------------------------------
# class 9: written files honour the umask
# ---------------------------------------------------------------------------------------
@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda m: f"umask{m:03o}")
def umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize(
    "writer",
    ["trajectory", "atomic-text", "cli-simulate", "sweep-store", "keep-trajectories", "demo"],
)
def test_written_files_honour_the_umask(tmp_path, umask, writer):
    expected = 0o666 & ~umask
    if writer == "trajectory":
        paths = [
            mf.simulate(T, S, mf.ReverseKL(), steps=2, replicates=1, record_every=1).save(
                tmp_path / "t.npz"
            )
        ]
    elif writer == "atomic-text":
        with _files.atomic_write(tmp_path / "a.json", "w") as fh:
            json.dump({}, fh)
        paths = [tmp_path / "a.json"]
    elif writer == "cli-simulate":
        assert main(["simulate", str(_config(tmp_path)), "--out", str(tmp_path / "o.npz")]) == 0
        paths = [tmp_path / "o.npz"]
    elif writer == "sweep-store":
        sweep(BASE, GRID, tmp_path / "s.sqlite")
        paths = [tmp_path / "s.sqlite"]
        expected = 0o644 & ~umask  # SQLite creates its files 0644 less the umask
    elif writer == "keep-trajectories":
        sweep(BASE, GRID, tmp_path / "s.sqlite", keep_trajectories=tmp_path / "keep")
        paths = sorted((tmp_path / "keep").glob("*.npz"))
        assert len(paths) == 3
    else:
        argv = ["demo", "--out", str(tmp_path / "d"), "--replicates", "4", "--steps", "100"]
        main(argv)
        paths = sorted((tmp_path / "d").iterdir())
        assert {p.suffix for p in paths} == {".json", ".png"}
    for path in paths:
        assert _mode(path) == expected, (path, oct(_mode(path)), oct(expected))


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    target = tmp_path / "a.json"
    target.write_text("{}")
    target.chmod(0o640)
    with _files.atomic_write(target, "w") as fh:
        fh.write("[]")
    assert target.read_text() == "[]" and _mode(target) == 0o640
