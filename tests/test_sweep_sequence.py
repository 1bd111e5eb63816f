"""Sweeps over K-component runs and task sequences (issues 20, 21; docs: api-sweep): the one
sweep loop with Mixture models or a ``tasks`` base, per-point summaries equal to the direct
calls bit for bit, resuming, kept results, checks before any work, and ``mixforget sweep``
on TOML files of both kinds."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget.cli import main
from mixforget.config import ConfigError, load_config
from mixforget.sequences import MATRIX_KINDS, SequenceResult, load_sequence_config
from mixforget.sweeps import expand_grid, load_sweep

ROOT = Path(__file__).resolve().parents[1]
TASKS = mf.Mixture([0.4, 0.3, 0.3], [[-4.0], [0.0], [4.0]], 1.0)
RUN = {"steps": 40, "lr": 0.1, "batch_size": 16, "replicates": 10, "record_every": 10}
SEQUENCE_BASE = {"tasks": TASKS, "objective": mf.ForwardKL(replay=0.2), **RUN, "memory": 20}
SEQUENCE_BASE["buffer"] = "reservoir"
SEQUENCE_GRID = {"sequence.memory": [10, 40], "objective.replay": [0.1, 0.3]}

TARGET = mf.Mixture([0.5, 0.3, 0.2], [[-4.0], [0.0], [4.0]], 1.0)
MIXTURE_BASE = dict(
    target=TARGET,
    start=TARGET.replace(means=[[-4.0], [0.0], [1.0]]),
    objective=mf.ForwardKL(replay=0.2, replay_mix=(0.5, 0.5)),
    steps=40,
    replicates=12,
    record_every=10,
)
MIXTURE_GRID = {"weights": [[0.5, 0.3, 0.2], [0.3, 0.5, 0.2]], "batch_size": [8, 16]}


def _child(root: int, i: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(root, spawn_key=(i,))


def _direct_sequence(i: int, rng: int) -> SequenceResult:
    values = expand_grid(SEQUENCE_GRID)[i]
    kw = {k: v for k, v in SEQUENCE_BASE.items() if k not in ("tasks", "objective")}
    kw["memory"] = values["sequence.memory"]
    objective = mf.ForwardKL(replay=values["objective.replay"])
    return mf.sequence(TASKS, objective, rng=_child(rng, i), **kw)


def test_sequence_sweep_points_equal_direct_calls_bit_for_bit(tmp_path):
    rows = mf.sweep(SEQUENCE_BASE, SEQUENCE_GRID, tmp_path / "s.sqlite", rng=5).to_dict("records")
    assert [(r["sequence.memory"], r["objective.replay"]) for r in rows] == [
        (10, 0.1), (10, 0.3), (40, 0.1), (40, 0.3)
    ]  # fmt: skip
    for i, row in enumerate(rows):
        direct = _direct_sequence(i, 5)
        for kind in MATRIX_KINDS:
            summary = direct.summary(kind)
            assert row[f"{kind}_average"] == summary["average"]
            assert row[f"{kind}_bwt"] == summary["bwt"]
            assert row[f"{kind}_mean_forgetting"] == summary["mean_forgetting"]
            assert row[f"{kind}_forgetting"] == summary["forgetting"]
        assert row["replicates"] == int(direct.kept.sum()) and row["diverged"] == 0
        assert row["old_weight_mean"] is None or np.isnan(row["old_weight_mean"])
    # the points differ: the grid reaches the runs
    assert len({r["weight_bwt"] for r in rows}) == 4


def test_sequence_sweep_resumes_keeps_results_and_threads_equal_serial(tmp_path):
    db = tmp_path / "s.sqlite"
    first = mf.sweep(SEQUENCE_BASE, SEQUENCE_GRID, db, rng=5, keep_trajectories=tmp_path / "k")
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM points WHERE point = 2")
    conn.execute("DELETE FROM summaries WHERE point = 2")
    conn.commit()
    conn.close()
    again = mf.sweep(SEQUENCE_BASE, SEQUENCE_GRID, db, rng=5, keep_trajectories=tmp_path / "k")
    cols = ["weight_bwt", "log_likelihood_average", "mean_error_forgetting", "replicates"]
    assert again[cols].to_dict("records") == first[cols].to_dict("records")
    kept = SequenceResult.load(again.loc[2, "trajectory"])
    np.testing.assert_array_equal(kept.matrix("weight"), _direct_sequence(2, 5).matrix("weight"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = mf.sweep(
            SEQUENCE_BASE, SEQUENCE_GRID, tmp_path / "t.sqlite", rng=5, executor=pool
        )
    assert threaded[cols].to_dict("records") == first[cols].to_dict("records")


def test_sequence_sweep_with_the_population_flow_beside_each_point(tmp_path):
    base = {k: v for k, v in SEQUENCE_BASE.items() if k not in ("buffer", "memory")}
    grid = {"schedule": ["uniform", "recency"]}
    rows = mf.sweep(base, grid, tmp_path / "p.sqlite", rng=1, population=True)
    for i, schedule in enumerate(grid["schedule"]):
        kw = {k: v for k, v in base.items() if k not in ("tasks", "objective", "replicates")}
        flow = mf.sequence(
            TASKS, base["objective"], **{**kw, "schedule": schedule, "population": True}
        )
        assert rows.loc[i, "weight_bwt_population"] == flow.summary("weight")["bwt"]


def test_mixture_sweep_points_equal_direct_calls_bit_for_bit(tmp_path):
    rows = mf.sweep(MIXTURE_BASE, MIXTURE_GRID, tmp_path / "m.sqlite", rng=2, population=True)
    for i, values in enumerate(expand_grid(MIXTURE_GRID)):
        target = TARGET.replace(weights=values["weights"])
        start = MIXTURE_BASE["start"].replace(weights=values["weights"])
        kw = {k: v for k, v in MIXTURE_BASE.items() if k not in ("target", "start")}
        traj = mf.simulate(
            target, start, **{**kw, "batch_size": values["batch_size"]}, rng=_child(2, i)
        )
        summary = traj.summary()
        for j in range(3):
            for name in ("weight", "drift", "sup_drift", "starved"):
                for s in ("mean", "lo", "hi"):
                    assert rows.loc[i, f"{name}_{j}_{s}"] == summary[f"{name}_{j}"][s]
        flow = mf.population_flow(target, start, kw["objective"], steps=40, record_every=10)
        assert rows.loc[i, "weight_2_population"] == float(flow.weights[0, -1, 2])
        assert rows.loc[i, "replicates"] == summary["replicates"]


def test_two_mode_stores_keep_their_layout(tmp_path):
    base = dict(
        target=mf.TwoMode([-3.0], [3.5], 0.75),
        start=mf.TwoMode([-3.0], [0.5], 0.75),
        objective=mf.ReverseKL(),
        steps=20,
        replicates=4,
        record_every=10,
    )
    db = tmp_path / "two.sqlite"
    rows = mf.sweep(base, {"lr": [0.02, 0.05]}, db)
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables == {"meta", "points", "claims"}
    assert "weight_0_mean" not in rows.columns and "weight_bwt" not in rows.columns


@pytest.mark.parametrize(
    ("base", "grid", "match"),
    [
        (MIXTURE_BASE, {"separation": [2.0, 4.0]}, "unknown grid key 'separation'"),
        (MIXTURE_BASE, {"old_weight": [0.5]}, "unknown grid key 'old_weight'"),
        (MIXTURE_BASE, {"weights": [[0.5, 0.3, 0.3]]}, "grid point 0.*weights must sum"),
        (MIXTURE_BASE, {"objective.replay_mix": [(0.5, 0.4)]}, "grid point 0.*replay_mix"),
        (SEQUENCE_BASE, {"rng": [1, 2]}, "unknown grid key 'rng'"),
        (SEQUENCE_BASE, {"sequence.colour": [1]}, "unknown grid key 'sequence.colour'"),
        (SEQUENCE_BASE, {"memory": [10, 0]}, "grid point 1.*memory"),
        (SEQUENCE_BASE, {"schedule": ["uniform", "lifo"]}, "grid point 1.*schedule"),
        ({**SEQUENCE_BASE, "colour": 1}, {"memory": [10]}, "unknown base key 'colour'"),
    ],
)
def test_bad_sweeps_are_refused_before_any_file(tmp_path, base, grid, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mf.sweep(base, grid, tmp_path / "x.sqlite")
    assert not list(tmp_path.iterdir())


SEQUENCE_TOML = """\
[sequence]
steps = 40
lr = 0.1
batch_size = 16
replicates = 10
record_every = 10
rng = 5
buffer = "reservoir"
memory = 20

