"""Property-based checks (hypothesis): the kernels agree with their NumPy twins and keep their
invariants on arbitrary valid mixtures, not only on the hand-picked cases."""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import mixforget as mf  # noqa: E402
from mixforget import kernels, reference  # noqa: E402


@st.composite
def mixtures(draw):
    k = draw(st.integers(1, 4))
    d = draw(st.integers(1, 6))
    raw = np.array(draw(st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k)))
    weights = raw / raw.sum()
    if k == 1:
        weights = np.array([1.0])
    means = np.array(draw(st.lists(st.floats(-20, 20), min_size=k * d, max_size=k * d))).reshape(
        k, d
    )
    kind = draw(st.sampled_from(["scalar", "diag"]))
    if kind == "scalar":
        covs = [draw(st.floats(0.05, 10.0)) for _ in range(k)]
    else:
        covs = [
            np.array(draw(st.lists(st.floats(0.05, 10.0), min_size=d, max_size=d)))
            for _ in range(k)
        ]
    scale = draw(st.sampled_from([1.0, 30.0, 1e3]))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).normal(scale=scale, size=(25, d))
    return weights, means, covs, x


@settings(max_examples=150, deadline=None)
@given(mixtures())
def test_responsibilities_agree_with_twin_and_sum_to_one(case):
    weights, means, covs, x = case
    fast = kernels.responsibilities(x, weights, means, covs)
    assert np.all(np.isfinite(fast)) and np.all(fast >= 0)
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(
        fast, reference.responsibilities(x, weights, means, covs), atol=1e-12
    )


@settings(max_examples=100, deadline=None)
@given(mixtures())
def test_logpdf_agrees_with_twin(case):
    weights, means, covs, x = case
    fast = kernels.mixture_logpdf(x, weights, means, covs)
    slow = reference.mixture_logpdf(x, weights, means, covs)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.01, 0.99),
    st.integers(1, 200),
    st.floats(0.0, 0.95),
    st.sampled_from(["bernoulli", "stratified"]),
    st.integers(0, 2**32 - 1),
)
def test_starvation_counts_stay_in_range(alpha, batch_size, replay, slots, seed):
    counts = kernels.starvation_counts(
        alpha, batch_size, 2000, replay=replay, slots=slots, rng=seed
    )
    assert counts.dtype == np.int64 and counts.min() >= 0 and counts.max() <= batch_size
    if slots == "stratified":
        assert counts.min() >= int(mf.theory.stratified_replay_count(replay, batch_size))


@settings(max_examples=60, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(-5, 5), st.floats(-5, 5), st.floats(0.1, 4.0))
def test_two_mode_round_trips(alpha, old, new, cov):
    model = mf.TwoMode(old_mean=[old], new_mean=[new], old_weight=alpha, cov=cov)
    assert model.replace() == model
    assert mf.TwoMode(**model.to_dict()) == model
    assert 0.0 < model.bhattacharyya <= 1.0
