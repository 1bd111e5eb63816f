"""Closed forms and quadratures of the theory (docs: theory-geometry, theory-forward-kl,
theory-starvation, theory-fisher, theory-check-values, theory-method-closed-forms,
theory-kl-regularized).

Pure NumPy + :mod:`math` (no SciPy): Φ is computed with :func:`math.erfc`, Gaussian
expectations with a trapezoid rule on the whole line whose step is chosen from the width of
the strip of analyticity of the integrand (exponentially convergent; ~1e-13 relative for the
equal-covariance misassignment at any separation), or, for unequal covariances in d = 1,
with step halving until two successive rules agree to 1e-13.

One module per topic (``geometry``, ``starvation``, ``fisher``, ``methods``,
``kl_regularized``) over the
numerical helpers of ``_quadrature``; the overlap accuracies live in
:mod:`mixforget._overlap` (the result types use them too) and are re-exported here.

Public names: bhattacharyya, misassignment, starvation_probability, expected_starved_batches,
replay_weight_bound, forward_kl_optimum, fisher, local_rate, oapl_period_weight,
tttdiscover_stationary_weight, stratified_replay_count, overlap_accuracy,
overlap_accuracy_records, gaussian_overlap, reverse_kl_regularized_weights,
forward_kl_regularized_weights, kl_regularized_old_weight, group_normalised_old_weight,
policy_gradient_logit_flow, natural_gradient_logit_flow; for K-component mixtures
(``k_components``, docs: theory-k-components) component_starvation_probability,
forward_kl_replay_optimum, pairwise_misassignment_bound.
"""

from __future__ import annotations

from .._overlap import gaussian_overlap, overlap_accuracy, overlap_accuracy_records
from .fisher import fisher, local_rate
from .geometry import bhattacharyya, misassignment
from .k_components import (
    component_starvation_probability,
    forward_kl_replay_optimum,
    pairwise_misassignment_bound,
)
from .kl_regularized import (
    component_mean_rewards,
    forward_kl_regularized_weights,
    geometric_reward_old_weight,
    group_normalised_old_weight,
    kl_regularized_old_weight,
    natural_gradient_logit_flow,
    policy_gradient_logit_flow,
    reverse_kl_regularized_weights,
)
from .methods import oapl_period_weight, tttdiscover_stationary_weight
from .starvation import (
    expected_starved_batches,
    forward_kl_optimum,
    replay_weight_bound,
    starvation_probability,
    stratified_replay_count,
)

__all__ = [
    "bhattacharyya",
    "component_mean_rewards",
    "component_starvation_probability",
    "expected_starved_batches",
    "fisher",
    "forward_kl_optimum",
    "forward_kl_regularized_weights",
    "forward_kl_replay_optimum",
    "gaussian_overlap",
    "geometric_reward_old_weight",
    "group_normalised_old_weight",
    "kl_regularized_old_weight",
    "local_rate",
    "misassignment",
    "natural_gradient_logit_flow",
    "oapl_period_weight",
    "overlap_accuracy",
    "overlap_accuracy_records",
    "pairwise_misassignment_bound",
    "policy_gradient_logit_flow",
    "replay_weight_bound",
    "reverse_kl_regularized_weights",
    "starvation_probability",
    "stratified_replay_count",
    "tttdiscover_stationary_weight",
]
