"""Issue 2: the kernels against their NumPy twins, sampling statistics, starvation,
determinism across thread counts, and bad input."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import mixforget as mf
from conftest import within_sigma
from mixforget import kernels, reference
from mixforget._rng import resolve_rng, seed_from_record, seed_record


def spd(d, rng, cond=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q @ np.diag(np.linspace(1.0, cond, d)) @ q.T


def mixture_cases():
    rng = np.random.default_rng(1)
    cases = []
    for d in (1, 4, 32):
        for k in (1, 2, 3):
            weights = np.full(k, 1.0 / k) if k != 2 else np.array([0.3, 0.7])
            means = rng.normal(scale=3.0, size=(k, d))
            cov_forms = {
                "scalar": 1.7,
                "diag": [rng.uniform(0.5, 2.0, size=d) for _ in range(k)],
                "full": [spd(d, rng)] * k,
                "unequal": [spd(d, rng) if i % 2 else 0.5 + i for i in range(k)],
            }
            for name, covs in cov_forms.items():
                cases.append(pytest.param(weights, means, covs, id=f"d{d}-K{k}-{name}"))
    return cases


@pytest.mark.parametrize("weights,means,covs", mixture_cases())
def test_responsibilities_match_numpy_twin(weights, means, covs):
    d = means.shape[1]
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [rng.normal(scale=4.0, size=(500, d)), 1e3 * rng.normal(size=(20, d))]
    )  # tails
    fast = kernels.responsibilities(x, weights, means, covs)
    slow = reference.responsibilities(x, weights, means, covs)
    assert fast.shape == (x.shape[0], len(weights))
    assert np.all(np.isfinite(fast))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        kernels.mixture_logpdf(x[:500], weights, means, covs),
        reference.mixture_logpdf(x[:500], weights, means, covs),
        rtol=1e-12,
        atol=1e-10,
    )


def test_two_mode_fast_path_far_tails(target):
    x = np.array([[-1e3], [1e3], [0.25], [1e300**0.5]])
    r = target.responsibilities(x)
    assert np.all(np.isfinite(r))
    assert r[0, 0] == pytest.approx(1.0) and r[1, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-12)


def test_twomode_logpdf_matches_scipy(target):
    x = np.linspace(-8, 8, 41)
    expected = np.log(0.75 * stats.norm.pdf(x, -3, 1) + 0.25 * stats.norm.pdf(x, 3.5, 1))
    np.testing.assert_allclose(target.logpdf(x), expected, rtol=1e-12)


@pytest.mark.parametrize("d", [1, 3])
def test_sampling_moments_labels_and_ks(d):
    rng = np.random.default_rng(3)
    weights = np.array([0.2, 0.5, 0.3])
    means = rng.normal(scale=2.0, size=(3, d))
    covs = [0.5, np.linspace(0.5, 2.0, d), spd(d, rng, cond=3.0)]
    n = 200_000
    x, labels = kernels.sample_mixture(n, weights, means, covs, rng=11)
    assert x.shape == (n, d) and labels.dtype == np.int64
    freq = np.bincount(labels, minlength=3) / n
    assert within_sigma(freq, weights, np.sqrt(weights * (1 - weights) / n))
    for k in range(3):
        xk = x[labels == k]
        cov = kernels.mixture_args([1.0], means[k : k + 1], [covs[k]])[2][0]
        full = cov * np.eye(d) if cov.ndim == 0 else (np.diag(cov) if cov.ndim == 1 else cov)
        # means within 5 standard errors
        assert within_sigma(xk.mean(axis=0), means[k], np.sqrt(np.diag(full) / len(xk)))
        # whitened first coordinate is standard normal: KS test
        white = np.linalg.solve(np.linalg.cholesky(full), (xk - means[k]).T).T
        assert stats.kstest(white[:, 0], "norm").pvalue > 1e-4
        # variance within 5 standard errors (normal: se of variance = var*sqrt(2/n))
        assert within_sigma(white.var(axis=0), 1.0, np.sqrt(2.0 / len(xk)))


@pytest.mark.parametrize(
    "alpha,b,lam,slots",
    [
        (0.05, 32, 0.0, "bernoulli"),
        (0.2, 8, 0.0, "bernoulli"),
        (0.05, 32, 0.25, "bernoulli"),
        (0.1, 4, 0.3, "bernoulli"),
        (0.05, 16, 0.0, "stratified"),
        (0.1, 8, 0.25, "stratified"),
    ],
)
def test_starvation_frequency_matches_theory(alpha, b, lam, slots):
    n = 1_000_000
    counts = kernels.starvation_counts(alpha, b, n, replay=lam, slots=slots, rng=5)
    if slots == "stratified" and round(lam * b) >= 1:
        expected = 0.0
        assert counts.min() >= round(lam * b)
    else:
        expected = ((1 - lam) * (1 - alpha)) ** b
    freq = np.mean(counts == 0)
    assert within_sigma(freq, expected, np.sqrt(max(expected * (1 - expected), 1e-12) / n))
    # the mean count is B(λ + (1−λ)α) in every case
    p_old = lam + (1 - lam) * alpha
    assert within_sigma(counts.mean(), b * p_old, np.sqrt(b * p_old * (1 - p_old) / n) + 1e-9)


def test_check_values_of_math_section_7():
    assert pytest.approx(0.193711, abs=1e-6) == (1 - 0.05) ** 32
    assert pytest.approx(1.946e-5, rel=1e-3) == ((1 - 0.25) * (1 - 0.05)) ** 32


@pytest.mark.parametrize(
    "call",
    [
        lambda t, s: kernels.sample_mixture(
            50_000, [0.3, 0.7], [[0.0, 1.0], [2.0, 3.0]], 1.5, rng=s, threads=t
        ),
        lambda t, s: kernels.starvation_counts(0.1, 16, 100_000, replay=0.2, rng=s, threads=t),
        lambda t, s: kernels.responsibilities(
            np.linspace(-5, 5, 50_000), [0.3, 0.7], [[0.0], [2.0]], [1.0, 2.0], threads=t
        ),
    ],
)
def test_same_rng_same_numbers_for_any_thread_count(call):
    one = call(1, 42)
    two = call(2, 42)
    one_t = one if isinstance(one, tuple) else (one,)
    two_t = two if isinstance(two, tuple) else (two,)
    for a, b in zip(one_t, two_t):
        np.testing.assert_array_equal(a, b)


def test_different_rng_different_numbers():
    a, _ = kernels.sample_mixture(1000, [0.5, 0.5], [[0.0], [1.0]], 1.0, rng=1)
    b, _ = kernels.sample_mixture(1000, [0.5, 0.5], [[0.0], [1.0]], 1.0, rng=2)
    assert not np.array_equal(a, b)


def test_rng_forms_and_reproducible_entropy():
    args = ([0.5, 0.5], [[0.0], [1.0]], 1.0)
    x_int, _ = kernels.sample_mixture(100, *args, rng=7)
    x_seq, _ = kernels.sample_mixture(100, *args, rng=np.random.SeedSequence(7))
    np.testing.assert_array_equal(x_int, x_seq)
    gen = np.random.default_rng(3)
    x_gen, _ = kernels.sample_mixture(100, *args, rng=gen)
    x_gen2, _ = kernels.sample_mixture(100, *args, rng=gen)
    assert not np.array_equal(x_gen, x_gen2)  # the Generator advances
    seq = resolve_rng(None)
    again = seed_from_record(seed_record(seq))
    a, _ = kernels.sample_mixture(100, *args, rng=seq)
    b, _ = kernels.sample_mixture(100, *args, rng=again)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="rng"):
        kernels.sample_mixture(10, *args, rng="seed")
    with pytest.raises(ValueError, match="rng"):
        kernels.sample_mixture(10, *args, rng=-1)


def test_float32_and_strided_inputs_are_converted():
    x = np.linspace(-3, 3, 40).reshape(20, 2)
    means = np.array([[0.0, 0.0], [1.0, 1.0]])
    base = kernels.responsibilities(x, [0.4, 0.6], means, 1.0)
    np.testing.assert_allclose(
        kernels.responsibilities(x.astype(np.float32), [0.4, 0.6], means, 1.0),
        kernels.responsibilities(x.astype(np.float32).astype(np.float64), [0.4, 0.6], means, 1.0),
    )
    wide = np.zeros((20, 4))
    wide[:, ::2] = x
    np.testing.assert_array_equal(
        kernels.responsibilities(wide[:, ::2], [0.4, 0.6], means, 1.0), base
    )
    np.testing.assert_array_equal(
        kernels.responsibilities(np.asfortranarray(x), [0.4, 0.6], means, 1.0), base
    )


BAD_KERNEL_CALLS = [
    ("x", TypeError, lambda: kernels.responsibilities("abc", [0.5, 0.5], [[0.0], [1.0]], 1.0)),
    (
        "x",
        ValueError,
        lambda: kernels.responsibilities(np.zeros((3, 2)), [0.5, 0.5], [[0.0], [1.0]], 1.0),
    ),
    (
        "x",
        ValueError,
        lambda: kernels.responsibilities([np.nan, 1.0], [0.5, 0.5], [[0.0], [1.0]], 1.0),
    ),
    ("x", ValueError, lambda: kernels.responsibilities([np.inf], [0.5, 0.5], [[0.0], [1.0]], 1.0)),
    (
        "weights",
        ValueError,
        lambda: kernels.responsibilities([0.0], [1.2, -0.2], [[0.0], [1.0]], 1.0),
    ),
    (
        "weights",
        ValueError,
        lambda: kernels.responsibilities([0.0], [0.5, 0.6], [[0.0], [1.0]], 1.0),
    ),
    (
        "weights",
        ValueError,
        lambda: kernels.responsibilities([0.0], [0.0, 1.0], [[0.0], [1.0]], 1.0),
    ),
    (
        "means",
        ValueError,
        lambda: kernels.responsibilities([0.0], [0.5, 0.5], [[0.0], [1.0], [2.0]], 1.0),
    ),
    (
        "means",
        ValueError,
        lambda: kernels.responsibilities([0.0], [0.5, 0.5], [[0.0], [np.nan]], 1.0),
    ),
    (
        "covs",
        ValueError,
        lambda: kernels.responsibilities(
            [[0.0, 0.0]],
            [0.5, 0.5],
            [[0.0, 0.0], [1.0, 1.0]],
            [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]],
        ),
    ),
    (
        "covs",
        ValueError,
        lambda: kernels.responsibilities(
            [[0.0, 0.0]],
            [0.5, 0.5],
            [[0.0, 0.0], [1.0, 1.0]],
            [np.eye(2), [[1.0, 1.0], [1.0, 1.0]]],
        ),
    ),
    ("covs", ValueError, lambda: kernels.responsibilities([0.0], [0.5, 0.5], [[0.0], [1.0]], -1.0)),
    (
        "covs",
        ValueError,
        lambda: kernels.responsibilities([0.0], [0.5, 0.5], [[0.0], [1.0]], [1.0]),
    ),
    (
        "covs",
        ValueError,
        lambda: kernels.responsibilities(
            [[0.0, 0.0]], [0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0, 1.0]] * 2
        ),
    ),
    ("n", ValueError, lambda: kernels.sample_mixture(0, [0.5, 0.5], [[0.0], [1.0]], 1.0)),
    ("n", ValueError, lambda: kernels.sample_mixture(-5, [0.5, 0.5], [[0.0], [1.0]], 1.0)),
    ("n", TypeError, lambda: kernels.sample_mixture(2.5, [0.5, 0.5], [[0.0], [1.0]], 1.0)),
    ("old_weight", ValueError, lambda: kernels.starvation_counts(1.0, 8, 10)),
    ("old_weight", ValueError, lambda: kernels.starvation_counts(np.nan, 8, 10)),
    ("batch_size", ValueError, lambda: kernels.starvation_counts(0.1, 0, 10)),
    ("batches", ValueError, lambda: kernels.starvation_counts(0.1, 8, 0)),
    ("replay", ValueError, lambda: kernels.starvation_counts(0.1, 8, 10, replay=1.0)),
    ("replay", ValueError, lambda: kernels.starvation_counts(0.1, 8, 10, replay=-0.1)),
    ("slots", ValueError, lambda: kernels.starvation_counts(0.1, 8, 10, slots="random")),
    ("threads", ValueError, lambda: kernels.starvation_counts(0.1, 8, 10, threads=0)),
]


@pytest.mark.parametrize(
    "name,exc,call", BAD_KERNEL_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_KERNEL_CALLS)]
)
@pytest.mark.parametrize("module", ["rust", "numpy"])
def test_bad_input_names_the_argument(name, exc, call, module, monkeypatch):
    if module == "numpy":
        # the twin must reject the same input with the same exception type
        for fn in ("responsibilities", "sample_mixture", "starvation_counts"):
            monkeypatch.setattr(kernels, fn, getattr(reference, fn))
    with pytest.raises(exc, match=name):
        call()


BAD_TWOMODE = [
    ("old_weight", ValueError, dict(old_mean=[0.0], new_mean=[1.0], old_weight=1.0)),
    ("old_weight", ValueError, dict(old_mean=[0.0], new_mean=[1.0], old_weight=0.0)),
    ("old_weight", TypeError, dict(old_mean=[0.0], new_mean=[1.0], old_weight="half")),
    ("new_mean", ValueError, dict(old_mean=[0.0], new_mean=[1.0, 2.0], old_weight=0.5)),
    ("old_mean", ValueError, dict(old_mean=[np.nan], new_mean=[1.0], old_weight=0.5)),
    (
        "cov",
        ValueError,
        dict(
            old_mean=[0.0, 0.0], new_mean=[1.0, 2.0], old_weight=0.5, cov=[[1.0, 2.0], [2.0, 1.0]]
        ),
    ),
    ("cov", ValueError, dict(old_mean=[0.0], new_mean=[1.0], old_weight=0.5, cov=0.0)),
    ("cov", ValueError, dict(old_mean=[0.0], new_mean=[1.0], old_weight=0.5, cov=np.inf)),
    ("new_cov", ValueError, dict(old_mean=[0.0], new_mean=[1.0], old_weight=0.5, old_cov=1.0)),
]


@pytest.mark.parametrize("name,exc,kwargs", BAD_TWOMODE)
def test_twomode_validation(name, exc, kwargs):
    with pytest.raises(exc, match=name):
        mf.TwoMode(**kwargs)


def test_twomode_geometry_and_replace(target):
    assert target.dim == 1
    assert target.separation == pytest.approx(6.5)
    assert target.bhattacharyya == pytest.approx(np.exp(-(6.5**2) / 8))
    four = mf.TwoMode(old_mean=[0.0, 0.0], new_mean=[4.0, 0.0], old_weight=0.5, cov=1.0)
    assert four.bhattacharyya == pytest.approx(0.1353353, abs=1e-7)
    aniso = mf.TwoMode(old_mean=[0.0, 0.0], new_mean=[4.0, 2.0], old_weight=0.5, cov=[4.0, 1.0])
    assert aniso.separation == pytest.approx(np.sqrt(16 / 4 + 4 / 1))
    moved = target.replace(new_mean=[0.5])
    assert (
        moved.new_mean.tolist() == [0.5]
        and moved.old_weight == 0.75
        and target.new_mean.tolist() == [3.5]
    )
    with pytest.raises(AttributeError):
        target.old_weight = 0.3  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown"):
        target.replace(mean=[1.0])
    unequal = mf.TwoMode(old_mean=[0.0], new_mean=[2.0], old_weight=0.5, old_cov=1.0, new_cov=2.0)
    assert not unequal.equal_cov
    # general Bhattacharyya: 1/8 δ²/σ̄² + 1/2 ln(σ̄²/sqrt(σo² σn²))
    db = 0.125 * 4 / 1.5 + 0.5 * np.log(1.5 / np.sqrt(2.0))
    assert unequal.bhattacharyya == pytest.approx(np.exp(-db))
    _x, labels = target.sample(20_000, rng=1)
    assert abs(np.mean(labels == 0) - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 20_000)


@pytest.mark.slow
def test_stubs_match_the_extension():
    pytest.importorskip("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "mixforget._core"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_public_package_type_checks():
    pytest.importorskip("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "-p", "mixforget", "--ignore-missing-imports"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
