"""The defaults and constants that more than one module needs, each defined once here.

Nothing in this module imports from the package, so every wing (engine, objectives, theory,
studies, sweeps, cli, bench) may import it without creating a cycle. Changing a value here
changes it everywhere it is used, which is the point: the default learning rate, the default
problem of the docs, the replay slot rules and the normal quantile of the 95 % intervals.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_PROBLEM",
    "REPLAY_SLOTS",
    "RUNAWAY_DISTANCE",
    "RUNAWAY_SCALE",
    "RUNAWAY_WEIGHT",
    "Z95",
]

# The runaway bound (docs: design, reliability): one rule over every trained parameter,
# applied by the Rust engine after every update (rust/engine/problem.rs, the same values;
# tests/test_reliability.py checks that they agree), by the twin and by
# ``Trajectory.runaway`` on the records.
#: A mean farther than this many Mahalanobis units (the target's covariance of that mode)
#: from the target's mean of its mode has run away.
RUNAWAY_DISTANCE: float = 1e6
#: An old weight α, as computed in float64, within this of 0 or 1 has run away (α = 1.0
#: exactly is flagged: logit η ≳ 36.7; at the other end η ≲ −690.8).
RUNAWAY_WEIGHT: float = 1e-300
#: A trained component scale σ_k more than this factor above or below the target's scale of
#: its mode det(Σ*_k)^{1/(2d)} has run away (σ → ∞) or collapsed (σ → 0).
RUNAWAY_SCALE: float = 1e6

#: Default learning rate of every training entry point (simulate, population_flow, the twin,
#: sweeps, TOML ``[run]``, the benchmarks).
DEFAULT_LR: float = 0.05

#: The default problem of the docs (docs: theory-model): 1-D, old mode at −3, new target at
#: 3.5, target old weight α* = 0.75, unit covariance; the start differs from the target only
#: in its new mean, 0.5. ``target`` holds keyword arguments of ``TwoMode``; in ``d``
#: dimensions the means lie along u = (1, …, 1)/√d (``mixforget.bench.default_problem``).
DEFAULT_PROBLEM: dict[str, Any] = {
    "target": {"old_mean": [-3.0], "new_mean": [3.5], "old_weight": 0.75, "cov": 1.0},
    "start_new_mean": [0.5],
}

#: How replay slots of a batch are assigned (docs: theory-forward-kl): 'bernoulli' (each
#: sample is replay with probability λ) or 'stratified' (a fixed count per batch).
REPLAY_SLOTS: tuple[str, ...] = ("bernoulli", "stratified")

#: Two-sided 95 % quantile of the standard normal, Φ⁻¹(0.975), for mean ± Z95·s/√n intervals.
Z95: float = 1.959963984540054
