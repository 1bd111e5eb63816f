"""KLRegularizedRL's per-sample algebra on the K-component engine (docs:
theory-kl-regularized, theory-k-components), in NumPy: the reward r(x), the KL term κ(x)
toward the reference and the coefficients c of ĝ = Σ_i ω_i c_i s(x_i).

The formulas are the two-mode twin's (:mod:`.kl_regularized_rl`), for K components: the
'labels' reward is r(x) = Σ_j r_j π*_j(x) with the target's responsibilities π*_j — a fixed
function of x, as a verifier scores an answer without knowing which skill produced it (for
K = 2 it is r_old π*_old + r_new (1 − π*_old)). They are written once against weights ω
over the sample axis: ω = 1/B with leave-one-out means gives the finite-batch estimator, the
quadrature weights with full expectations its B → ∞ limit. Arrays are (R, N) over
replicates × samples; the densities come from the caller (:mod:`.mixture_engine`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..objectives import KLRegularizedRL
from .kl_regularized_rl import _geometric_reward

__all__ = ["kl_rl_coefficients", "kl_rl_kl_term", "kl_rl_reward", "label_reward"]


def label_reward(log_joint_target: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """r(x) = Σ_j r_j π*_j(x) from log w*_j φ*_j(x) (R, N, K) and the K label rewards."""
    top = np.max(log_joint_target, axis=-1, keepdims=True)
    share = np.exp(log_joint_target - top)
    return (share @ labels) / np.sum(share, axis=-1)


def kl_rl_reward(
    objective: KLRegularizedRL,
    x: np.ndarray,
    labels: np.ndarray,
    log_joint_target: np.ndarray,
    log_target: np.ndarray,
    log_new: Any,
) -> np.ndarray:
    """r(x) (R, N) of the objective's reward kind at points x (R, N, d): the label reward
    (``labels`` (K,), ``log_joint_target`` (R, N, K)), log p* (``log_target``), log p_new*
    (``log_new``, a callable of x: the new-task mix's log density) or a geometric reward."""
    if objective.reward == "labels":
        return label_reward(log_joint_target, labels)
    if objective.reward == "target_logpdf":
        return log_target
    if objective.reward == "new_logpdf":
        return log_new(x)
    return _geometric_reward(objective, x, np.asarray)


def kl_rl_kl_term(objective: KLRegularizedRL, log_q: np.ndarray, log_ref: np.ndarray) -> np.ndarray:
    """κ: −ρ (forward), ρ − 1 − log ρ (reverse 'k3'), log q − log q_ref (reverse 'exact',
    'k1'), ρ = q_ref/q."""
    log_rho = log_ref - log_q
    if objective.kl == "forward":
        return -np.exp(log_rho)
    if objective.kl_estimator == "k3":
        return np.expm1(log_rho) - log_rho
    return -log_rho


def _mean(omega: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sum(omega * v, axis=-1, keepdims=True)


def _standardised(omega: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(v − mean v)/sd(v) under ω (0 where the variance is 0)."""
    centred = v - _mean(omega, v)
    var = _mean(omega, centred * centred)
    positive = var > 0.0
    return centred * np.where(positive, 1.0 / np.sqrt(np.where(positive, var, 1.0)), 0.0)


def kl_rl_coefficients(
    objective: KLRegularizedRL,
    reward: np.ndarray,
    kappa: np.ndarray,
    omega: np.ndarray,
    batch: bool,
) -> np.ndarray:
    """c (R, N) with ĝ = Σ_i ω_i c_i s(x_i): v = r − β κ; −v ('raw'), −(v − b) with b the
    leave-one-out mean of the others' v in a batch (0 for B = 1) or E v in the limit ('loo'),
    −(v − E v)/sd(v) ('group'); reverse 'exact' under 'group' keeps the KL apart:
    −(r − E r)/sd(r) + β (κ − E κ). ``omega`` (R, N) or (N,) sums to 1 over the samples;
    ``batch`` selects leave-one-out means (uniform ω) over full expectations."""
    beta = objective.beta
    if objective.kl_estimator == "exact" and objective.advantage == "group":
        return -_standardised(omega, reward) + beta * (kappa - _mean(omega, kappa))
    value = reward - beta * kappa
    if objective.advantage == "raw":
        return -value
    if objective.advantage == "group":
        return -_standardised(omega, value)
    n = value.shape[-1]
    if not batch:
        return -(value - _mean(omega, value))
    if n == 1:
        return -value
    others = (np.sum(value, axis=-1, keepdims=True) - value) / (n - 1)
    return -(value - others)