tasks = { weights = [0.4, 0.3, 0.3], means = [[-4.0], [0.0], [4.0]], cov = 1.0 }
objective = { kind = "ForwardKL", replay = 0.2 }

[sweep.grid]
"sequence.memory" = [10, 40]
"objective.replay" = [0.1, 0.3]
"""


def test_cli_sweep_of_a_sequence_file_prints_bwt_per_point(tmp_path, capsys):
    path = tmp_path / "seq.toml"
    path.write_text(SEQUENCE_TOML)
    cfg = load_sequence_config(path)
    assert cfg.grid == {"sequence.memory": [10, 40], "objective.replay": [0.1, 0.3]}
    db = tmp_path / "seq.sqlite"
    assert main(["sweep", str(path), "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "BWT" in printed and "4 points in" in printed
    rows = load_sweep(db)
    for i in range(4):
        direct = _direct_sequence(i, 5)
        assert rows.loc[i, "weight_bwt"] == direct.summary("weight")["bwt"]
        assert f"{direct.summary('weight')['bwt']:.4f}" in printed


#: grid entry → (text replaced, its replacement, the key the error names)
BAD_GRIDS = {
    "memory 0": ('"sequence.memory" = [10, 40]', '"sequence.memory" = [10, 0]', "sequence.memory"),
    "unknown": ('"sequence.memory" = [10, 40]', '"sequence.seed" = [1, 2]', "sequence.seed"),
    "replay": ('"objective.replay" = [0.1, 0.3]', '"objective.replay" = [0.1, 1.5]', "replay"),
    "weights": (
        '"objective.replay" = [0.1, 0.3]',
        '"tasks.weights" = [[0.5, 0.6, 0.1]]',
        "weights",
    ),
    "empty": ('"objective.replay" = [0.1, 0.3]', "batch_size = []", "batch_size"),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS.values()), ids=list(BAD_GRIDS))
def test_cli_bad_sequence_grid_exits_2_naming_the_key_and_writes_nothing(tmp_path, capsys, case):
    old, new, key = case
    bad = tmp_path / "bad.toml"
    bad.write_text(SEQUENCE_TOML.replace(old, new))
    with pytest.raises(ConfigError, match=key):
        load_sequence_config(bad)
    status = main(["sweep", str(bad), "--db", str(tmp_path / "never.sqlite")])
    assert (status, key in capsys.readouterr().err) == (2, True)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]


def test_cli_sweep_of_a_mixture_file(tmp_path, capsys):
    text = (ROOT / "examples" / "mixture.toml").read_text()
    text = text.replace("steps = 2000", "steps = 40").replace("replicates = 100", "replicates = 8")
    text += "\n[sweep.grid]\nweights = [[0.5, 0.3, 0.2], [0.3, 0.5, 0.2]]\n"
    text += '"objective.replay" = [0.1, 0.3]\n'
    path = tmp_path / "mix.toml"
    path.write_text(text)
    db = tmp_path / "mix.sqlite"
    assert main(["sweep", str(path), "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "weight 0" in printed and "weight 2" in printed
    rows = load_sweep(db)
    cfg = load_config(path)
    for i, values in enumerate(expand_grid(cfg.grid)):
        base = cfg.sweep_base()
        target = base["target"].replace(weights=values["weights"])
        start = base["start"].replace(weights=values["weights"])
        objective = mf.ForwardKL(replay=values["objective.replay"], replay_mix=(0.5, 0.5))
        run = {k: v for k, v in base.items() if k not in ("target", "start", "objective")}
        traj = mf.simulate(target, start, objective, rng=_child(cfg.rng, i), **run)
        assert rows.loc[i, "weight_2_mean"] == traj.summary()["weight_2"]["mean"]


@pytest.mark.parametrize("name", ["sequence_sweep.toml", "mixture_sweep.toml"])
def test_the_sweep_examples_are_valid(name):
    path = ROOT / "examples" / name
    cfg = load_sequence_config(path) if name.startswith("sequence") else load_config(path)
    assert cfg.grid and len(expand_grid(cfg.grid)) >= 4
