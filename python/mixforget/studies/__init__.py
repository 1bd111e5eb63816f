"""Studies that put the theory next to the measurement (docs: theory-geometry, theory-reverse-kl,
theory-starvation, theory-population, theory-pred-drift, theory-pred-starvation,
theory-pred-replay).

The studies, each returning a small frozen result table that a paper would print:

- :func:`drift_vs_separation` — docs: theory-pred-drift: old-component drift under an
  on-policy objective (ReverseKL by default) is gated by the overlap of the modes,
  sup_t D_t ≤ C·BC with BC = e^{−Δ²/8}, so log sup_t D_t against Δ² has slope → −1/8.
  Population flow (docs: theory-population, exact) and finite-batch training
  (docs: theory-training-loop, mean over replicates with a 95% interval) side by side, with the
  fitted slopes.
- :func:`starvation` — docs: theory-starvation / docs: theory-pred-starvation, theory-pred-replay:
  predicted vs measured starvation rates (P = (1−α)^B on-policy, ((1−λ)(1−α))^B with bernoulli
  replay, 0 with stratified replay), and the variance of the old-mean gradient estimate with and
  without replay next to the (unchanged) population gradient.
- :func:`kl_old_weight_vs_beta`, :func:`kl_estimator_bias` — docs: theory-kl-studies: the
  old weight kept by KL-regularised RL against β (both KL directions, closed form, population
  flow, finite batches), and the bias and variance of the k1/k3/exact estimators under
  leave-one-out and group advantages at small batch sizes.
- :func:`which_component_goes_first` — docs: theory-k-components: with two old skills, the
  mass half-life and final drift of each under training on a new task (population flow),
  over the near one's separation from the new task and its weight.
- :func:`drift_vs_nearest_separation` — docs: theory-k-components: the K = 3 drift conjecture
  measured, the sup drift of an old component against Δ² of its separation from the moving
  new one, for two positions of a second old component (slope vs −1/8).
- :func:`selection_among_correct_modes` — docs: theory-kl-selection: with two equally
  rewarded components (K = 3), w_2/w_3 and the old weight over training under plain
  (all logits, pinned logit), natural and KL-regularised policy gradients.
- :func:`drop_vs_gain` — the trade-off of arXiv 2510.18874: forgetting of the old task
  (drop in overlap accuracy) at the first step where the new task's gain reaches a
  threshold, per objective and learning rate.

Result objects: :class:`DriftSeparationStudy`, :class:`StarvationStudy`,
:class:`DropGainStudy`, each with
``.rows`` (list of dicts), ``.to_pandas()`` (needs pandas), ``.to_markdown()`` and
``.plot(ax=None)`` (needs matplotlib, imported lazily; works with the Agg backend).

One module per study (``drift_separation``, ``starvation_replay``, ``drop_gain``,
``kl_regularized``, ``component_order``, ``nearest_drift``, ``selection``) and the
helpers they share (``_shared``); the public names are re-exported here, so
``mixforget.studies.starvation`` is the function.

Public names: drift_vs_separation, starvation, drop_vs_gain, kl_old_weight_vs_beta,
kl_estimator_bias, which_component_goes_first, drift_vs_nearest_separation,
selection_among_correct_modes, ComponentOrderStudy, NearestDriftStudy, SelectionStudy,
DriftSeparationStudy,
StarvationStudy, DropGainStudy, KLBetaStudy, KLEstimatorStudy, binomial_interval,
objective_label, variance_with_stderr.
"""

from __future__ import annotations

from ._shared import binomial_interval, variance_with_stderr
from .component_order import ComponentOrderStudy, which_component_goes_first
from .drift_separation import DriftSeparationStudy, drift_vs_separation
from .drop_gain import DropGainStudy, drop_vs_gain, objective_label
from .kl_regularized import KLBetaStudy, KLEstimatorStudy, kl_estimator_bias, kl_old_weight_vs_beta
from .nearest_drift import NearestDriftStudy, drift_vs_nearest_separation
from .selection import SelectionStudy, selection_among_correct_modes
from .starvation_replay import StarvationStudy, starvation

__all__ = [
    "ComponentOrderStudy",
    "DriftSeparationStudy",
    "DropGainStudy",
    "KLBetaStudy",
    "KLEstimatorStudy",
    "NearestDriftStudy",
    "SelectionStudy",
    "StarvationStudy",
    "binomial_interval",
    "drift_vs_nearest_separation",
    "drift_vs_separation",
    "drop_vs_gain",
    "kl_estimator_bias",
    "kl_old_weight_vs_beta",
    "objective_label",
    "selection_among_correct_modes",
    "starvation",
    "variance_with_stderr",
    "which_component_goes_first",
]
