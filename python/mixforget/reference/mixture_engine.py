"""The NumPy twin of the K-component engine (docs: theory-k-components; the shared spec of
issue 20): finite-batch ForwardKL, ReverseKL and KLRegularizedRL training of K-component
mixtures, vectorised over replicates × batch, as a stepper of the engine's driver.

Parameters θ = (η ∈ R^{K−1}, μ_0 … μ_{K−1}), w = softmax(η, 0) (the last logit pinned at 0);
covariances fixed. Scores ∂ log q/∂η_j = r_j − w_j, ∂ log q/∂μ_j = r_j Σ_j⁻¹ (x − μ_j); the
flat order is [η_0 … η_{K−2}, μ_0, …, μ_{K−1}]. Every sample carries a component label (the
model component of an on-policy draw, the target component of a data or replay draw); a
batch is starved of component j when no label is j. It agrees with the Rust
``MixtureSimulator`` in distribution, not bit for bit (its random stream is NumPy's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .._defaults import RUNAWAY_DISTANCE, RUNAWAY_WEIGHT
from ..engine._driver import ChunkPolicy
from ..engine._mixture_plan import MixturePlan
from ..engine._mixture_records import MixtureRecords
from ..mixture import Mixture
from ..objectives import ForwardKL, KLRegularizedRL, ReverseKL
from .mixture_kl_rl import kl_rl_coefficients, kl_rl_kl_term, kl_rl_reward

__all__ = [
    "Components",
    "MixtureParams",
    "NumpyMixtureSimulation",
    "estimator_of",
    "flat_gradient",
    "kl_rl_values",
    "log_mixture",
    "natural_step",
    "precondition",
    "replay_importance_weight",
    "scores",
]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Components:
    """Fixed per-component covariance factors: ``chol`` (K, d, d) lower Cholesky factors,
    ``whiten`` (K, d, d) their inverses, ``precision`` (K, d, d) Σ⁻¹, ``logdet`` (K,)."""

    chol: np.ndarray
    whiten: np.ndarray
    precision: np.ndarray
    logdet: np.ndarray

    @classmethod
    def of(cls, mixture: Mixture) -> Components:
        covs = np.stack([mixture.cov_matrix(j) for j in range(mixture.n_components)])
        chol = np.linalg.cholesky(covs)
        whiten = np.linalg.inv(chol)
        precision = np.einsum("kji,kjl->kil", whiten, whiten)
        logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        return cls(chol, whiten, precision, logdet)

    def logpdf(self, x: np.ndarray, means: np.ndarray) -> np.ndarray:
        """(..., B, K) log φ_j(x_b) for points x (..., B, d) and means (..., K, d)."""
        diff = x[..., :, None, :] - means[..., None, :, :]
        z = np.einsum("kij,...kj->...ki", self.whiten, diff)
        d = x.shape[-1]
        return -0.5 * np.sum(z * z, axis=-1) - 0.5 * self.logdet - 0.5 * d * _LOG_2PI

    def draw(self, labels: np.ndarray, means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Points x ~ N(means[label], Σ_label): labels (R, B), means (R, K, d) → (R, B, d)."""
        d = means.shape[-1]
        eps = rng.standard_normal((*labels.shape, d))
        centre = np.take_along_axis(means, labels[..., None], axis=1)
        return centre + np.einsum("rbij,rbj->rbi", self.chol[labels], eps)


@dataclass(frozen=True)
class MixtureParams:
    """θ of R replicates: ``eta`` (R, K−1) free logits, ``means`` (R, K, d)."""

    eta: np.ndarray
    means: np.ndarray

    @classmethod
    def of(cls, model: Mixture, replicates: int) -> MixtureParams:
        logw = np.log(model.weights)
        eta = logw[:-1] - logw[-1]
        return cls(np.tile(eta, (replicates, 1)), np.tile(model.means, (replicates, 1, 1)))

    @property
    def weights(self) -> np.ndarray:
        """(R, K) softmax(η, 0), computed stably in float64."""
        full = np.concatenate([self.eta, np.zeros((self.eta.shape[0], 1))], axis=1)
        top = np.max(full, axis=1, keepdims=True)
        e = np.exp(full - top)
        return e / e.sum(axis=1, keepdims=True)

    def log_weights(self) -> np.ndarray:
        full = np.concatenate([self.eta, np.zeros((self.eta.shape[0], 1))], axis=1)
        top = np.max(full, axis=1, keepdims=True)
        return full - top - np.log(np.sum(np.exp(full - top), axis=1, keepdims=True))


def _logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def log_mixture(
    x: np.ndarray, comps: Components, means: np.ndarray, log_weights: np.ndarray
) -> np.ndarray:
    """(R, B) log Σ_j w_j φ_j(x) of a fixed mixture (means (K, d), log weights (K,))."""
    return _logsumexp(comps.logpdf(x, means) + log_weights)


