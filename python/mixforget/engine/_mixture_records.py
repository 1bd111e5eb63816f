"""The records of a K-component run (docs: theory-k-components): what a K-component stepper
hands the driver per chunk (:class:`MixtureRecords`) and the whole output, allocated up front
(:class:`MixtureBuffers`), from which the driver builds the
:class:`~mixforget.results.MixtureTrajectory`. The two-mode records (``_driver.Records``)
are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .._mixture_trajectory import MixtureTrajectory

__all__ = ["MixtureBuffers", "MixtureRecords"]


@dataclass(frozen=True)
class MixtureRecords:
    """The states at the m record steps a chunk crossed, replicate axis first."""

    weights: np.ndarray  #: (R, m, K)
    means: np.ndarray  #: (R, m, K, d)
    #: (R, m, K) cumulative starved batches per component; None for the population flow
    starved: Optional[np.ndarray] = None

    @classmethod
    def stack(
        cls, weights: list[np.ndarray], means: list[np.ndarray], starved: Any, plan: Any
    ) -> MixtureRecords:
        """Records from per-record lists ((R, K), (R, K, d), (R, K) or None each)."""
        r, k, d = plan.replicates, plan.n_components, plan.target.dim
        if not weights:
            empty_starved = None if starved is None else np.empty((r, 0, k), dtype=np.int64)
            return cls(np.empty((r, 0, k)), np.empty((r, 0, k, d)), empty_starved)
        return cls(
            np.stack(weights, axis=1),
            np.stack(means, axis=1),
            None if starved is None else np.stack(starved, axis=1),
        )


class MixtureBuffers:
    """The whole output of a K-component run; record 0 is the start model."""

    def __init__(self, plan: Any) -> None:
        r, n, k, d = plan.replicates, plan.n_records, plan.n_components, plan.target.dim
        self.weights = np.empty((r, n, k))
        self.means = np.empty((r, n, k, d))
        self.starved = np.zeros((r, n, k), dtype=np.int64)
        self.weights[:, 0] = plan.start.weights
        self.means[:, 0] = plan.start.means
        self.filled = 1

    def append(self, rec: MixtureRecords, at: Optional[int] = None) -> None:
        """Store ``rec`` after the last record (or from record ``at``)."""
        k = self.filled if at is None else at
        m = rec.weights.shape[1]
        self.weights[:, k : k + m] = rec.weights
        self.means[:, k : k + m] = rec.means
        if rec.starved is not None:
            self.starved[:, k : k + m] = rec.starved
        self.filled = k + m

    def trajectory(
        self, plan: Any, diverged: np.ndarray, meta: dict[str, Any]
    ) -> MixtureTrajectory:
        return MixtureTrajectory(
            steps=np.arange(0, plan.steps + 1, plan.record_every, dtype=np.int64),
            weights=self.weights,
            means=self.means,
            starved=self.starved,
            diverged=np.asarray(diverged, dtype=bool).reshape(plan.replicates),
            target=plan.target,
            meta=meta,
        )
