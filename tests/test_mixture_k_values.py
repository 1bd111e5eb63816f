"""K-component values and results (issue 20): Mixture validation, pickle, equality, replace and
pairwise geometry; bad arguments of every K-component entry point refused before any work
with the argument named; MixtureTrajectory's views, storage, table, summary and figure; the
theory's closed forms."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import mixforget as mf
from mixforget.theory import (
    component_starvation_probability,
    forward_kl_replay_optimum,
    pairwise_misassignment_bound,
)
from mixture_k_grid import grid
from test_mixture_k import K3, K3_START, K4, TWO

# -- Mixture values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": [0.5, 0.6], "means": [0.0, 1.0]}, "weights must sum to 1"),
        ({"weights": [1.0], "means": [0.0]}, "K >= 2"),
        ({"weights": [0.5, 0.5, 0.0], "means": [0.0, 1.0, 2.0]}, "weights must each be"),
        ({"weights": [0.5, 0.5], "means": [[0.0], [1.0], [2.0]]}, "means must have one row"),
        ({"weights": [0.5, 0.5], "means": [0.0, 1.0], "covs": [1.0]}, "covs must have K = 2"),
        ({"weights": [0.5, 0.5], "means": [0.0, 1.0], "cov": -1.0}, "cov"),
    ],
)
def test_mixture_refuses_bad_values_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mf.Mixture(**kwargs)


def test_mixture_pickle_equality_replace_and_k2_geometry():
    assert pickle.loads(pickle.dumps(K4)) == K4
    assert hash(pickle.loads(pickle.dumps(K3))) == hash(K3)
    moved = K3.replace(means=[[-3.0], [0.0], [2.0]])
    assert moved != K3 and moved.weights.tolist() == K3.weights.tolist()
    assert K3.replace(weights=[0.2, 0.3, 0.5]).means.tolist() == K3.means.tolist()
    unequal = mf.Mixture([0.3, 0.7], [[0.0], [1.5]], covs=[1.0, 2.0])
    for two in (TWO, unequal.to_two_mode()):
        mix = two.to_mixture()
        assert mix.to_two_mode() == two
        bc = mix.bhattacharyya_matrix()
        assert bc[0, 1] == pytest.approx(two.bhattacharyya, rel=1e-14)
        assert bc[0, 0] == 1.0 and bc[1, 0] == bc[0, 1]
        assert mix.separation_matrix()[0, 1] == pytest.approx(two.separation, rel=1e-14)
    with pytest.raises(AttributeError):
        K3.weights = None  # type: ignore[misc]


# -- bad input of the K-component entry points ----------------------------------------------

_NUMPY = {"backend": "numpy"}
_CALLS = {
    "simulate": lambda t, s, o, **kw: mf.simulate(t, s, o, steps=5, replicates=2, **_NUMPY, **kw),
    "estimate_gradient": lambda t, s, o, **kw: mf.estimate_gradient(
        t, s, o, batches=4, **_NUMPY, **kw
    ),
    "population_flow": lambda t, s, o, **kw: mf.population_flow(t, s, o, steps=5, **kw),
}  # fmt: skip


@pytest.mark.parametrize("entry", sorted(_CALLS))
@pytest.mark.parametrize(
    ("target", "start", "objective", "kwargs", "error", "match"),
    [
        (K3, K4, mf.ForwardKL(), {}, ValueError, "as many components as target"),
        (K3, TWO, mf.ForwardKL(), {}, ValueError, "as many components as target"),
        (K3, K3.replace(means=np.zeros((3, 2))), mf.ForwardKL(), {}, ValueError, "dimension"),
        (K3, K3_START, mf.ForwardKL(), {"new_components": [3]}, ValueError, "new_components"),
        (K3, K3_START, mf.ForwardKL(), {"new_components": []}, ValueError, "new_components"),
        (K3, K3_START, mf.ForwardKL(), {"new_components": [0, 1, 2]}, ValueError, "new_comp"),
        (K3, K3_START, mf.ForwardKL(), {"new_components": [1, 1]}, ValueError, "new_components"),
        (K3, K3_START, mf.ForwardKL(0.2, replay_mix=(0.3, 0.3, 0.4)), {}, ValueError, "replay_mix"),
        (K3, K3_START, mf.ReverseKL(0.2, replay_mix=(1.0,)), {}, ValueError, "replay_mix"),
        (TWO, TWO, mf.ReverseKL(0.2, replay_mix=(0.5, 0.5)), {}, ValueError, "replay_mix"),
        (TWO, TWO, mf.ForwardKL(), {"new_components": [0]}, ValueError, "new_components"),
        (K3, K3_START, mf.SDFT(), {}, NotImplementedError, "SDFT.*ReverseKL and KLRegular"),
        (K3, K3_START, mf.OAPL(), {}, NotImplementedError, "OAPL"),
    ],
)  # fmt: skip
def test_bad_k_component_input_is_refused_naming_the_argument(
    entry, target, start, objective, kwargs, error, match
):
    with pytest.raises(error, match=match):
        _CALLS[entry](target, start, objective, **kwargs)


def test_k_component_settings_and_backends_are_checked():
    with pytest.raises(ValueError, match="update must be one of"):
        mf.simulate(K3, K3_START, mf.ForwardKL(), backend="numpy", update="adam")
    with pytest.raises(ValueError, match="lr_scale keys"):
        mf.simulate(K3, K3_START, mf.ForwardKL(), backend="numpy", lr_scale={"old_mean": 2.0})
    with pytest.raises(NotImplementedError, match="backend='torch' is not implemented for K"):
        mf.simulate(K3, K3_START, mf.ForwardKL(), backend="torch")
    with pytest.raises(NotImplementedError, match="backend='jax' is not implemented for K"):
        mf.estimate_gradient(K3, K3_START, mf.ForwardKL(), backend="jax")
    with pytest.raises(NotImplementedError, match="CPU in float64"):
        mf.simulate(K3, K3_START, mf.ForwardKL(), backend="numpy", precision="float32")
    with pytest.raises(NotImplementedError, match="train_scales"):
        mf.simulate(K3, K3_START, mf.ForwardKL(), backend="numpy", train_scales=True)
    with pytest.raises(NotImplementedError, match="weight_param"):
        mf.population_flow(K3, K3_START, mf.ForwardKL(), weight_param="direct")
    # K = 2 natural steps run as the TwoMode's (the two-mode engine's update='natural')
    kw = dict(steps=4, replicates=3, record_every=2, update="natural")
    as_mixture = mf.simulate(TWO.to_mixture(), TWO.to_mixture(), mf.ForwardKL(), **kw)
    as_two_mode = mf.simulate(TWO, TWO, mf.ForwardKL(), **kw)
    np.testing.assert_array_equal(as_mixture.old_weight, as_two_mode.old_weight)
    # five means in general position in d = 4 span 4 dimensions
    wide = mf.Mixture([0.2] * 5, np.vstack([np.eye(4) * 3.0, np.zeros(4)]))
    with pytest.raises(NotImplementedError, match="spans up to 3-D"):
        mf.population_flow(wide, wide, mf.ReverseKL(), steps=2, record_every=1)


# -- results ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k3_run() -> mf.results.MixtureTrajectory:
    return mf.simulate(K3, K3_START, mf.ForwardKL(replay=0.3), steps=40, batch_size=8,
                       replicates=5, record_every=10, backend="numpy", rng=1)  # fmt: skip


def test_mixture_trajectory_views_and_two_mode_attributes(k3_run):
    assert k3_run.weights.shape == (5, 5, 3) and k3_run.means.shape == (5, 5, 3, 1)
    np.testing.assert_allclose(k3_run.weights.sum(axis=-1), 1.0, rtol=1e-14)
    assert k3_run.starved_by_component.shape == (5, 3)
    drift = k3_run.drift
    assert drift.shape == (5, 5, 3)
    np.testing.assert_allclose(drift, np.abs(k3_run.means[..., 0] - K3.means[:, 0]), rtol=1e-14)
    assert k3_run.meta["new_components"] == [2] and k3_run.meta["n_components"] == 3
    for name in ("old_weight", "old_mean", "new_mean", "mass_forgotten", "overlap_accuracy"):
        with pytest.raises(AttributeError, match=f"{name} is a two-mode attribute.*K = 3"):
            getattr(k3_run, name)
    assert "K=3" in repr(k3_run)


def test_mixture_trajectory_save_load_pandas_summary(k3_run, tmp_path):
    back = mf.Trajectory.load(k3_run.save(tmp_path / "k3.npz"))
    assert isinstance(back, mf.results.MixtureTrajectory) and back.target == K3
    for name in ("steps", "weights", "means", "starved", "diverged"):
        assert np.array_equal(getattr(back, name), getattr(k3_run, name))
    assert back.meta["objective"]["replay_mix"] is None
    table = k3_run.to_pandas()
    assert len(table) == 5 * 5
    for j in range(3):
        assert {f"weight_{j}", f"drift_{j}", f"starved_{j}", f"mean_{j}_0"} <= set(table.columns)
    np.testing.assert_array_equal(table["weight_1"], k3_run.weights[:, :, 1].ravel())
    summary = k3_run.summary()
    assert summary["replicates"] == 5
    assert summary["weight_2"]["mean"] == pytest.approx(k3_run.weights[:, -1, 2].mean())
    assert summary["weight_2"]["lo"] <= summary["weight_2"]["mean"] <= summary["weight_2"]["hi"]


def test_mixture_trajectory_plot_has_one_labelled_line_per_component(k3_run, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = k3_run.plot()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 3
    assert labels[2].startswith("component 2 (new)") and labels[0].startswith("component 0 (old)")
    colours = {line.get_color() for line in ax.get_lines()}
    assert len(colours) == 3
    ax.figure.savefig(tmp_path / "k3.png")


# -- theory -----------------------------------------------------------------------------


def test_forward_kl_replay_optimum_and_starvation_formulas():
    opt = forward_kl_replay_optimum(K4, [1, 2], 0.4, (0.25, 0.75))
    np.testing.assert_allclose(opt, [0.1, 0.6 * 0.6, 0.6 * 0.4, 0.3], rtol=1e-14)
    assert forward_kl_replay_optimum(K3)[:2].tolist() == [0.0, 0.0]
    w, b = K3.weights, 7
    np.testing.assert_allclose(component_starvation_probability(w, b), (1 - w) ** b, rtol=1e-14)
    fkl = component_starvation_probability(w, b, 0.3, (0.5, 0.5), objective="forward_kl")
    np.testing.assert_allclose(fkl, [(1 - 0.15) ** b, (1 - 0.15) ** b, 0.3**b], rtol=1e-14)
    rkl = component_starvation_probability(w, b, 0.3, (0.5, 0.5), objective="reverse_kl")
    np.testing.assert_allclose(rkl, (1 - 0.7 * w - 0.3 * np.array([0.5, 0.5, 0.0])) ** b)
    with pytest.raises(ValueError, match="replay_mix"):
        component_starvation_probability(w, b, 0.3, (1.0,), objective="forward_kl")


def test_pairwise_misassignment_bound_bounds_the_grid_misassignment():
    bound = pairwise_misassignment_bound(K4)
    x, cell = grid(2, half_width=12.0, step=0.05)
    dens = []
    for j in range(4):
        diff = x - K4.means[j]
        cov = K4.cov_matrix(j)
        quad = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        dens.append(
            K4.weights[j] * np.exp(-0.5 * quad) / (2 * math.pi * math.sqrt(np.linalg.det(cov)))
        )
    for j in range(4):
        for k in range(j + 1, 4):
            overlap = np.sum(np.minimum(dens[j], dens[k])) * cell
            assert 0 < overlap <= bound[j, k]
    assert np.all(np.diag(bound) == 0)
    two = pairwise_misassignment_bound(TWO)[0, 1]
    alpha = TWO.old_weight
    assert two == pytest.approx(math.sqrt(alpha * (1 - alpha)) * TWO.bhattacharyya, rel=1e-14)
