"""Closed forms of KL-regularised RL with per-component label rewards (docs:
theory-kl-regularized), for any number K of components: the optimum weights of
E_q[r] − β KL toward a reference in both KL directions, and the logit flows of the plain
and the natural policy gradient on softmax weights; for K = 2, the stationary old weight of
GRPO's layout (a group-normalised reward beside an exact KL term); the component means of
the geometric rewards (half-space, ball, bump) and the stationary weight they give.

All functions are pure functions of weight vectors (the components are taken as well
separated, so that E_q[r] = Σ_k w_k r_k and the KL between two mixtures of the same
components is the KL between their weight vectors). The flows are integrated by fixed-step
RK4 on the logits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validate import as_positive_float, as_positive_int, as_probability
from ..mixture import TwoMode
from ._quadrature import _interval_prob, _norm_sf

__all__ = [
    "component_mean_rewards",
    "forward_kl_regularized_weights",
    "geometric_reward_old_weight",
    "group_normalised_old_weight",
    "kl_regularized_old_weight",
    "natural_gradient_logit_flow",
    "policy_gradient_logit_flow",
    "reverse_kl_regularized_weights",
]


def _weights_and_rewards(reference_weights: Any, rewards: Any) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(reference_weights, dtype=float)
    r = np.asarray(rewards, dtype=float)
    if w.ndim != 1 or w.size < 1 or r.shape != w.shape:
        raise ValueError(
            "reference_weights and rewards must be 1-D of the same length K >= 1, got shapes "
            f"{w.shape} and {r.shape}"
        )
    if not (np.all(np.isfinite(w)) and np.all(w > 0.0)):
        raise ValueError(f"reference_weights must be finite and > 0, got {w.tolist()}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"rewards must be finite, got {r.tolist()}")
    return w / w.sum(), r


def reverse_kl_regularized_weights(reference_weights: Any, rewards: Any, beta: float) -> np.ndarray:
    """argmax_w Σ_k w_k r_k − β KL(w ‖ w_ref) over the simplex (docs: theory-kl-regularized):
    w_k ∝ w_ref,k e^{r_k/β} (the Gibbs tilt of the reference), computed with the largest
    exponent shifted to 0.

    Check: w_ref = (0.75, 0.25), r = (0, 1): w_old = 0.52463 (β = 1), 0.28877 (β = 0.5),
    1.3618e-4 (β = 0.1).
    """
    w, r = _weights_and_rewards(reference_weights, rewards)
    beta = as_positive_float("beta", beta)
    log_w = np.log(w) + r / beta
    tilt = np.exp(log_w - log_w.max())
    return tilt / tilt.sum()


def forward_kl_regularized_weights(reference_weights: Any, rewards: Any, beta: float) -> np.ndarray:
    """argmax_w Σ_k w_k r_k − β KL(w_ref ‖ w) over the simplex (docs: theory-kl-regularized).

    Stationarity with a multiplier ν for Σ w = 1: r_k + β w_ref,k / w_k = ν, so
    w_k = β w_ref,k / (ν − r_k), and ν is the root of f(ν) = Σ_k β w_ref,k/(ν − r_k) − 1 on
    (max r, max r + β] (f decreases from +∞ there, and f(max r + β) ≤ 0 since every term is at
    most w_ref,k). Solved by Newton steps safeguarded by bisection to machine precision.

    Check: w_ref = (0.75, 0.25), r = (0, 1): w_old = 0.5 (β = 1), 0.31699 (β = 0.5),
    0.07303 (β = 0.1).
    """
    w, r = _weights_and_rewards(reference_weights, rewards)
    beta = as_positive_float("beta", beta)
    top = float(r.max())
    # gaps g = ν − max r in (0, β]: working in g keeps the smallest gap exact
    gaps = top - r

    def excess(g: float) -> tuple[float, float]:
        terms = beta * w / (g + gaps)
        return float(terms.sum() - 1.0), float(-(terms / (g + gaps)).sum())

    lo, hi = 0.0, beta
    g = beta
    for _ in range(200):
        f, slope = excess(g)
        if f == 0.0:
            break
        if f > 0.0:
            lo = g
        else:
            hi = g
        step = g - f / slope
        g = step if lo < step < hi else 0.5 * (lo + hi)
        if hi - lo <= 4.0 * np.finfo(float).eps * hi:
            break
    weights = beta * w / (g + gaps)
    return weights / weights.sum()


def _softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def _rk4_logits(theta: np.ndarray, field: Any, time: float, steps: int) -> np.ndarray:
    h = time / steps
    for _ in range(steps):
        k1 = field(theta)
        k2 = field(theta + 0.5 * h * k1)
        k3 = field(theta + 0.5 * h * k2)
        k4 = field(theta + h * k3)
        theta = theta + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return theta


def _flow(
    start_weights: Any, rewards: Any, time: float, steps: int, natural: bool, pinned: bool = False
) -> np.ndarray:
    w, r = _weights_and_rewards(start_weights, rewards)
    time = as_positive_float("time", time, allow_zero=True)
    steps = as_positive_int("steps", steps)

    def field(theta: np.ndarray) -> np.ndarray:
        q = _softmax(theta)
        advantage = r - q @ r
        if natural:
            return advantage
        velocity = q * advantage
        if pinned:
            velocity[-1] = 0.0  # the last logit is held at 0: only the others move
        return velocity

    return _softmax(_rk4_logits(np.log(w), field, time, steps))


def policy_gradient_logit_flow(
    start_weights: Any, rewards: Any, time: float, steps: int = 1000, logits: str = "all"
) -> np.ndarray:
    """Weights after the plain policy-gradient flow on softmax logits for ``time``
    (docs: theory-kl-regularized, theory-kl-selection): dθ_k/dt = ∂E_w[r]/∂θ_k =
    w_k (r_k − E_w r). With ``logits='all'`` (every one of the K logits free, the engine's
    ``update='sgd_full_softmax'``) a component's logit moves in proportion to its own weight,
    so among equally rewarded components the larger grows faster (rich-get-richer): their
    ratio is not conserved. With ``logits='pinned'`` the last logit is held at 0 and only
    the first K−1 move (the engine's ``update='sgd'``): every rewarded free component then
    gains on the pinned one, whichever is larger — the plain gradient depends on the
    parametrisation. RK4, ``steps`` fixed steps."""
    if logits not in ("all", "pinned"):
        raise ValueError(f"logits must be 'all' or 'pinned', got {logits!r}")
    return _flow(start_weights, rewards, time, steps, natural=False, pinned=logits == "pinned")


def natural_gradient_logit_flow(
    start_weights: Any, rewards: Any, time: float, steps: int = 1000
) -> np.ndarray:
    """Weights after the natural-gradient flow on softmax logits for ``time``
    (docs: theory-kl-regularized): the Fisher of the softmax is diag(w) − w wᵀ, and its
    pseudo-inverse applied to the plain gradient gives dθ_k/dt = r_k − E_w r (up to a shift
    common to all logits, which leaves w unchanged). Equally rewarded components keep their
    logit difference, hence their weight ratio, exactly. RK4, ``steps`` fixed steps."""
    return _flow(start_weights, rewards, time, steps, natural=True)


def kl_regularized_old_weight(alpha_ref: float, delta_r: float, beta: float, kl: str) -> float:
    """The K = 2 old weight α* of either direction with r_old = 0, r_new = Δr (a convenience
    over the two K-general forms, used by the checks of docs: theory-kl-regularized)."""
    alpha_ref = as_probability("alpha_ref", alpha_ref)
    if kl == "reverse":
        return float(
            reverse_kl_regularized_weights([alpha_ref, 1 - alpha_ref], [0, delta_r], beta)[0]
        )
    if kl == "forward":
        return float(
            forward_kl_regularized_weights([alpha_ref, 1 - alpha_ref], [0, delta_r], beta)[0]
        )
    raise ValueError(f"kl must be 'reverse' or 'forward', got {kl!r}")


def group_normalised_old_weight(alpha_ref: float, delta_r: float, beta: float) -> float:
    """K = 2, reverse KL kept out of a GRPO group normalisation of the label reward
    (``KLRegularizedRL(kl_estimator='exact', advantage='group')``, docs:
    theory-kl-regularized): the population gradient in the logit is
    −√(α(1−α)) Δr + β α(1−α) (logit α_ref − logit α) (the reward's covariance with the score,
    divided by sd(r) = √(α(1−α)) Δr), so the stationary old weights solve
    Δr / √(α(1−α)) = β (logit α_ref − logit α). Returns the largest root below α_ref (the one
    the flow from α_ref reaches), or 0.0 when there is none (the old mass goes to 0: the
    normalised reward pull grows like α^{-1/2}, faster than the KL's log). Δr = r_new − r_old
    > 0; roots are bracketed on a logit grid of step 0.01 down to logit α = −60 and refined
    by bisection.
    """
    alpha_ref = as_probability("alpha_ref", alpha_ref)
    beta = as_positive_float("beta", beta)
    delta_r = as_positive_float("delta_r", delta_r)
    eta_ref = math.log(alpha_ref / (1.0 - alpha_ref))

    def excess(eta: float) -> float:
        a = 1.0 / (1.0 + math.exp(-eta))
        return delta_r / math.sqrt(a * (1.0 - a)) - beta * (eta_ref - eta)

    hi = eta_ref
    while hi > -60.0:
        lo = hi - 0.01
        if excess(lo) < 0.0:
            for _ in range(100):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if excess(mid) < 0.0 else (lo, mid)
            return 1.0 / (1.0 + math.exp(-0.5 * (lo + hi)))
        hi = lo
    return 0.0


def component_mean_rewards(objective: Any, model: TwoMode) -> tuple[float, float]:
    """(r̄_o, r̄_n) = (E_{φ_o}[r], E_{φ_n}[r]): the mean of a geometric reward of
    :class:`~mixforget.KLRegularizedRL` over each component of ``model`` (docs:
    theory-kl-rewards), as exact Gaussian integrals: the half-space a·x ≥ b through
    a·X ~ N(a·μ, aᵀΣa) (normal tail by erfc), the bump through
    E exp(−‖X − c‖²/(2s²)) = det(I + Σ/s²)^{-1/2} exp(−½ (μ − c)ᵀ(Σ + s²I)⁻¹(μ − c)), the
    ball in one dimension as the interval probability P[``|X − c|`` ≤ radius] (NotImplementedError
    for d > 1, a non-central χ² without a closed form here).
    """
    from ..objectives import KLRegularizedRL

    if not isinstance(objective, KLRegularizedRL) or objective.reward_dim() is None:
        raise ValueError(
            "objective must be a KLRegularizedRL with reward 'halfspace', 'ball' or 'bump', "
            f"got {objective!r}"
        )
    objective.check_dimension(model.dim)
    old, new = objective.reward_old, objective.reward_new
    out = []
    for which in ("old", "new"):
        mean = model.old_mean if which == "old" else model.new_mean
        cov = model.cov_matrix(which)
        out.append(old + (new - old) * _reward_share(objective, mean, cov))
    return out[0], out[1]


def _reward_share(objective: Any, mean: np.ndarray, cov: np.ndarray) -> float:
    """E_{N(mean, cov)}[(r − r_old)/(r_new − r_old)] of a geometric reward."""
    if objective.reward == "halfspace":
        a = np.asarray(objective.reward_direction)
        sd = math.sqrt(float(a @ cov @ a))
        return _norm_sf((objective.reward_offset - float(a @ mean)) / sd)
    c = np.asarray(objective.reward_center)
    if objective.reward == "ball":
        if len(c) != 1:
            raise NotImplementedError(
                "the ball reward's component means are implemented for d = 1 only"
            )
        rho, sd = objective.reward_radius, math.sqrt(float(cov[0, 0]))
        return _interval_prob(c[0] - rho, c[0] + rho, float(mean[0]), sd)
    s2 = objective.reward_width**2
    widened = cov + s2 * np.eye(len(c))
    diff = mean - c
    log_det = float(np.linalg.slogdet(np.eye(len(c)) + cov / s2)[1])
    return math.exp(-0.5 * log_det - 0.5 * float(diff @ np.linalg.solve(widened, diff)))


def geometric_reward_old_weight(objective: Any, model: TwoMode) -> float:
    """The stationary old weight of :class:`~mixforget.KLRegularizedRL` with a geometric
    reward and the start ``model`` as reference, means and scales frozen (``lr_scale``
    old_mean = new_mean = 0; docs: theory-kl-rewards): E_q[r] = α r̄_o + (1−α) r̄_n exactly,
    and for well-separated components the KL between the mixtures is the KL between their
    weights, so the optimum is the label-reward closed form of the objective's direction with
    the component means of the reward (:func:`component_mean_rewards`) as label rewards."""
    r_old, r_new = component_mean_rewards(objective, model)
    weights = [model.old_weight, 1.0 - model.old_weight]
    solve = (
        reverse_kl_regularized_weights
        if objective.kl == "reverse"
        else forward_kl_regularized_weights
    )
    return float(solve(weights, [r_old, r_new], objective.beta)[0])
