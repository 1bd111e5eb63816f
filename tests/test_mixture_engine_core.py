"""The K-component Rust engine called directly (``_core.MixtureProblem``,
``_core.MixtureSimulator``, ``_core.mixture_estimate_gradient``; issue 20, the shared spec in
docs/design.md): population optima, starvation formulas, determinism, validation, the
one-step gradient against quadrature and the natural step's algebra."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import mixforget as mf
from mixforget import _core

CASES = [(3, 1), (3, 2), (4, 1), (4, 2)]


def _means(k: int, d: int) -> np.ndarray:
    """Well separated target means (8 units apart along the first axis)."""
    m = np.zeros((k, d))
    m[:, 0] = 8.0 * np.arange(k)
    if d > 1:
        m[:, 1] = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)
    return m


def _problem(
    objective: Any,
    k: int,
    d: int,
    *,
    target_weights: Any = None,
    start_weights: Any = None,
    start_shift: float = 0.5,
    new: tuple[int, ...] | None = None,
    rho: Any = None,
    lr: float = 0.1,
    lr_weight: float = 1.0,
    lr_means: float = 1.0,
    update: str = "sgd",
    **overrides: Any,
) -> _core.MixtureProblem:
    tw = np.full(k, 1.0 / k) if target_weights is None else np.asarray(target_weights, float)
    sw = np.full(k, 1.0 / k) if start_weights is None else np.asarray(start_weights, float)
    new = (k - 1,) if new is None else new
    old = [j for j in range(k) if j not in new]
    if rho is None:
        rho = tw[old] / tw[old].sum()
    cov = np.eye(d)
    fields: dict[str, Any] = dict(
        target_weights=tw,
        target_means=_means(k, d),
        target_covs=[cov] * k,
        model_covs=[cov] * k,
        start_weights=sw,
        start_means=_means(k, d) + start_shift,
        objective=objective,
        new_components=list(new),
        replay_mix=np.asarray(rho, float),
        lr=lr,
        lr_weight=lr_weight,
        lr_means=lr_means,
        update=update,
    )
    fields.update(overrides)
    return _core.MixtureProblem(**fields)


def _final(problem: _core.MixtureProblem, batch: int, reps: int, steps: int, key=(1, 2)):
    sim = _core.MixtureSimulator(problem, batch, reps, key, 2)
    chunk = sim.advance(steps, steps)
    assert not sim.diverged().any()
    return chunk.weights[:, -1], chunk.means[:, -1], chunk.starved[:, -1]


def _assert_mean_near(samples: np.ndarray, expected: np.ndarray, allowance: float) -> None:
    """Replicate mean within 5 standard errors (plus a deterministic bias allowance)."""
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - expected) <= 5 * se + allowance), (mean, expected, se)


# -- (a) ForwardKL with replay: the population optimum ------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("k", "d"), CASES)
def test_forward_kl_with_replay_reaches_its_population_optimum(k: int, d: int) -> None:
    lam, lr, batch = 0.3, 0.1, 64
    tw = np.array([0.3, 0.3, 0.4]) if k == 3 else np.array([0.2, 0.2, 0.3, 0.3])
    new = (k - 1,) if k == 3 else (2, 3)
    rho = np.array([0.4, 0.6]) if k == 3 else np.array([0.25, 0.75])
    old = [j for j in range(k) if j not in new]
    optimum = np.empty(k)
    optimum[old] = lam * rho
    optimum[list(new)] = (1 - lam) * tw[list(new)] / tw[list(new)].sum()
    p = _problem(mf.ForwardKL(replay=lam), k, d, target_weights=tw, new=new, rho=rho, lr=lr)
    # 2500 steps: the slowest direction of the logits contracts by ≥ 0.1·0.034 per step
    # (smallest eigenvalue of diag(w') − w'w'ᵀ at the optimum), so the start is forgotten to
    # ≈ e^-8; the stationary spread of η is ≈ lr/(2B) per direction, whose curvature bias on
    # E[w_j] is below lr/(4B) = 4e-4, the allowance (5 SE is ≈ 1e-3).
    weights, means, _ = _final(p, batch, 200, 2500)
    _assert_mean_near(weights, optimum, lr / (4 * batch))
    _assert_mean_near(means.reshape(200, -1), _means(k, d).ravel(), 0.01)


def test_forward_kl_without_replay_forgets_the_old_mass() -> None:
    p = _problem(mf.ForwardKL(), 3, 1, lr=0.3)
    weights, _, starved = _final(p, 32, 20, 400)
    assert np.all(weights[:, :2] < 0.05)
    assert np.all(starved[:, :2] == 400) and np.all(starved[:, 2] == 0)


# -- (b) ReverseKL from near the target ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("k", "d"), CASES)
def test_reverse_kl_from_near_the_target_converges_to_it(k: int, d: int) -> None:
    tw = np.linspace(1.0, 2.0, k)
    tw /= tw.sum()
    start = 0.8 * tw + 0.2 / k
    p = _problem(
        mf.ReverseKL(replay=0.2),
        k,
        d,
        target_weights=tw,
        start_weights=start,
        start_shift=0.3,
        lr=0.05,
    )
    weights, means, _ = _final(p, 64, 100, 1500)
    _assert_mean_near(weights, tw, 0.01)
    _assert_mean_near(means.reshape(100, -1), _means(k, d).ravel(), 0.03)
    # closer than at the start
    start_gap = np.abs(start - tw).max()
    assert np.abs(weights.mean(axis=0) - tw).max() < start_gap / 3


# -- (c) per-component starvation at the start --------------------------------------------


def _starvation_case(objective: Any, k: int, batch: int, lam: float, slots: str):
    tw = np.array([0.1, 0.2, 0.3, 0.4])[:k] if k == 4 else np.array([0.15, 0.35, 0.5])
    sw = np.array([0.4, 0.3, 0.2, 0.1])[:k] if k == 4 else np.array([0.2, 0.2, 0.6])
    new = (k - 1,)
    old = list(range(k - 1))
    rho = tw[old] / tw[old].sum()
    p = _problem(
        objective,
        k,
        1,
        target_weights=tw,
        start_weights=sw,
        new=new,
        rho=rho,
        lr_weight=0.0,
        lr_means=0.0,
    )
    on_policy = isinstance(objective, mf.ReverseKL)
    source = sw if on_policy else np.where(np.isin(np.arange(k), new), tw, 0.0) / tw[-1]
    replay = np.zeros(k)
    replay[old] = rho
    if slots == "bernoulli":
        prob = (1 - ((1 - lam) * source + lam * replay)) ** batch
    else:
        n = round(lam * batch)
        prob = (1 - source) ** (batch - n) * (1 - replay) ** n
    return p, prob


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize(
    ("objective", "lam", "slots"),
    [
        (mf.ReverseKL(), 0.0, "bernoulli"),
        (mf.ReverseKL(replay=0.25), 0.25, "bernoulli"),
        (mf.ForwardKL(replay=0.25), 0.25, "bernoulli"),
        (mf.ForwardKL(replay=0.25, replay_slots="stratified"), 0.25, "stratified"),
    ],
)
def test_starvation_frequencies_match_the_formulas(objective, lam, slots, k) -> None:
    batch, reps, steps = 8, 2000, 3
    p, prob = _starvation_case(objective, k, batch, lam, slots)
    sim = _core.MixtureSimulator(p, batch, reps, (5, 6), 2)
    starved = sim.advance(steps, steps).starved[:, -1]  # frozen parameters: 6000 batches
    n = reps * steps
    freq = starved.sum(axis=0) / n
    sigma = np.sqrt(prob * (1 - prob) / n)
    assert np.all(np.abs(freq - prob) <= 5 * sigma + 1e-12), (freq, prob, sigma)


# -- (d) determinism -----------------------------------------------------------------------


@pytest.mark.parametrize("objective", [mf.ReverseKL(replay=0.3), mf.ForwardKL(replay=0.2)])
def test_same_key_gives_the_same_bits_for_any_thread_count(objective) -> None:
    p = _problem(objective, 4, 2)

    def run(threads: int):
        sim = _core.MixtureSimulator(p, 16, 6, (9, 9), threads)
        a, b = sim.advance(7, 3), sim.advance(13, 3)
        return [
            np.concatenate([getattr(a, f), getattr(b, f)], axis=1)
            for f in ("weights", "means", "starved")
        ] + [sim.diverged()]

    one, two = run(1), run(2)
    for x, y in zip(one, two):
        assert x.tobytes() == y.tobytes()
    assert one[0].shape == (6, 2 + 4, 4) and one[1].shape == (6, 6, 4, 2)
    assert one[2].dtype == np.int64
    study1 = _core.mixture_estimate_gradient(p, 16, 5, (3, 4), 1)
    study2 = _core.mixture_estimate_gradient(p, 16, 5, (3, 4), 2)
    g1, starved, old_count = study1
    assert g1.shape == (5, 3 + 8) and starved.shape == (5, 4) and old_count.shape == (5,)
    for x, y in zip(study1, study2):
        assert x.tobytes() == y.tobytes()
    # the study's batch is the simulator's first batch: same starved flags
    first = _core.MixtureSimulator(p, 16, 5, (3, 4), 1).advance(1, 1)
    np.testing.assert_array_equal(starved, first.starved[:, 0] == 1)


# -- (e) validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (dict(start_weights=np.full(4, 0.25)), "start_weights"),
        (dict(start_means=np.zeros((4, 1))), "start_means"),
        (dict(start_means=np.zeros((3, 2))), "start_means"),
        (dict(model_covs=[np.eye(1)] * 2), "model_covs"),
        (dict(target_covs=[np.eye(2)] * 3), "target_covs"),
        (dict(new_components=[3]), "new_components"),
        (dict(new_components=[-1]), "new_components"),
        (dict(new_components=[]), "new_components"),
        (dict(new_components=[0, 1, 2]), "new_components"),
        (dict(new_components=[2, 1]), "new_components"),
        (dict(new_components=[1, 1]), "new_components"),
        (dict(replay_mix=np.array([0.5, 0.6])), "replay_mix"),
        (dict(replay_mix=np.array([1.0])), "replay_mix"),
        (dict(replay_mix=np.array([1.5, -0.5])), "replay_mix"),
        (dict(target_weights=np.array([0.5, 0.5, 0.5])), "target_weights"),
        (dict(start_weights=np.array([0.0, 0.5, 0.5])), "start_weights"),
        (dict(lr=0.0), "lr"),
        (dict(lr_means=-1.0), "lr_means"),
        (dict(update="adam"), "update"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_argument(overrides, name) -> None:
    with pytest.raises(ValueError, match=name):
        _problem(mf.ForwardKL(replay=0.2), 3, 1, **overrides)


def test_other_objectives_are_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match=r"SDFT.*ReverseKL and KLRegular"):
        _problem(mf.SDFT(), 3, 1)
    p = _problem(mf.ForwardKL(), 3, 1)
    with pytest.raises(ValueError, match="batch_size"):
        _core.MixtureSimulator(p, 0, 3, (1, 1), 1)
    with pytest.raises(ValueError, match="steps"):
        _core.MixtureSimulator(p, 4, 3, (1, 1), 1).advance(0, 1)


# -- (f) the one-step gradient against quadrature ------------------------------------------


def _grid(means: np.ndarray, d: int):
    """Quadrature nodes and weights covering every component to ±9 sd."""
    axes = []
    for i in range(d):
        lo, hi = means[:, i].min() - 9.0, means[:, i].max() + 9.0
        n = 20001 if d == 1 else 501
        axes.append(np.linspace(lo, hi, n))
    mesh = np.meshgrid(*axes, indexing="ij")
    x = np.stack([m.ravel() for m in mesh], axis=1)
    cell = np.prod([a[1] - a[0] for a in axes])
    return x, cell


def _log_parts(x: np.ndarray, weights: np.ndarray, means: np.ndarray) -> np.ndarray:
    """(n, K) log w_j φ(x; μ_j, I)."""
    d = x.shape[1]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(axis=2)
    return np.log(weights) - 0.5 * sq - 0.5 * d * np.log(2 * np.pi)


def _lse(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]


def _exact_gradient(kind: str, lam, tw, sw, start_means, new, rho, d: int) -> np.ndarray:
    k = len(tw)
    target_means = _means(k, d)
    x, cell = _grid(np.vstack([target_means, start_means]), d)
    model = _log_parts(x, sw, start_means)
    log_q = _lse(model)
    r = np.exp(model - log_q[:, None])
    score = np.concatenate(
        [r[:, : k - 1] - sw[: k - 1]] + [r[:, [j]] * (x - start_means[j]) for j in range(k)],
        axis=1,
    )
    target = _log_parts(x, tw, target_means)
    if kind == "forward":
        old = [j for j in range(k) if j not in new]
        new_w = np.zeros(k)
        new_w[list(new)] = tw[list(new)] / tw[list(new)].sum()
        old_w = np.zeros(k)
        old_w[old] = rho
        dens = np.exp(target - np.log(tw)) @ ((1 - lam) * new_w + lam * old_w)
        return -(dens[:, None] * score).sum(axis=0) * cell
    log_p = _lse(target)
    integrand = np.exp(log_q) * (log_q - log_p)
    return (integrand[:, None] * score).sum(axis=0) * cell


@pytest.mark.parametrize(("k", "d"), CASES)
@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_one_step_gradient_matches_quadrature(kind: str, k: int, d: int) -> None:
    lam = 0.3
    tw = np.linspace(1.0, 2.0, k)
    tw /= tw.sum()
    sw = np.linspace(2.0, 1.0, k)
    sw /= sw.sum()
    new = (k - 1,)
    rho = np.linspace(1.0, 2.0, k - 1)
    rho /= rho.sum()
    objective = mf.ForwardKL(replay=lam) if kind == "forward" else mf.ReverseKL(replay=lam)
    p = _problem(
        objective, k, d, target_weights=tw, start_weights=sw, start_shift=0.7, new=new, rho=rho
    )
    reps = 4000
    g = _core.mixture_estimate_gradient(p, 32, reps, (11, 12), 2)[0]
    exact = _exact_gradient(kind, lam, tw, sw, _means(k, d) + 0.7, new, rho, d)
    _assert_mean_near(g, exact, 1e-6)


# -- (g) the natural step -------------------------------------------------------------------


def _logits(w: np.ndarray) -> np.ndarray:
    return np.log(w[..., :-1]) - np.log(w[..., -1:])


@pytest.mark.parametrize("k", [2, 3])
def test_natural_step_preconditions_with_the_complete_data_fisher(k: int) -> None:
    d, lr, key = 2, 0.01, (4, 2)
    sw = np.array([0.3, 0.7]) if k == 2 else np.array([0.2, 0.3, 0.5])
    kw = dict(start_weights=sw, lr=lr)
    obj = mf.ReverseKL(replay=0.2)
    sgd = _problem(obj, k, d, **kw)
    natural = _problem(obj, k, d, update="natural", **kw)
    g = _core.mixture_estimate_gradient(sgd, 16, 8, key, 1)[0]

    def first_step(p):
        c = _core.MixtureSimulator(p, 16, 8, key, 1).advance(1, 1)
        return _logits(c.weights[:, 0]), c.means[:, 0]

    (eta_s, mu_s), (eta_n, mu_n) = first_step(sgd), first_step(natural)
    eta0, mu0 = _logits(sw), _means(k, d) + 0.5
    step_s, step_n = eta0 - eta_s, eta0 - eta_n
    np.testing.assert_allclose(step_s, lr * g[:, : k - 1], rtol=1e-8, atol=1e-13)
    if k == 2:
        alpha = sw[0]
        np.testing.assert_allclose(step_n, step_s / (alpha * (1 - alpha)), rtol=1e-8, atol=1e-13)
    else:
        free = sw[:-1]
        fisher = np.diag(free) - np.outer(free, free)
        np.testing.assert_allclose(
            step_n, np.linalg.solve(fisher, step_s.T).T, rtol=1e-8, atol=1e-13
        )
    # means: the sgd step divided by w_j (times Σ_j = I)
    np.testing.assert_allclose(mu0 - mu_n, (mu0 - mu_s) / sw[None, :, None], rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(
        mu0 - mu_s, lr * g[:, k - 1 :].reshape(8, k, d), rtol=1e-8, atol=1e-13
    )
