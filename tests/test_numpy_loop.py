"""The specialised NumPy loop of the benchmarks (mixforget.bench.numpy_loop; numpy_loop_w1 is
its d = 1 form) computes the same estimator as mixforget.simulate: after a few steps the old
weight, the projections of both means on the direction u = (1, …, 1)/√d of the problem and the
size of their part orthogonal to u agree in distribution (means and variances within 5
standard errors, fixed seeds) at d = 1 (W1) and d = 32 (W2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixforget as mf
from mixforget import bench as mb

B, T = 16, 40
REPLICATES = {1: 2000, 32: 1000}


def _mean_and_variance_agree(ours: np.ndarray, theirs: np.ndarray) -> None:
    se_mean = math.sqrt(ours.var() / ours.size + theirs.var() / theirs.size)
    assert abs(ours.mean() - theirs.mean()) <= 5 * se_mean

    def var_se(v: np.ndarray) -> float:
        c = v - v.mean()
        return math.sqrt(((c**4).mean() - v.var() ** 2) / v.size)

    se_var = math.hypot(var_se(ours), var_se(theirs))
    assert abs(ours.var() - theirs.var()) <= 5 * se_var


@pytest.fixture(scope="module", params=[1, 32], ids=["W1", "W2"])
def both(request):
    dim = request.param
    r = REPLICATES[dim]
    target, start = mb.default_problem(dim)
    ours = mb.numpy_loop(r, T, B, dim=dim, seed=1)
    theirs = mf.simulate(
        target,
        start,
        mf.ReverseKL(),
        steps=T,
        batch_size=B,
        lr=0.05,
        replicates=r,
        record_every=10,
        rng=0,
    )
    return dim, ours, theirs


def test_shapes_match_simulate(both):
    dim, ours, theirs = both
    r = REPLICATES[dim]
    assert ours["old_weight"].shape == theirs.old_weight.shape == (r, T // 10 + 1)
    assert ours["old_mean"].shape == ours["new_mean"].shape == theirs.old_mean.shape
    assert ours["old_mean"].shape == (r, T // 10 + 1, dim)
    assert ours["starved"].shape == (r, T // 10 + 1) and ours["diverged"].shape == (r,)
    assert ours["starved"].dtype == np.int64 and ours["diverged"].dtype == bool


def test_final_weight_and_means_agree_in_distribution(both):
    dim, ours, theirs = both
    assert not ours["diverged"].any() and not theirs.diverged.any()
    u = np.ones(dim) / math.sqrt(dim)

    def summaries(weight, old_mean, new_mean):
        out = {"old_weight": weight[:, -1]}
        for name, mean in (("old_mean", old_mean[:, -1]), ("new_mean", new_mean[:, -1])):
            along = mean @ u
            out[name + " along u"] = along
            if dim > 1:  # the part off u: driven by the normals' other coordinates only
                out[name + " off u"] = np.linalg.norm(mean - np.outer(along, u), axis=1)
        return out

    mine = summaries(ours["old_weight"], ours["old_mean"], ours["new_mean"])
    ref = summaries(theirs.old_weight, theirs.old_mean, theirs.new_mean)
    for name, value in mine.items():
        assert np.std(value) > 0, name  # the parameters moved
        _mean_and_variance_agree(value, ref[name])


def test_records_start_at_the_start_and_are_reproducible(both):
    dim, ours, _ = both
    _, start = mb.default_problem(dim)
    np.testing.assert_allclose(ours["old_weight"][:, 0], start.old_weight)
    r = REPLICATES[dim]
    np.testing.assert_allclose(ours["new_mean"][:, 0], np.broadcast_to(start.new_mean, (r, dim)))
    np.testing.assert_array_equal(ours["starved"][:, 0], 0)
    again = mb.numpy_loop(8, 10, 4, dim=dim, seed=3)
    np.testing.assert_array_equal(
        again["new_mean"], mb.numpy_loop(8, 10, 4, dim=dim, seed=3)["new_mean"]
    )


def test_w1_form_records_the_single_coordinate():
    one = mb.numpy_loop_w1(8, 10, 4, seed=3)
    general = mb.numpy_loop(8, 10, 4, dim=1, seed=3)
    assert one["old_mean"].shape == (8, 2)
    np.testing.assert_array_equal(one["old_mean"], general["old_mean"][:, :, 0])
    np.testing.assert_array_equal(one["old_weight"], general["old_weight"])


def test_a_diverging_replicate_is_frozen():
    # lr = 1e308: the first update overflows (frozen at the start) or crosses the runaway
    # bound (frozen where it crossed); either way the records stop changing and stay finite
    rec = mb.numpy_loop(4, 10, 8, dim=3, lr=1e308, record_every=1, seed=0)
    assert rec["diverged"].all()
    for name in ("old_weight", "old_mean", "new_mean"):
        assert np.isfinite(rec[name]).all(), name
        np.testing.assert_array_equal(rec[name][:, 1:], rec[name][:, 1:2].repeat(10, axis=1))
    assert (rec["old_mean"][:, 1] != rec["old_mean"][:, 0]).any()  # the first step moved


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 1}, "batch_size"),
        ({"replicates": 0}, "replicates"),
        ({"steps": 0}, "steps"),
        ({"dim": 0}, "dim"),
        ({"record_every": 3}, "record_every"),
        ({"lr": 0.0}, "lr"),
        ({"lr": math.nan}, "lr"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"replicates": 4, "steps": 10, "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        mb.numpy_loop(**args)
    if "dim" not in kwargs:
        with pytest.raises(ValueError, match=match):
            mb.numpy_loop_w1(**args)
