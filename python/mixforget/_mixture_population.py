"""The population (infinite-batch) limit of the K-component engine (docs: theory-k-components):
exact expected gradients by Gauss–Hermite quadrature, and the deterministic flow as a
stepper of the driver.

Every expectation is a sum over the sampling distribution's components, E_m[f] =
Σ_c π_c E_{N(μ_c, Σ_c)}[f], each a tensor Gauss–Hermite rule. When all model and target
components share one covariance Σ, the integrand's coefficient depends on x only through its
whitened projection on the affine span of the 2K whitened means, and the score's component
orthogonal to it has mean 0 independently, so the rule runs on that span (up to 3-D;
NotImplementedError beyond). Unequal covariances, or a reward with its own geometry
(KLRegularizedRL's half-space, ball, bump): the rule runs over all d ≤ 3 dimensions.
KLRegularizedRL's forward KL and k3 estimator carry ρ = q_ref/q_θ, whose mass lies on the
reference's components: their expectations under q_θ are taken with nodes on ½ q_θ + ½ q_ref,
reweighted by q_θ/(½ q_θ + ½ q_ref).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from .engine._driver import ChunkPolicy
from .engine._mixture_plan import MixturePlan
from .engine._mixture_records import MixtureRecords
from .objectives import ForwardKL, KLRegularizedRL
from .reference.mixture_engine import (
    Components,
    MixtureParams,
    TargetSources,
    kl_rl_values,
    precondition,
    replay_importance_weight,
    runaway,
    scores,
)
from .reference.mixture_kl_rl import kl_rl_coefficients

__all__ = ["MAX_SPAN", "NODES_PER_AXIS", "MixturePopulationFlow", "mixture_population_gradient"]

#: the largest span (or dimension) the quadrature integrates
MAX_SPAN = 3
#: Gauss–Hermite nodes per axis of a span of 1, 2, 3 dimensions
NODES_PER_AXIS = {0: 1, 1: 200, 2: 150, 3: 40}


@functools.cache
def _rule(m: int) -> tuple[np.ndarray, np.ndarray]:
    """(nodes (n^m, m), weights (n^m,)) of the tensor rule for E_{N(0, I_m)}."""
    if m == 0:
        return np.zeros((1, 0)), np.ones(1)
    z, w = hermegauss(NODES_PER_AXIS[m])
    w = w / w.sum()
    grids = np.meshgrid(*([z] * m), indexing="ij")
    weights = np.ones(1)
    for _ in range(m):
        weights = np.multiply.outer(weights, w)
    return np.stack([g.ravel() for g in grids], axis=1), weights.ravel()


def _basis(plan: MixturePlan, params: MixtureParams) -> Optional[np.ndarray]:
    """(d, m) orthonormal whitened basis of the means' affine span when every model and
    target component shares one covariance (None otherwise, or for a span over MAX_SPAN)."""
    covs = [plan.start.cov_matrix(j) for j in range(plan.n_components)]
    covs += [plan.target.cov_matrix(j) for j in range(plan.n_components)]
    if not all(np.array_equal(c, covs[0]) for c in covs[1:]):
        return None
    fixed = [plan.target.means]
    objective = plan.objective
    if isinstance(objective, KLRegularizedRL):
        if objective.reward_dim() is not None:
            return None  # the reward reads x in the original coordinates
        if objective.reference == "start":
            fixed.append(plan.start.means)  # the reference's means leave the model's span
    whiten = np.linalg.inv(np.linalg.cholesky(covs[0]))
    points = np.concatenate([params.means[0], *fixed]) @ whiten.T
    diffs = points[1:] - points[0]
    u, sing, _ = np.linalg.svd(diffs.T, full_matrices=False)
    rank = int(np.sum(sing > 1e-12 * max(1.0, float(np.max(np.abs(points))))))
    return u[:, :rank] if rank <= MAX_SPAN else None


def _nodes(plan: MixturePlan, params: MixtureParams, means: np.ndarray, chols: np.ndarray):
    """Quadrature points (C, n, d) and weights (n,) of N(means[c], chol_c chol_cᵀ) for each
    source component c."""
    d = plan.target.dim
    basis = _basis(plan, params)
    if basis is None:
        if d > MAX_SPAN:
            raise NotImplementedError(
                f"the K-component population flow integrates spans up to {MAX_SPAN}-D; these "
                f"means span more (or the covariances differ and d = {d} > {MAX_SPAN})"
            )
        z, w = _rule(d)
        return means[:, None, :] + np.einsum("cij,nj->cni", chols, z), w
    z, w = _rule(basis.shape[1])
    return means[:, None, :] + np.einsum("cij,nj->cni", chols, z @ basis.T), w


def _sources(plan: MixturePlan, params: MixtureParams, comps: Components, target: TargetSources):
    """(π (C,), means (C, d), chols (C, d, d)) of the sampling distribution's components
    (for KLRegularizedRL with ρ: of the proposal ½ q_θ + ½ q_ref)."""
    if isinstance(plan.objective, KLRegularizedRL):
        if not _ratio_proposal(plan.objective):
            return params.weights[0], params.means[0], comps.chol
        ref = plan.start if plan.objective.reference == "start" else plan.target
        ref_chol = target.start_comps.chol if ref is plan.start else target.comps.chol
        pi = np.concatenate([0.5 * params.weights[0], 0.5 * ref.weights])
        return (
            pi,
            np.concatenate([params.means[0], ref.means]),
            np.concatenate([comps.chol, ref_chol]),
        )
    lam = float(plan.objective.replay)
    if isinstance(plan.objective, ForwardKL):
        pi = (1.0 - lam) * target.new_mix + lam * target.old_mix
        return pi, target.means, target.comps.chol
    pi = np.concatenate([(1.0 - lam) * params.weights[0], lam * target.old_mix])
    means = np.concatenate([params.means[0], target.means])
    return pi, means, np.concatenate([comps.chol, target.comps.chol])


def mixture_population_gradient(
    plan: MixturePlan, params: MixtureParams, comps: Components, target: TargetSources
) -> tuple[np.ndarray, np.ndarray]:
    """(g_η (1, K−1), g_μ (1, K, d)): the expected estimate at θ (one replicate), the B → ∞
    limit of the K-component engine's ĝ."""
    pi, means, chols = _sources(plan, params, comps, target)
    used = pi > 0
    x, w = _nodes(plan, params, means[used], chols[used])
    # the source components as one weighted point set: (1, C·n, d) and weights (C·n,)
    weights = (pi[used][:, None] * w[None, :]).ravel()
    x = x.reshape(1, -1, x.shape[-1])
    s_eta, s_mu, log_q = scores(x, params, comps)
    if isinstance(plan.objective, KLRegularizedRL):
        weights, coef = _kl_rl_coefficients(plan, x, log_q, weights, target)
    elif isinstance(plan.objective, ForwardKL):
        coef = -np.ones_like(log_q)
    else:
        coef = _reverse_kl_coefficients(plan, x, log_q, weights, target)
    g_eta = np.einsum("n,rn,rnk->rk", weights, coef, s_eta)
    g_mu = np.einsum("n,rn,rnkd->rkd", weights, coef, s_mu)
    return g_eta, g_mu


