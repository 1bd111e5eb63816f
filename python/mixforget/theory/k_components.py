"""Closed forms of the K-component theory (docs: theory-k-components): per-component
starvation probabilities with and without replay, the forward-KL-with-replay optimum, and the
pairwise Bhattacharyya misassignment bounds."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .._validate import as_fraction, as_positive_int
from ..engine._mixture_plan import check_new_components
from ..mixture import Mixture, TwoMode, as_mixture
from ..objectives import as_replay_mix

__all__ = [
    "component_starvation_probability",
    "forward_kl_replay_optimum",
    "pairwise_misassignment_bound",
]

_STARVATION_OBJECTIVES = ("on_policy", "forward_kl", "reverse_kl")


def _weights(value: Any) -> np.ndarray:
    if isinstance(value, (Mixture, TwoMode)):
        return as_mixture(value).weights
    w = np.asarray(value, dtype=np.float64)
    if w.ndim != 1 or w.size < 2 or np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-9:
        raise ValueError(
            f"weights must be K >= 2 positive entries summing to 1 (or a Mixture), got {value!r}"
        )
    return w


def _old_mix(w_target: np.ndarray, new: tuple[int, ...], replay_mix: Any) -> np.ndarray:
    """ρ as a (K,) vector over the components (0 at the new ones)."""
    old = [j for j in range(w_target.size) if j not in set(new)]
    rho = as_replay_mix(replay_mix)
    if rho is None:
        values = w_target[old] / w_target[old].sum()
    elif len(rho) != len(old):
        raise ValueError(
            f"replay_mix must have one entry per old component ({len(old)}), got {len(rho)}"
        )
    else:
        values = np.array(rho)
    full = np.zeros(w_target.size)
    full[old] = values
    return full


def forward_kl_replay_optimum(
    target: Mixture | TwoMode,
    new_components: Optional[Any] = None,
    replay: float = 0.0,
    replay_mix: Optional[Any] = None,
) -> np.ndarray:
    """(K,) weights at the population optimum of ForwardKL with replay λ spread as ρ over the
    old components (docs: theory-k-components): w_j = (1 − λ) w*_j / Σ_new w* for a new
    component j, w_j = λ ρ_j for an old one (λ = 0: every old weight → 0, mass forgetting).
    ``new_components`` defaults to (K − 1,), ``replay_mix`` to the target's old weights
    renormalised."""
    w_target = as_mixture(target).weights
    new = check_new_components(new_components, w_target.size)
    lam = as_fraction("replay", replay)
    out = lam * _old_mix(w_target, new, replay_mix)
    idx = list(new)
    out[idx] = (1.0 - lam) * w_target[idx] / w_target[idx].sum()
    return out


def component_starvation_probability(
    weights: Any,
    batch_size: int,
    replay: float = 0.0,
    replay_mix: Optional[Any] = None,
    objective: str = "on_policy",
    new_components: Optional[Any] = None,
) -> np.ndarray:
    """(K,) probability that a batch of ``batch_size`` has no sample of component j
    (docs: theory-k-components), with Bernoulli replay slots.

    ``objective``: 'on_policy' (samples from the model, ``weights`` its w; no replay):
    (1 − w_j)^B; 'forward_kl' (``weights`` the target's w*): (1 − (1−λ) w*_j / Σ_new w*)^B
    for a new j, (1 − λ ρ_j)^B for an old j; 'reverse_kl' (``weights`` the model's w, ρ
    defaulting to the uniform mix when no target is given): (1 − (1−λ) w_j − λ ρ_j [j old])^B.
    """
    w = _weights(weights)
    batch = as_positive_int("batch_size", batch_size)
    lam = as_fraction("replay", replay)
    if objective not in _STARVATION_OBJECTIVES:
        raise ValueError(
            f"objective must be one of {list(_STARVATION_OBJECTIVES)}, got {objective!r}"
        )
    if objective == "on_policy":
        if lam != 0.0:
            raise ValueError("objective='on_policy' has no replay; use 'reverse_kl' with replay")
        return (1.0 - w) ** batch
    new = check_new_components(new_components, w.size)
    if objective == "reverse_kl" and replay_mix is None:
        old = [j for j in range(w.size) if j not in set(new)]
        replay_mix = [1.0 / len(old)] * len(old)
    rho = _old_mix(w, new, replay_mix)
    if objective == "forward_kl":
        idx = list(new)
        per_sample = lam * rho
        per_sample[idx] = (1.0 - lam) * w[idx] / w[idx].sum()
    else:
        per_sample = (1.0 - lam) * w + lam * rho
    return (1.0 - per_sample) ** batch


def pairwise_misassignment_bound(mixture: Mixture | TwoMode) -> np.ndarray:
    """(K, K) Bhattacharyya bounds on the pairwise misassignment of the mixture's Bayes
    rule between components j and k (docs: theory-k-components):

    P(misassign j↔k) = w_j P_{φ_j}[w_k φ_k > w_j φ_j] + w_k P_{φ_k}[w_j φ_j ≥ w_k φ_k]
    = ∫ min(w_j φ_j, w_k φ_k) ≤ sqrt(w_j w_k) BC_jk,

    from min(a, b) ≤ sqrt(ab); 0 on the diagonal. For K = 2 it is the two-mode bound
    sqrt(α(1−α)) BC."""
    mix = as_mixture(mixture)
    w = mix.weights
    bound = np.sqrt(np.outer(w, w)) * mix.bhattacharyya_matrix()
    np.fill_diagonal(bound, 0.0)
    return bound
