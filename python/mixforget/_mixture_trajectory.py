"""The recorded training of a K-component run, K ≥ 3 (docs: theory-k-components):
:class:`MixtureTrajectory`, re-exported by :mod:`mixforget.results`.

Every array has a component axis: ``weights`` (R, n_rec, K), ``means`` (R, n_rec, K, d),
``starved`` (R, n_rec, K) cumulative starved batches per component, ``drift`` (R, n_rec, K).
The two-mode attributes of :class:`~mixforget.results.Trajectory` (old_weight, old_mean, …)
raise AttributeError naming their K-component replacement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._defaults import RUNAWAY_DISTANCE, RUNAWAY_WEIGHT
from ._files import atomic_write
from ._stats import mean_interval
from .mixture import Mixture

__all__ = ["MIXTURE_ARRAYS", "MixtureTrajectory"]

#: the arrays of a saved K-component trajectory (``weights`` marks the file's kind)
MIXTURE_ARRAYS = ("steps", "weights", "means", "starved", "diverged", "meta_json")

#: two-mode attribute → what to use on a K-component trajectory
_TWO_MODE_ONLY = {
    "old_weight": "weights[..., j]",
    "old_mean": "means[..., j, :]",
    "new_mean": "means[..., j, :]",
    "old_scale": "(no trainable scales for K >= 3)",
    "new_scale": "(no trainable scales for K >= 3)",
    "mass_forgotten": "target.weights - weights",
    "new_error": "drift[..., j]",
    "overlap_accuracy": "(not defined for K >= 3 yet)",
    "drop": "(not defined for K >= 3 yet)",
    "gain": "(not defined for K >= 3 yet)",
    "start_model": "Mixture(**meta['start'])",
}


@dataclass(frozen=True)
class MixtureTrajectory:
    """Recorded training of R replicates of a K-component mixture (docs: api).

    ``steps`` (n_rec,) — record 0 is the start; ``weights`` (R, n_rec, K); ``means``
    (R, n_rec, K, d); ``starved`` (R, n_rec, K) cumulative count of batches with no sample
    labelled j (zero for the population flow); ``diverged`` (R,) the replicates the engine
    froze; ``target`` the K-component world p*; ``meta`` the settings and the seed record.
    """

    steps: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    starved: np.ndarray
    diverged: np.ndarray
    target: Mixture
    meta: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name in _TWO_MODE_ONLY:
            raise AttributeError(
                f"{name} is a two-mode attribute; this trajectory has K = "
                f"{self.n_components} components: use {_TWO_MODE_ONLY[name]}"
            )
        raise AttributeError(f"'MixtureTrajectory' object has no attribute {name!r}")

    @property
    def n_components(self) -> int:
        """K."""
        return int(self.weights.shape[-1])

    @property
    def replicates(self) -> int:
        return int(self.weights.shape[0])

    @property
    def trains_scales(self) -> bool:
        """False: K-component runs keep their covariances fixed."""
        return False

    def __repr__(self) -> str:
        r, n, k = self.weights.shape
        kind = str(self.meta.get("objective", {}).get("kind", "?"))
        kept = ~np.asarray(self.diverged, dtype=bool)
        final = (
            np.array2string(self.weights[kept, -1].mean(axis=0), precision=3)
            if kept.any() and n
            else "n/a"
        )
        return (
            f"<MixtureTrajectory {kind}: {r} replicates ({int(np.sum(~kept))} diverged), "
            f"{n} records, K={k}, d={self.means.shape[-1]}, final mean weights {final}>"
        )

    @property
    def starved_by_component(self) -> np.ndarray:
        """(R, K) starved batches of each component over the whole run."""
        return self.starved[:, -1, :]

    @property
    def drift(self) -> np.ndarray:
        """(R, n_rec, K) ‖μ_j(t) − μ_j*‖ in the Mahalanobis metric of the target's Σ_j."""
        out = np.empty(self.weights.shape)
        for j in range(self.n_components):
            chol = np.linalg.cholesky(self.target.cov_matrix(j))
            delta = self.means[:, :, j, :] - self.target.means[j]
            white = np.linalg.solve(chol, delta.reshape(-1, delta.shape[-1]).T).T
            out[:, :, j] = np.sqrt(np.sum(white * white, axis=-1)).reshape(delta.shape[:-1])
        return out

    @property
    def runaway(self) -> np.ndarray:
        """(R,) replicates whose records left the bound: a mean beyond RUNAWAY_DISTANCE from
        its target mean, a weight below RUNAWAY_WEIGHT, or a non-finite value."""
        with np.errstate(invalid="ignore"):
            far = ~(self.drift <= RUNAWAY_DISTANCE)
            light = ~(self.weights >= RUNAWAY_WEIGHT)
        return np.asarray((far | light).any(axis=(1, 2)), dtype=bool)

    @property
    def excluded(self) -> np.ndarray:
        """(R,) replicates left out of summaries: diverged or runaway."""
        return np.asarray(self.diverged, dtype=bool) | self.runaway

    def summary(self) -> dict[str, Any]:
        """Means and 95% intervals at the last record over the kept replicates: keys
        replicates, diverged, then weight_j, drift_j, sup_drift_j, starved_j for every
        component j (each a dict mean, lo, hi)."""
        excluded = self.excluded
        keep = ~excluded
        out: dict[str, Any] = {"replicates": int(keep.sum()), "diverged": int(excluded.sum())}
        if not keep.any():
            return out
        drift = self.drift[keep]
        for j in range(self.n_components):
            quantities = {
                f"weight_{j}": self.weights[keep, -1, j],
                f"drift_{j}": drift[:, -1, j],
                f"sup_drift_{j}": drift[:, :, j].max(axis=1),
                f"starved_{j}": self.starved[keep, -1, j].astype(np.float64),
            }
            for name, values in quantities.items():
                mean, lo, hi = mean_interval(values)
                out[name] = {"mean": float(mean), "lo": float(lo), "hi": float(hi)}
        return out

    def to_pandas(self) -> Any:
        """Long table, one row per (replicate, record): replicate, step, diverged, then for
        every component j weight_j, drift_j, starved_j, mean_j_i. Needs pandas."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("to_pandas() needs pandas: pip install 'mixforget[pandas]'") from exc
        r, n, k = self.weights.shape
        drift = self.drift
        cols: dict[str, Any] = {
            "replicate": np.repeat(np.arange(r), n),
            "step": np.tile(self.steps, r),
            "diverged": np.repeat(self.diverged, n),
        }
        for j in range(k):
            cols[f"weight_{j}"] = self.weights[:, :, j].ravel()
            cols[f"drift_{j}"] = drift[:, :, j].ravel()
            cols[f"starved_{j}"] = self.starved[:, :, j].ravel()
            for i in range(self.means.shape[-1]):
                cols[f"mean_{j}_{i}"] = self.means[:, :, j, i].ravel()
        return pd.DataFrame(cols)

    def plot(self, ax: Any = None, label: Optional[str] = None) -> Any:
        """Mean weight of every component with its 95% band against steps, one colour per
        component, a legend naming each (new components marked). Returns the axes."""
        from ._plotting import band, ensure_axes, kept_replicates

        ax = ensure_axes(ax)
        keep = kept_replicates(self)
        new = set(self.meta.get("new_components", []))
        prefix = f"{label}: " if label else ""
        for j in range(self.n_components):
            role = "new" if j in new else "old"
            band(
                ax,
                self.steps,
                self.weights[keep, :, j],
                color=f"C{j}",
                label=f"{prefix}component {j} ({role}), target w = {self.target.weights[j]:.3g}",
            )
        ax.set_xlabel("step")
        ax.set_ylabel(r"component weight $w_j(t)$")
        ax.legend(fontsize="small")
        return ax

    def save(self, path: str | Path) -> Path:
        """Write an .npz (no pickled objects), atomically; metadata as JSON text."""
        path = Path(path)
        meta_json = json.dumps({"target": self.target.to_dict(), "meta": self.meta}, default=_plain)
        with atomic_write(path) as fh:
            np.savez_compressed(
                fh,
                steps=self.steps,
                weights=self.weights,
                means=self.means,
                starved=self.starved,
                diverged=self.diverged,
                meta_json=np.array(meta_json),
            )
        return path

    @classmethod
    def from_arrays(cls, data: Any) -> MixtureTrajectory:
        """The trajectory of a loaded .npz (``np.load`` result) written by :meth:`save`."""
        meta = json.loads(str(data["meta_json"]))
        return cls(
            steps=data["steps"],
            weights=data["weights"],
            means=data["means"],
            starved=data["starved"],
            diverged=data["diverged"],
            target=Mixture(**meta["target"]),
            meta=meta["meta"],
        )


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