def _ratio_proposal(objective: KLRegularizedRL) -> bool:
    """Whether the expectations need nodes on the reference too (κ carries ρ = q_ref/q)."""
    uses_ratio = objective.kl == "forward" or objective.kl_estimator == "k3"
    return uses_ratio and objective.reference != "flat"


def _kl_rl_coefficients(plan, x, log_q, weights, target) -> tuple[np.ndarray, np.ndarray]:
    """(ω (N,), c (1, N)): the rule's weights as expectations under q_θ (reweighted from
    the proposal ½ q_θ + ½ q_ref when κ carries ρ) and KLRegularizedRL's coefficients with
    full expectations."""
    reward, kappa = kl_rl_values(plan, target, x, log_q)
    if _ratio_proposal(plan.objective):
        log_ref = target.log_reference(x, plan.objective.reference)
        log_proposal = np.logaddexp(log_q, log_ref) - np.log(2.0)
        weights = weights * np.exp(log_q - log_proposal)[0]
        weights = weights / weights.sum()
    return weights, kl_rl_coefficients(plan.objective, reward, kappa, weights, batch=False)


def _reverse_kl_coefficients(plan, x, log_q, weights, target) -> np.ndarray:
    """(v − w b̄): w = min(c, q/m), v = w (log q − log p*), b̄ = E_m[v] ('loo') or 0."""
    objective, lam = plan.objective, float(plan.objective.replay)
    iw = replay_importance_weight(x, log_q, target, lam, objective.weight_cap)
    value = iw * (log_q - target.log_density(x))
    if objective.baseline == "loo":
        value = value - iw * np.sum(weights * value, axis=-1, keepdims=True)
    return value


class MixturePopulationFlow:
    """θ ← θ − lr·m⊙∇L(θ) (or its natural-gradient step) with the quadrature gradient, for
    the driver (implementation 'numpy', one replicate)."""

    implementation = "numpy"
    chunks = ChunkPolicy(first=1)

    def __init__(self, plan: MixturePlan) -> None:
        self.plan = plan
        self.comps = Components.of(plan.start)
        self.target = TargetSources(plan)
        self.params = MixtureParams.of(plan.start, 1)
        self.frozen = False
        self.done = 0
        _nodes(plan, self.params, plan.start.means, self.comps.chol)  # refuses wide spans now

    def first_record(self) -> Optional[MixtureRecords]:
        return None

    def step(self) -> None:
        plan, params = self.plan, self.params
        g_eta, g_mu = mixture_population_gradient(plan, params, self.comps, self.target)
        g_eta, g_mu = precondition(plan.update, g_eta, g_mu, params.weights, self.comps)
        moved = MixtureParams(
            params.eta - plan.lr * plan.lr_scale["weight"] * g_eta,
            params.means - plan.lr * plan.lr_scale["means"] * g_mu,
        )
        if not (np.all(np.isfinite(moved.eta)) and np.all(np.isfinite(moved.means))):
            self.frozen = True
            return
        self.params = moved
        self.frozen = bool(runaway(moved, plan.target, self.target.comps)[0])

    def advance(self, steps: int, record_every: int) -> MixtureRecords:
        weights, means = [], []
        for _ in range(steps):
            if not self.frozen:
                self.step()
            self.done += 1
            if self.done % record_every == 0:
                weights.append(self.params.weights)
                means.append(self.params.means)
        return MixtureRecords.stack(weights, means, None, self.plan)

    def diverged(self) -> np.ndarray:
        return np.array([self.frozen])
