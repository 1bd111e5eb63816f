"""The specialised NumPy W1 loop of the benchmarks (mixforget.bench.numpy_loop_w1) computes
the same estimator as mixforget.simulate: final weights and means agree in distribution
(means and variances within 5 standard errors) at a small size."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixforget as mf
from mixforget import bench as mb

R, B, T = 2000, 16, 40


def _mean_and_variance_agree(ours: np.ndarray, theirs: np.ndarray) -> None:
    se_mean = math.sqrt(ours.var() / ours.size + theirs.var() / theirs.size)
    assert abs(ours.mean() - theirs.mean()) <= 5 * se_mean

    def var_se(v: np.ndarray) -> float:
        c = v - v.mean()
        return math.sqrt(((c**4).mean() - v.var() ** 2) / v.size)

    se_var = math.hypot(var_se(ours), var_se(theirs))
    assert abs(ours.var() - theirs.var()) <= 5 * se_var


@pytest.fixture(scope="module")
def both():
    target, start = mb.default_problem(1)
    ours = mb.numpy_loop_w1(R, T, B, seed=1)
    theirs = mf.simulate(
        target,
        start,
        mf.ReverseKL(),
        steps=T,
        batch_size=B,
        lr=0.05,
        replicates=R,
        record_every=10,
        rng=0,
    )
    return ours, theirs


def test_final_weight_and_means_agree_in_distribution(both):
    ours, theirs = both
    assert ours["old_weight"].shape == theirs.old_weight.shape
    assert not ours["diverged"].any()
    for name, theirs_final in (
        ("old_weight", theirs.old_weight[:, -1]),
        ("old_mean", theirs.old_mean[:, -1, 0]),
        ("new_mean", theirs.new_mean[:, -1, 0]),
    ):
        ours_final = ours[name][:, -1]
        assert np.std(ours_final) > 0  # the parameters moved
        _mean_and_variance_agree(ours_final, theirs_final)


def test_records_start_at_the_start_and_are_reproducible(both):
    ours, _ = both
    _, start = mb.default_problem(1)
    np.testing.assert_allclose(ours["old_weight"][:, 0], start.old_weight)
    np.testing.assert_allclose(ours["new_mean"][:, 0], start.new_mean[0])
    again = mb.numpy_loop_w1(8, 10, 4, seed=3)
    np.testing.assert_array_equal(again["new_mean"], mb.numpy_loop_w1(8, 10, 4, seed=3)["new_mean"])


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="batch_size"):
        mb.numpy_loop_w1(4, 10, 1)
    with pytest.raises(ValueError, match="record_every"):
        mb.numpy_loop_w1(4, 10, 4, record_every=3)
