"""TOML configurations of K-component runs (issue 20; docs: api-config): the [target] /
[start] keys of a Mixture, their defaults, the checks of every key before any work, and
``mixforget simulate`` on such a file."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

import mixforget as mf
from mixforget.cli import main
from mixforget.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mixture.toml"

BASE = {
    "target": {"weights": [0.5, 0.3, 0.2], "means": [[-4.0], [0.0], [4.0]], "cov": 1.0},
    "start": {"means": [[-4.0], [0.0], [1.0]]},
    "objective": {"kind": "ForwardKL", "replay": 0.2, "replay_mix": [0.5, 0.5]},
    "run": {"steps": 60, "batch_size": 16, "replicates": 20, "record_every": 10, "rng": 4},
}


def _with(**changes):
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if value is None:
            data[section].pop(key)
        else:
            data[section][key] = value
    return data


def _toml(data) -> str:
    lines = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            text = repr(value).replace("'", '"').replace("True", "true").replace("False", "false")
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def test_mixture_sections_build_mixtures_with_start_defaults_from_the_target():
    cfg = parse_config(BASE)
    assert isinstance(cfg.target, mf.Mixture) and isinstance(cfg.start, mf.Mixture)
    assert cfg.target == mf.Mixture([0.5, 0.3, 0.2], [[-4.0], [0.0], [4.0]], 1.0)
    # start: weights and cov from the target, its own means
    assert cfg.start == mf.Mixture([0.5, 0.3, 0.2], [[-4.0], [0.0], [1.0]], 1.0)
    assert cfg.objective == mf.ForwardKL(replay=0.2, replay_mix=(0.5, 0.5))
    assert "new_components" not in cfg.run


def test_per_component_covariances_new_components_and_one_dimensional_means():
    data = _with(
        target__means=[-4.0, 0.0, 4.0, 8.0],
        target__weights=[0.4, 0.3, 0.2, 0.1],
        target__cov=None,
        target__covs=[1.0, 0.5, 2.0, 1.0],
        target__new_components=[1, 3],
        start__means=[-4.0, 0.0, 4.0, 8.0],
        objective__replay_mix=[0.25, 0.75],
    )
    data["start"]["covs"] = [1.0, 1.0, 1.0, 1.0]
    cfg = parse_config(data)
    assert cfg.target.n_components == 4 and cfg.target.dim == 1
    np.testing.assert_array_equal(cfg.target.cov_matrix(1), [[0.5]])
    np.testing.assert_array_equal(cfg.start.cov_matrix(1), [[1.0]])
    assert cfg.run["new_components"] == [1, 3]
    assert cfg.simulate_kwargs()["new_components"] == [1, 3]


def test_simulate_kwargs_equal_the_direct_call_bit_for_bit():
    cfg = parse_config(BASE)
    traj = mf.simulate(**cfg.simulate_kwargs())
    direct = mf.simulate(
        mf.Mixture([0.5, 0.3, 0.2], [[-4.0], [0.0], [4.0]], 1.0),
        mf.Mixture([0.5, 0.3, 0.2], [[-4.0], [0.0], [1.0]], 1.0),
        mf.ForwardKL(replay=0.2, replay_mix=(0.5, 0.5)),
        steps=60,
        batch_size=16,
        replicates=20,
        record_every=10,
        rng=4,
    )
    np.testing.assert_array_equal(traj.weights, direct.weights)
    np.testing.assert_array_equal(traj.means, direct.means)


def test_two_component_mixture_config_equals_the_two_mode_config():
    k2 = {
        "target": {"weights": [0.75, 0.25], "means": [[-3.0], [3.5]]},
        "start": {"means": [[-3.0], [0.5]]},
        "objective": {"kind": "ReverseKL"},
        "run": {"steps": 50, "replicates": 16, "record_every": 10, "rng": 2},
    }
    two_mode = copy.deepcopy(k2)
    two_mode["target"] = {"old_mean": [-3.0], "new_mean": [3.5], "old_weight": 0.75}
    two_mode["start"] = {"new_mean": [0.5]}
    a = mf.simulate(**parse_config(k2).simulate_kwargs())
    b = mf.simulate(**parse_config(two_mode).simulate_kwargs())
    np.testing.assert_array_equal(a.old_weight, b.old_weight)
    np.testing.assert_array_equal(a.new_mean, b.new_mean)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"target__weights": [0.5, 0.3, 0.3]}, "target.weights"),
        ({"target__weights": [1.0]}, "target.weights"),
        ({"target__weights": "0.5"}, "target.weights"),
        ({"target__means": [[0.0], [1.0]]}, "target.means"),
        ({"target__means": [[0.0], "x", [1.0]]}, "target.means"),
        ({"start__means": [[0.0], [1.0]]}, "start.means"),
        ({"start__weights": [0.5, 0.5]}, "start.means"),
        ({"start__means": [[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]}, "[start]"),
        ({"target__covs": [1.0, 2.0, -1.0], "target__cov": None}, "target.covs[2]"),
        ({"target__covs": [1.0, 2.0], "target__cov": None}, "target.covs"),
        ({"target__new_components": [3]}, "target.new_components"),
        ({"target__new_components": [0, 1, 2]}, "target.new_components"),
        ({"target__new_components": 2}, "target.new_components"),
        ({"target__old_mean": [1.0]}, "[target]"),
        ({"target__colour": 1}, "target.colour"),
        ({"start__new_components": [1]}, "start.new_components"),
        ({"objective__replay_mix": [0.5, 0.6]}, "objective.replay_mix"),
        ({"objective__replay_mix": [1.0]}, "objective.replay_mix"),
        ({"run__weight_param": "direct"}, "run.weight_param"),
        ({"run__train_scales": True}, "run.train_scales"),
        ({"run__lr_scale": {"old_mean": 1.0}}, "run.lr_scale"),
    ],
)
def test_bad_values_raise_config_errors_naming_the_key(changes, key):
    with pytest.raises(ConfigError) as info:
        parse_config(_with(**changes))
    assert key in str(info.value)


def test_an_objective_without_a_k_component_form_is_refused_naming_the_kind():
    data = _with(objective__replay=None, objective__replay_mix=None)
    data["objective"]["kind"] = "OAPL"
    with pytest.raises(ConfigError, match=r"objective\.kind.*OAPL"):
        parse_config(data)


def test_two_mode_only_grid_keys_are_refused_for_a_mixture():
    data = copy.deepcopy(BASE)
    data["sweep"] = {"grid": {"separation": [2.0, 4.0]}}
    with pytest.raises(ConfigError, match=r"sweep.*'weights'"):
        parse_config(data)
    data["sweep"] = {"grid": {"target.old_mean": [[1.0]]}}
    with pytest.raises(ConfigError, match="model keys"):
        parse_config(data)


def test_cli_simulate_writes_the_mixture_trajectory(tmp_path, capsys):
    path = tmp_path / "k3.toml"
    path.write_text(_toml(BASE))
    out = tmp_path / "k3.npz"
    assert main(["simulate", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for j in range(3):
        assert f"weight_{j} " in printed and f"starved_{j} " in printed
    loaded = mf.Trajectory.load(out)
    assert isinstance(loaded, mf.results.MixtureTrajectory)
    direct = mf.simulate(**parse_config(BASE).simulate_kwargs())
    np.testing.assert_array_equal(loaded.weights, direct.weights)
    np.testing.assert_array_equal(loaded.means, direct.means)
    assert f"{direct.summary()['weight_2']['mean']:.4f}" in printed


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"target__weights": [0.5, 0.3, 0.3]}, "target.weights"),
        ({"objective__replay_mix": [0.2, 0.2, 0.6]}, "objective.replay_mix"),
        ({"target__new_components": [7]}, "target.new_components"),
    ],
)
def test_cli_bad_mixture_config_exits_2_naming_the_key_and_writes_nothing(
    tmp_path, capsys, changes, key
):
    path = tmp_path / "bad.toml"
    path.write_text(_toml(_with(**changes)))
    out = tmp_path / "never.npz"
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert key in err and "invalid config" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_the_mixture_example_is_valid():
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg.target, mf.Mixture) and cfg.target.n_components == 3
    assert cfg.run["new_components"] == [2]
    assert cfg.objective.replay == 0.2 and cfg.objective.replay_mix == (0.5, 0.5)