def scores(
    x: np.ndarray, params: MixtureParams, comps: Components
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s_η (R, B, K−1), s_μ (R, B, K, d), log q (R, B)) of points x (R, B, d)."""
    joint = comps.logpdf(x, params.means) + params.log_weights()[:, None, :]
    log_q = _logsumexp(joint)
    resp = np.exp(joint - log_q[..., None])
    s_eta = resp[..., :-1] - params.weights[:, None, :-1]
    diff = x[..., :, None, :] - params.means[:, None, :, :]
    s_mu = resp[..., None] * np.einsum("kij,rbkj->rbki", comps.precision, diff)
    return s_eta, s_mu, log_q


def flat_gradient(g_eta: np.ndarray, g_mu: np.ndarray) -> np.ndarray:
    """(R, P) in the flat order [η_0 … η_{K−2}, μ_0, …, μ_{K−1}]."""
    return np.concatenate([g_eta, g_mu.reshape(g_mu.shape[0], -1)], axis=1)


def natural_step(
    g_eta: np.ndarray, g_mu: np.ndarray, weights: np.ndarray, comps: Components
) -> tuple[np.ndarray, np.ndarray]:
    """The complete-data natural gradient: F_η⁻¹ g_η with F_η = diag(w) − w wᵀ over the K−1
    free logits, and Σ_j g_μj / w_j for each mean."""
    free = weights[:, :-1]
    fisher = np.einsum("ri,ij->rij", free, np.eye(free.shape[1])) - free[:, :, None] * free[:, None]
    step_eta = np.linalg.solve(fisher, g_eta[..., None])[..., 0]
    cov = np.einsum("kij,klj->kil", comps.chol, comps.chol)
    step_mu = np.einsum("kij,rkj->rki", cov, g_mu) / weights[..., None]
    return step_eta, step_mu


def precondition(
    update: str, g_eta: np.ndarray, g_mu: np.ndarray, weights: np.ndarray, comps: Components
) -> tuple[np.ndarray, np.ndarray]:
    """The step direction of ``update``: ĝ itself ('sgd', plain steps on the K−1 free
    logits), the natural gradient ('natural'), or plain steps on all K logits of the
    over-parametrised softmax written in the pinned ones ('sgd_full_softmax': the last
    logit's step −g_{K−1} = Σ_j g_j is subtracted from the others, δη = g + (Σ_j g_j) 1)."""
    if update == "natural":
        return natural_step(g_eta, g_mu, weights, comps)
    if update == "sgd_full_softmax":
        return g_eta + np.sum(g_eta, axis=-1, keepdims=True), g_mu
    return g_eta, g_mu


def _categorical(probs: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Labels of ``shape`` (R, B) from per-replicate probabilities (R, K) (or (K,))."""
    cum = np.cumsum(np.broadcast_to(probs, (shape[0], probs.shape[-1])), axis=-1)
    u = rng.random(shape)
    labels = np.sum(u[..., None] >= cum[:, None, :-1], axis=-1)
    return labels.astype(np.intp)


class TargetSources:
    """The target side of a run: the target's components, the new-task mix (w*_j/Σ_new w*
    over the new components) and the replay mix ρ over the old components, as full (K,)
    probability vectors over the target components."""

    def __init__(self, plan: MixturePlan) -> None:
        k = plan.n_components
        self.start = plan.start
        self.start_comps = Components.of(plan.start)
        self.comps = Components.of(plan.target)
        self.means = plan.target.means
        self.log_weights = np.log(plan.target.weights)
        new = list(plan.new_components)
        self.new_mix = np.zeros(k)
        self.new_mix[new] = plan.target.weights[new] / plan.target.weights[new].sum()
        self.old_mix = np.zeros(k)
        self.old_mix[list(plan.old_components)] = plan.replay_mix

    def log_density(self, x: np.ndarray, mix: Optional[np.ndarray] = None) -> np.ndarray:
        """(R, B) log p*(x) (or log Σ_j mix_j φ*_j(x) for a mix over the components)."""
        log_w = self.log_weights if mix is None else np.log(np.where(mix > 0, mix, 1.0))
        joint = self.comps.logpdf(x, self.means) + log_w
        if mix is not None:
            joint = np.where(mix > 0, joint, -np.inf)
        return _logsumexp(joint)

    def log_reference(self, x: np.ndarray, reference: str) -> np.ndarray:
        """(R, B) log q_ref(x): the start Mixture, the target, or 0 (the flat measure)."""
        if reference == "start":
            return log_mixture(x, self.start_comps, self.start.means, np.log(self.start.weights))
        if reference == "target":
            return self.log_density(x)
        return np.zeros(x.shape[:-1])

    def draw(self, mix: np.ndarray, shape: tuple[int, int], rng: np.random.Generator):
        labels = _categorical(mix, shape, rng)
        means = np.broadcast_to(self.means, (shape[0], *self.means.shape))
        return self.comps.draw(labels, means, rng), labels


def _replay_slots(plan: MixturePlan, shape: tuple[int, int], rng: np.random.Generator):
    """(R, B) True at the replay slots and the λ the weights use (λ' = round(λB)/B for
    stratified slots); only the objectives with replay (ForwardKL, ReverseKL) call it."""
    objective = plan.objective
    assert isinstance(objective, (ForwardKL, ReverseKL))
    lam = float(objective.replay)
    if objective.replay_slots == "stratified":
        # round half away from zero, as Rust's f64::round
        n_replay = math.floor(lam * shape[1] + 0.5)
        slots = np.zeros(shape, dtype=bool)
        slots[:, :n_replay] = True
        return slots, n_replay / shape[1]
    return rng.random(shape) < lam, lam


def forward_kl_estimate(plan, sources, params, comps, shape, rng):
    """ĝ = −(1/B) Σ s(x_i), x_i ~ (1−λ) p_new + λ p_old; returns (g_η, g_μ, labels)."""
    replay, _ = _replay_slots(plan, shape, rng)
    x_new, lab_new = sources.draw(sources.new_mix, shape, rng)
    x_old, lab_old = sources.draw(sources.old_mix, shape, rng)
    x = np.where(replay[..., None], x_old, x_new)
    labels = np.where(replay, lab_old, lab_new)
    s_eta, s_mu, _ = scores(x, params, comps)
    return -s_eta.mean(axis=1), -s_mu.mean(axis=1), labels


def replay_importance_weight(x, log_q, sources, lam: float, cap: Optional[float]) -> np.ndarray:
    """ReverseKL's bounded weight w = min(c, q/m), m = (1−λ) q + λ p_old, written as
    1 / ((1−λ) + λ p_old/q) at points x with log q; w = 1 without replay (docs:
    theory-reverse-kl). One formula for the twin's batches and the quadrature flow."""
    if lam > 0.0:
        log_p_old = sources.log_density(x, sources.old_mix)
        with np.errstate(over="ignore"):
            weight = 1.0 / ((1.0 - lam) + lam * np.exp(log_p_old - log_q))
    else:
        weight = np.ones_like(log_q)
    if cap is not None:
        weight = np.minimum(weight, cap)
    return weight


def reverse_kl_estimate(plan, sources, params, comps, shape, rng):
    """ĝ = (1/B) Σ (v_i − w_i b_i) s(x_i), x_i ~ (1−λ) q_θ + λ p_old, w_i = min(c, q/m),
    v_i = w_i (log q − log p*), b_i the leave-one-out mean of the others' v ('loo') or 0."""
    objective = plan.objective
    replay, lam = _replay_slots(plan, shape, rng)
    on_labels = _categorical(params.weights, shape, rng)
    x_on = comps.draw(on_labels, params.means, rng)
    x_old, lab_old = sources.draw(sources.old_mix, shape, rng)
    x = np.where(replay[..., None], x_old, x_on)
    labels = np.where(replay, lab_old, on_labels)
    s_eta, s_mu, log_q = scores(x, params, comps)
    log_ratio = log_q - sources.log_density(x)
    weight = replay_importance_weight(x, log_q, sources, lam, objective.weight_cap)
    value = weight * log_ratio
    if objective.baseline == "loo" and shape[1] > 1:
        others = (value.sum(axis=1, keepdims=True) - value) / (shape[1] - 1)
        value = value - weight * others
    g_eta = np.mean(value[..., None] * s_eta, axis=1)
    g_mu = np.mean(value[..., None, None] * s_mu, axis=1)
    return g_eta, g_mu, labels


def kl_rl_values(
    plan: MixturePlan, sources: TargetSources, x: np.ndarray, log_q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(r, κ) (R, B) of KLRegularizedRL at points x (R, B, d) with log q_θ(x)."""
    objective = plan.objective
    assert isinstance(objective, KLRegularizedRL) and plan.label_rewards is not None
    joint = sources.comps.logpdf(x, sources.means) + sources.log_weights
    reward = kl_rl_reward(
        objective,
        x,
        plan.label_rewards,
        joint,
        _logsumexp(joint),
        lambda at: sources.log_density(at, sources.new_mix),
    )
    kappa = kl_rl_kl_term(objective, log_q, sources.log_reference(x, objective.reference))
    return reward, kappa


def kl_rl_estimate(plan, sources, params, comps, shape, rng):
    """ĝ = (1/B) Σ c_i s(x_i), x_i ~ q_θ, c the coefficients of
    :func:`~.mixture_kl_rl.kl_rl_coefficients` with leave-one-out means."""
    labels = _categorical(params.weights, shape, rng)
    x = comps.draw(labels, params.means, rng)
    s_eta, s_mu, log_q = scores(x, params, comps)
    reward, kappa = kl_rl_values(plan, sources, x, log_q)
    omega = np.full(shape[1], 1.0 / shape[1])
    coef = kl_rl_coefficients(plan.objective, reward, kappa, omega, batch=True)
    g_eta = np.mean(coef[..., None] * s_eta, axis=1)
    g_mu = np.mean(coef[..., None, None] * s_mu, axis=1)
    return g_eta, g_mu, labels


def estimator_of(objective):
    """The finite-batch estimator of a K-component objective: (plan, sources, params,
    comps, shape, rng) → (g_η, g_μ, labels)."""
    if isinstance(objective, ForwardKL):
        return forward_kl_estimate
    if isinstance(objective, ReverseKL):
        return reverse_kl_estimate
    return kl_rl_estimate


def starved_components(labels: np.ndarray, k: int) -> np.ndarray:
    """(R, K) 1 where no sample of the batch has label j."""
    present = np.zeros((labels.shape[0], k), dtype=bool)
    np.put_along_axis(present, labels, True, axis=1)
    return (~present).astype(np.int64)


def runaway(params: MixtureParams, target: Mixture, target_comps: Components) -> np.ndarray:
    """(R,) True where θ is beyond the runaway bound: non-finite, a mean farther than
    RUNAWAY_DISTANCE in the target component's Mahalanobis metric, or a weight below
    RUNAWAY_WEIGHT (computed in float64 from η)."""
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.einsum("kij,rkj->rki", target_comps.whiten, params.means - target.means)
        dist = np.sqrt(np.sum(z * z, axis=-1))
        far = ~np.all(dist <= RUNAWAY_DISTANCE, axis=1)
        light = ~np.all(params.weights >= RUNAWAY_WEIGHT, axis=1)
    return far | light


class NumpyMixtureSimulation:
    """Finite-batch K-component training in NumPy for the driver (``implementation``
    'numpy'); one NumPy random stream from the plan's seed."""

    implementation = "numpy"

    def __init__(self, plan: MixturePlan) -> None:
        assert plan.batch_size is not None and plan.seed is not None
        self.plan = plan
        self.rng = np.random.default_rng(plan.seed)
        self.comps = Components.of(plan.start)
        self.sources = TargetSources(plan)
        self.params = MixtureParams.of(plan.start, plan.replicates)
        self.frozen = np.zeros(plan.replicates, dtype=bool)
        self.starved = np.zeros((plan.replicates, plan.n_components), dtype=np.int64)
        self.done = 0
        work = plan.replicates * plan.batch_size * plan.n_components * (plan.target.dim + 1)
        self.chunks = ChunkPolicy(first=max(1, 2**16 // work))
        self.estimate = estimator_of(plan.objective)

    def first_record(self) -> Optional[MixtureRecords]:
        return None

    def step(self) -> None:
        """One update of every replicate that is not frozen."""
        plan, params = self.plan, self.params
        shape = (plan.replicates, plan.batch_size)
        g_eta, g_mu, labels = self.estimate(plan, self.sources, params, self.comps, shape, self.rng)
        self.starved += np.where(
            self.frozen[:, None], 0, starved_components(labels, plan.n_components)
        )
        g_eta, g_mu = precondition(plan.update, g_eta, g_mu, params.weights, self.comps)
        eta = params.eta - plan.lr * plan.lr_scale["weight"] * g_eta
        means = params.means - plan.lr * plan.lr_scale["means"] * g_mu
        moved = MixtureParams(eta, means)
        finite = np.all(np.isfinite(eta), axis=1) & np.all(np.isfinite(means), axis=(1, 2))
        beyond = runaway(moved, plan.target, self.sources.comps)
        # non-finite: keep the last finite state; beyond the bound: keep the crossing state
        keep_old = self.frozen | ~finite
        self.params = MixtureParams(
            np.where(keep_old[:, None], params.eta, eta),
            np.where(keep_old[:, None, None], params.means, means),
        )
        self.frozen = self.frozen | ~finite | beyond

    def advance(self, steps: int, record_every: int) -> MixtureRecords:
        weights, means, starved = [], [], []
        for _ in range(steps):
            self.step()
            self.done += 1
            if self.done % record_every == 0:
                weights.append(self.params.weights)
                means.append(self.params.means)
                starved.append(self.starved.copy())
        return MixtureRecords.stack(weights, means, starved, self.plan)

    def diverged(self) -> np.ndarray:
        return self.frozen.copy()
