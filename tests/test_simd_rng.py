"""The vectorised generator (rust/simd_rng.rs: 8 Xoshiro256++ lanes per stream, a Ziggurat
whose fast path runs on four lanes at a time) through its _core hooks: determinism, moments,
Kolmogorov–Smirnov against Φ, tail frequencies, lane and stream independence.

Tolerances are 5 standard errors (or the 5σ two-sided p-value, 5.7e-7, for KS). Tail counts
are Poisson-like: |count − λ| ≤ 5√λ with λ = n·P(|z| > t). At n = 10⁸: λ = 6334 (4σ), 57 (5σ)
and 0.20 (6σ). Measuring P(|z| > 6) = 1.97e-9 itself to ±50 % at 5 SE needs λ ≥ 100, i.e.
n ≈ 5·10¹⁰ normals (about a minute on 16 cores): beyond a unit test, so here the 6σ count is
only bounded above, and the largest |z| must stay below 8 (P(max > 8) ≈ 1.2e-7 at n = 10⁸).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixforget import _core

scipy_stats = pytest.importorskip("scipy.stats")

LANES = 8
KEY = (0x5EED_0001, 0x5EED_0002)
P_5_SIGMA = 5.733e-7  # two-sided tail probability of 5 standard deviations


def _two_sided_tail(t: float) -> float:
    return math.erfc(t / math.sqrt(2.0))


def test_same_key_and_index_give_the_same_normals():
    a = _core.lane_normals(10_001, KEY, 7)
    b = _core.lane_normals(10_001, KEY, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _core.lane_normals(10_001, KEY, 8))
    assert not np.array_equal(a, _core.lane_normals(10_001, (KEY[0], KEY[1] + 1), 7))
    # a shorter fill of the same stream starts with the same first chunk (256 positions)
    np.testing.assert_array_equal(_core.lane_normals(256, KEY, 7), a[:256])


def test_chunked_draws_are_the_same_on_any_thread_count():
    n = 100_003  # 13 chunks of 8192, one stream each
    thresholds = [0.5, 1.0, 2.0]
    assert _core.lane_normal_tail_counts(n, KEY, thresholds, 1) == (
        _core.lane_normal_tail_counts(n, KEY, thresholds, 2)
    )
    one = _core.lane_normal_floor(n, KEY, 1)  # a sum: only its rounding may differ
    assert one == pytest.approx(_core.lane_normal_floor(n, KEY, 2), abs=1e-9)
    assert abs(one) < 5 * math.sqrt(n)


def test_moments_within_five_standard_errors():
    n = 2_000_000
    z = _core.lane_normals(n, KEY, 0)
    mean = z.mean()
    c = z - mean
    var = (c**2).mean()
    skew = (c**3).mean() / var**1.5
    excess_kurtosis = (c**4).mean() / var**2 - 3.0
    assert abs(mean) < 5 / math.sqrt(n)
    assert abs(var - 1.0) < 5 * math.sqrt(2.0 / n)
    assert abs(skew) < 5 * math.sqrt(6.0 / n)
    assert abs(excess_kurtosis) < 5 * math.sqrt(24.0 / n)


def test_kolmogorov_smirnov_against_the_standard_normal():
    z = _core.lane_normals(1_000_000, KEY, 1)
    assert scipy_stats.kstest(z, "norm").pvalue > P_5_SIGMA


def test_tail_frequencies_to_six_sigma():
    n = 100_000_000
    thresholds = [3.0, 4.0, 5.0, 6.0]
    counts, max_abs = _core.lane_normal_tail_counts(n, KEY, thresholds, 0)
    for t, count in zip(thresholds, counts):
        lam = n * _two_sided_tail(t)
        assert abs(count - lam) <= 5 * math.sqrt(lam) + 1, (t, count, lam)
    assert 5.0 < max_abs < 8.0


def test_lanes_are_uncorrelated():
    # position p of a fill comes from lane p mod 8 (Ziggurat rejections redraw in their lane)
    m = 250_000
    z = _core.lane_normals(LANES * m, KEY, 2).reshape(m, LANES)
    se = 5 / math.sqrt(m)
    for transform in (lambda v: v, np.square):
        corr = np.corrcoef(transform(z), rowvar=False)
        off_diagonal = corr[~np.eye(LANES, dtype=bool)]
        assert np.all(np.abs(off_diagonal) < se), np.abs(off_diagonal).max()
    # consecutive draws of one lane
    for j in range(LANES):
        assert abs(np.corrcoef(z[:-1, j], z[1:, j])[0, 1]) < se


def test_consecutive_streams_are_uncorrelated():
    n = 500_000
    se = 5 / math.sqrt(n)
    streams = [_core.lane_normals(n, KEY, i) for i in range(4)]
    for a, b in zip(streams, streams[1:]):
        assert abs(np.corrcoef(a, b)[0, 1]) < se
        assert abs(np.corrcoef(a**2, b**2)[0, 1]) < se
