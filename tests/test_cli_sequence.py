"""Task sequences from the command line (issue 21; docs: api-cli, api-sequences):
``mixforget simulate`` on a file with ``[sequence]``, the saved SequenceResult and its
round trip, and bad sections refused with exit status 2 before anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget.cli import main
from mixforget.config import ConfigError
from mixforget.sequences import MATRIX_KINDS, SequenceResult, load_sequence_config
from mixforget.sequences.config import parse_sequence_config

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
[sequence]
steps = 40
lr = 0.1
batch_size = 16
replicates = 12
record_every = 10
rng = 7
schedule = "uniform"

[sequence.tasks]
weights = [0.4, 0.3, 0.3]
means = [[-4.0], [0.0], [4.0]]
cov = 1.0

[sequence.objective]
kind = "ForwardKL"
replay = 0.2
"""

TASKS = mf.Mixture([0.4, 0.3, 0.3], [[-4.0], [0.0], [4.0]], 1.0)
SETTINGS = dict(steps=40, lr=0.1, batch_size=16, replicates=12, record_every=10, rng=7)


def _direct(**changes) -> SequenceResult:
    return mf.sequence(
        TASKS, mf.ForwardKL(replay=0.2), schedule="uniform", **{**SETTINGS, **changes}
    )


def _assert_same_result(a: SequenceResult, b: SequenceResult) -> None:
    assert len(a.stages) == len(b.stages)
    for x, y in zip(a.stages, b.stages):
        for name in ("steps", "weights", "means", "starved", "diverged"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
        assert x.target == y.target and x.objective == y.objective and x.stage == y.stage
    for kind in MATRIX_KINDS:
        np.testing.assert_array_equal(a.per_replicate_matrix(kind), b.per_replicate_matrix(kind))
        assert a.summary(kind) == b.summary(kind)
    assert a.curriculum.as_dict() == b.curriculum.as_dict()
    assert a.population == b.population


def test_sequence_result_save_load_round_trip(tmp_path):
    result = _direct()
    path = result.save(tmp_path / "r.npz")
    _assert_same_result(result, SequenceResult.load(path))


def test_round_trip_of_a_buffered_population_free_run_and_of_a_population_run(tmp_path):
    buffered = _direct(buffer="reservoir", memory=20, stream=40)
    _assert_same_result(buffered, SequenceResult.load(buffered.save(tmp_path / "b.npz")))
    flow = mf.sequence(TASKS, mf.ReverseKL(), steps=30, record_every=10, population=True)
    _assert_same_result(flow, SequenceResult.load(flow.save(tmp_path / "p.npz")))


def test_load_refuses_a_file_that_is_not_a_sequence_result(tmp_path):
    traj = mf.simulate(
        mf.TwoMode([-3.0], [3.0], 0.7), mf.TwoMode([-3.0], [0.0], 0.7), mf.ReverseKL(),
        steps=10, replicates=2, record_every=10,
    )  # fmt: skip
    path = traj.save(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="not a saved SequenceResult"):
        SequenceResult.load(path)


def test_config_runs_the_same_sequence_as_the_direct_call():
    cfg = parse_sequence_config(__import__("tomllib").loads(CONFIG))
    assert cfg.rng == 7 and cfg.tasks == TASKS
    _assert_same_result(cfg.run(), _direct())


def test_cli_simulate_runs_the_sequence_and_writes_its_result(tmp_path, capsys):
    path = tmp_path / "seq.toml"
    path.write_text(CONFIG)
    out = tmp_path / "seq.npz"
    assert main(["simulate", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    loaded = SequenceResult.load(out)
    direct = _direct()
    _assert_same_result(loaded, direct)
    summary = direct.summary("weight")
    assert f"BWT {summary['bwt']:.4f}" in printed
    assert f"average {summary['average']:.4f}" in printed
    for f in summary["forgetting"]:
        assert f"{f:.4f}" in printed
    assert "| after stage | task 0 | task 1 | task 2 |" in printed
    assert f"wrote {out}" in printed


#: what is wrong → (text replaced, its replacement, the key the error names)
BAD_SECTIONS = {
    "no replicates": ("replicates = 12", "replicates = 0", "sequence.replicates"),
    "unknown schedule": ('schedule = "uniform"', 'schedule = "lifo"', "schedule"),
    "memory 0": ('schedule = "uniform"', 'buffer = "reservoir"\nmemory = 0', "sequence.memory"),
    "memory, no buffer": ('schedule = "uniform"', "memory = 10", "sequence.memory"),
    "unknown buffer": ('schedule = "uniform"', 'buffer = "fifo"', "sequence.buffer"),
    "torch": ('schedule = "uniform"', 'backend = "torch"', "sequence.backend"),
    "weights sum": ("[0.4, 0.3, 0.3]", "[0.4, 0.3, 0.4]", "sequence.tasks.weights"),
    "two means": ("[[-4.0], [0.0], [4.0]]", "[[-4.0], [0.0]]", "sequence.tasks.means"),
    "steps per stage": ("steps = 40", "steps = [40, 40, 40]", "steps"),
    "unknown key": ("rng = 7", "rng = 7\ncolour = 1", "sequence.colour"),
    "a [target]": ("[sequence]", "[target]\nold_mean = 1.0\n\n[sequence]", "[target]"),
}


@pytest.mark.parametrize("case", list(BAD_SECTIONS.values()), ids=list(BAD_SECTIONS))
def test_bad_sequence_configs_exit_2_naming_the_key_and_write_nothing(tmp_path, capsys, case):
    old, new, key = case
    assert old in CONFIG
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace(old, new, 1))
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_sequence_config(path)
    assert main(["simulate", str(path), "--out", str(tmp_path / "never.npz")]) == 2
    err = capsys.readouterr().err
    assert key in err and "invalid config" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_the_sequence_example_is_valid():
    cfg = load_sequence_config(ROOT / "examples" / "sequence.toml")
    assert cfg.tasks.n_components == 4 and cfg.settings["schedule"] == "uniform"
    assert cfg.grid is None
