"""Result objects: :class:`Trajectory` (training runs) and :class:`GradientEstimates`."""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._defaults import RUNAWAY_DISTANCE, RUNAWAY_SCALE, RUNAWAY_WEIGHT
from ._files import atomic_write
from ._mixture_trajectory import MIXTURE_ARRAYS, MixtureTrajectory
from ._overlap import overlap_accuracy_records
from ._plotting import plot_trajectory
from ._stats import mean_interval
from .mixture import TwoMode, component_scales
from .objectives import objective_from_dict

__all__ = [
    "RUNAWAY_DISTANCE",
    "RUNAWAY_SCALE",
    "RUNAWAY_WEIGHT",
    "GradientEstimates",
    "MixtureTrajectory",
    "Trajectory",
    "mean_interval",
]

#: Replicates per block when a property walks the (R, n_rec, d) records: bounds the
#: temporaries of :meth:`Trajectory.summary` and :attr:`Trajectory.runaway` to ~2 MB
#: however long the run.
_BLOCK_ELEMENTS = 1 << 15


@dataclass(frozen=True)
class Trajectory:
    """Recorded training of R replicates (docs: api).

    Arrays: ``steps`` (n_rec,) — record 0 is the start; ``old_weight`` (R, n_rec);
    ``old_mean``, ``new_mean`` (R, n_rec, d); ``starved`` (R, n_rec) cumulative count of
    starved batches (docs: theory-starvation); ``diverged`` (R,) — replicates that the engine
    stopped because their parameters became non-finite (their records after that point repeat the
    last finite state) or left the runaway bound of :attr:`runaway` (their records repeat
    the state that crossed it).
    ``target`` is the world p*, ``meta`` holds the objective, the settings and the seed
    record (``meta["seed"]``) that reproduces the run.
    ``old_scale``, ``new_scale`` (R, n_rec): the component scales σ_k (component k's
    covariance is σ_k²·S_k, S_k = Σ_k / det(Σ_k)^{1/d}; in one dimension the standard
    deviation). They move only in runs with ``train_scales=True`` (``meta["train_scales"]``);
    otherwise they are constant at the start value det(Σ_k)^{1/(2d)}, filled in from
    ``meta["start"]`` when not given (None when there is no start model).
    """

    steps: np.ndarray
    old_weight: np.ndarray
    old_mean: np.ndarray
    new_mean: np.ndarray
    starved: np.ndarray
    diverged: np.ndarray
    target: TwoMode
    meta: dict[str, Any] = field(default_factory=dict)
    old_scale: Optional[np.ndarray] = None
    new_scale: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.old_scale is not None and self.new_scale is not None:
            return
        start = self.meta.get("start") if isinstance(self.meta, dict) else None
        if start is None:
            return
        model = start if isinstance(start, TwoMode) else TwoMode(**start)
        shape = np.shape(self.old_weight)
        for name, sigma in zip(("old_scale", "new_scale"), component_scales(model)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(shape, sigma))

    @property
    def trains_scales(self) -> bool:
        """True when the run trained the component scales (``meta["train_scales"]``)."""
        return bool(self.meta.get("train_scales", False))

    @property
    def replicates(self) -> int:
        return int(self.old_weight.shape[0])

    def __repr__(self) -> str:
        """Short: objective, shapes and the final mean old weight, never the arrays."""
        objective = _objective_text(self.meta.get("objective"))
        if self.meta.get("population"):
            objective += ", population flow"
        r, n = self.old_weight.shape
        kept = ~np.asarray(self.diverged, dtype=bool)
        final = f"{float(self.old_weight[kept, -1].mean()):.4g}" if kept.any() and n else "n/a"
        steps = f"steps {int(self.steps[0])}..{int(self.steps[-1])}" if n else "no records"
        return (
            f"<Trajectory {objective}: {r} replicates ({int(np.sum(~kept))} diverged), "
            f"{n} records ({steps}), d={self.old_mean.shape[-1]}, final mean old weight "
            f"{final} (α* = {self.target.old_weight:g}, Δ = {self.target.separation:.4g})>"
        )

    @property
    def n_components(self) -> int:
        """K = 2 (old, new)."""
        return 2

    @property
    def weights(self) -> np.ndarray:
        """(R, n_rec, 2) component weights [α, 1 − α], as :attr:`MixtureTrajectory.weights`."""
        return np.stack([self.old_weight, 1.0 - self.old_weight], axis=-1)

    @property
    def means(self) -> np.ndarray:
        """(R, n_rec, 2, d) component means [μ_o, μ_n], as :attr:`MixtureTrajectory.means`."""
        return np.stack([self.old_mean, self.new_mean], axis=2)

    @property
    def drift(self) -> np.ndarray:
        """(R, n_rec) old-component drift D_t = ‖μ_o(t) − μ_o*‖_Σ (docs: theory-model,
        Mahalanobis)."""
        return self.target.mahalanobis(self.old_mean - self.target.old_mean, "old")

    @property
    def new_error(self) -> np.ndarray:
        """(R, n_rec) new-task error ‖μ_n(t) − μ_n*‖_Σ."""
        return self.target.mahalanobis(self.new_mean - self.target.new_mean, "new")

    @property
    def mass_forgotten(self) -> np.ndarray:
        """(R, n_rec) α* − α_t (docs: theory-model, mass forgetting)."""
        return self.target.old_weight - self.old_weight

    # -- overlap accuracy (arXiv 2510.18874) ---------------------------------------------
    def start_model(self) -> TwoMode:
        """The start model q_0 as recorded in ``meta["start"]`` (its covariances are the
        model's covariances along the run, scaled by the trained σ_k when there are any)."""
        start = self.meta.get("start")
        if start is None:
            raise ValueError(
                "this Trajectory has no meta['start'] (the start model), whose covariances the "
                "overlap accuracy needs; trajectories from mixforget.simulate, "
                "population_flow and the reference implementation record it"
            )
        return start if isinstance(start, TwoMode) else TwoMode(**start)

    def overlap_accuracy(self) -> np.ndarray:
        """(R, n_rec, 2) overlap accuracies [acc_old, acc_new] at every record, in closed form
        (:func:`mixforget.theory.overlap_accuracy`):

        acc_old(t) = ∫ min(α* p*_old, α_t q_old,t) dx / α*,
        acc_new(t) = ∫ min((1 − α*) p*_new, (1 − α_t) q_new,t) dx / (1 − α*),

        with the recorded α_t, μ_o(t), μ_n(t), the start model's covariances
        (:meth:`start_model`) and, when the trajectory records trained scales
        (``old_scale`` / ``new_scale``), component covariances σ_k(t)²·S_k,
        S_k = Σ_k / det(Σ_k)^{1/d}. Exact for d = 1; for d > 1 when each model component's
        covariance equals the target's (NotImplementedError otherwise). NaN at the records
        beyond the runaway bound (:attr:`runaway`: a σ of 0 or inf, σ² overflowing), so
        that :meth:`gain` and :meth:`drop` never report a runaway as success."""
        start = self.start_model()
        beyond = self._records_beyond_bound()
        star_scales = component_scales(self.target)
        scales = (self.old_scale, self.new_scale) if self.trains_scales else (None, None)

        def safe(values: Any, fill: Any) -> Any:
            # records beyond the runaway bound (σ = inf or 0, σ² overflowing) are evaluated
            # at a harmless stand-in and reported NaN below
            if values is None:
                return None
            mask = beyond if np.ndim(values) == 2 else beyond[..., None]
            return np.where(mask, fill, values)

        acc = overlap_accuracy_records(
            self.target,
            safe(self.old_weight, self.target.old_weight),
            safe(self.old_mean, self.target.old_mean),
            safe(self.new_mean, self.target.new_mean),
            start.cov_matrix("old"),
            start.cov_matrix("new"),
            # per-record σ_k of runs with trainable scales; None (the start covariances
            # exactly) for runs whose scales stayed fixed
            safe(scales[0], star_scales[0]),
            safe(scales[1], star_scales[1]),
        )
        acc[beyond] = np.nan
        return acc

    def drop(self) -> np.ndarray:
        """(R, n_rec) forgetting of the old task, drop(t) = acc_old(0) − acc_old(t)
        (:meth:`overlap_accuracy`; positive when the old task is lost, 0 at the start; NaN
        beyond the runaway bound)."""
        acc = self.overlap_accuracy()[..., 0]
        return acc[:, :1] - acc

    def gain(self) -> np.ndarray:
        """(R, n_rec) learning of the new task, gain(t) = acc_new(t) − acc_new(0)
        (:meth:`overlap_accuracy`; positive when the new task is learnt, 0 at the start; NaN
        beyond the runaway bound)."""
        acc = self.overlap_accuracy()[..., 1]
        return acc - acc[:, :1]

    @property
    def runaway(self) -> np.ndarray:
        """(R,) replicates whose recorded parameters left the documented bound at some record,
        one rule over every trained parameter: a mean farther than :data:`RUNAWAY_DISTANCE`
        (10^6) Mahalanobis units from the target's mean of its mode; an old weight within
        :data:`RUNAWAY_WEIGHT` (1e-300) of 0 or 1 (a recorded α = 1.0 included); in runs
        that train the scales, a σ_k more than :data:`RUNAWAY_SCALE` (10^6) times above or
        below the target's scale of its mode (decided on log σ). Such a run has left the
        model's meaningful range even while finite. The engine and the twin apply the same
        bound after every update (flagging the replicate ``diverged``); this property also
        covers trajectories from elsewhere (loaded files)."""
        return np.asarray(self._records_beyond_bound().any(axis=1), dtype=bool)

    def _blocks(self) -> list[slice]:
        """Slices of replicates whose (block, n_rec, d) temporaries stay small."""
        r, n = self.old_weight.shape
        step = max(1, _BLOCK_ELEMENTS // max(1, n * self.old_mean.shape[-1]))
        return [slice(i, min(i + step, r)) for i in range(0, r, step)]

    def _records_beyond_bound(self) -> np.ndarray:
        """(R, n_rec) records beyond the runaway bound of :attr:`runaway` (NaN counts as
        beyond, as in the engine), computed block by block."""
        out = np.empty(self.old_weight.shape, dtype=bool)
        scaled = self.trains_scales and self.old_scale is not None and self.new_scale is not None
        log_stars = [math.log(s) for s in component_scales(self.target)]
        for rows in self._blocks():
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                w = self.old_weight[rows]
                beyond = (w <= RUNAWAY_WEIGHT) | (1.0 - w <= RUNAWAY_WEIGHT) | np.isnan(w)
                for means, star, which in (
                    (self.old_mean, self.target.old_mean, "old"),
                    (self.new_mean, self.target.new_mean, "new"),
                ):
                    dist = self.target.mahalanobis(means[rows] - star, which)
                    beyond |= ~(dist <= RUNAWAY_DISTANCE)
                if scaled:
                    for sd, log_star in zip((self.old_scale, self.new_scale), log_stars):
                        log_ratio = np.log(np.asarray(sd)[rows]) - log_star
                        beyond |= ~(np.abs(log_ratio) <= math.log(RUNAWAY_SCALE))
            out[rows] = beyond
        return out

    @property
    def excluded(self) -> np.ndarray:
        """(R,) replicates left out of summaries: ``diverged`` (non-finite) or
        :attr:`runaway`."""
        return np.asarray(self.diverged, dtype=bool) | self.runaway

    def summary(self) -> dict[str, Any]:
        """Means and 95% intervals at the last record, over the replicates that neither
        diverged nor ran away (:attr:`excluded`).

        Keys: replicates (kept), diverged (excluded: non-finite or beyond the bound of
        :attr:`runaway`), old_weight / drift / sup_drift / new_error / starved (each a dict
        mean, lo, hi). Computed block by block of replicates: no (R, n_rec) temporaries."""
        excluded = self.excluded
        keep = ~excluded
        out: dict[str, Any] = {"replicates": int(keep.sum()), "diverged": int(excluded.sum())}
        if not keep.any():
            return out
        sup_drift = np.concatenate(
            [
                self.target.mahalanobis(
                    self.old_mean[rows][keep[rows]] - self.target.old_mean, "old"
                ).max(axis=1)
                for rows in self._blocks()
            ]
        )
        last = self.old_weight.shape[1] - 1
        quantities = {
            "old_weight": self.old_weight[keep, last],
            "drift": self.target.mahalanobis(
                self.old_mean[keep, last] - self.target.old_mean, "old"
            ),
            "sup_drift": sup_drift,
            "new_error": self.target.mahalanobis(
                self.new_mean[keep, last] - self.target.new_mean, "new"
            ),
            "starved": self.starved[keep, last].astype(np.float64),
        }
        for name, values in quantities.items():
            mean, lo, hi = mean_interval(values)
            out[name] = {"mean": float(mean), "lo": float(lo), "hi": float(hi)}
        return out

    def to_pandas(self) -> Any:
        """Long table, one row per (replicate, record): replicate, step, old_weight, drift,
        new_error, starved, diverged, old_mean_i, new_mean_i (and old_scale, new_scale when
        the run trained them). Needs pandas (extra 'pandas')."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ImportError("to_pandas() needs pandas: pip install 'mixforget[pandas]'") from exc
        r, n = self.old_weight.shape
        cols: dict[str, Any] = {
            "replicate": np.repeat(np.arange(r), n),
            "step": np.tile(self.steps, r),
            "old_weight": self.old_weight.ravel(),
            "drift": self.drift.ravel(),
            "new_error": self.new_error.ravel(),
            "starved": self.starved.ravel(),
            "diverged": np.repeat(self.diverged, n),
        }
        for i in range(self.old_mean.shape[2]):
            cols[f"old_mean_{i}"] = self.old_mean[:, :, i].ravel()
            cols[f"new_mean_{i}"] = self.new_mean[:, :, i].ravel()
        if self.trains_scales and self.old_scale is not None and self.new_scale is not None:
            cols["old_scale"] = np.asarray(self.old_scale).ravel()
            cols["new_scale"] = np.asarray(self.new_scale).ravel()
        return pd.DataFrame(cols)

    def plot(self, ax: Any = None, label: Optional[str] = None) -> Any:
        """Mean old weight with its 95% band against steps, drift on a twin axis
        (optional extra 'plot'). Returns the axes."""
        return plot_trajectory(self, ax=ax, label=label)

    # -- storage ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write an .npz (no pickled objects); the metadata is stored as JSON text.

        Atomic: written to an exclusively created temporary file in the same directory, then
        moved over ``path``; a failed write leaves ``path`` untouched and nothing else."""
        path = Path(path)
        meta = {"target": self.target.to_dict(), "meta": self.meta}
        meta_json = json.dumps(meta, default=_json_default)
        scales: dict[str, Any] = {
            name: value
            for name, value in (("old_scale", self.old_scale), ("new_scale", self.new_scale))
            if value is not None
        }
        with atomic_write(path) as fh:
            np.savez_compressed(
                fh,
                steps=self.steps,
                old_weight=self.old_weight,
                old_mean=self.old_mean,
                new_mean=self.new_mean,
                starved=self.starved,
                diverged=self.diverged,
                meta_json=np.array(meta_json),
                **scales,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a file written by :meth:`save` or :meth:`MixtureTrajectory.save` (which
        loads as a :class:`MixtureTrajectory`; ``allow_pickle=False``). A file that is not
        one raises ValueError naming it (missing files raise FileNotFoundError)."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                if fh.read(4) != b"PK\x03\x04":
                    raise ValueError("not an .npz (zip) archive")
            with np.load(path, allow_pickle=False) as data:
                if hasattr(data, "files") and set(MIXTURE_ARRAYS) <= set(data.files):
                    return MixtureTrajectory.from_arrays(data)  # type: ignore[return-value]
                if not hasattr(data, "files") or not set(_SAVED_ARRAYS) <= set(data.files):
                    raise ValueError("not an .npz archive with the arrays of a Trajectory")
                meta = json.loads(str(data["meta_json"]))
                # files written before trainable scales have no scale arrays: filled in
                # from the start model (constant), as for any run without train_scales
                scales = {n: data[n] for n in ("old_scale", "new_scale") if n in data.files}
                return cls(
                    steps=data["steps"],
                    old_weight=data["old_weight"],
                    old_mean=data["old_mean"],
                    new_mean=data["new_mean"],
                    starved=data["starved"],
                    diverged=data["diverged"],
                    target=TwoMode(**meta["target"]),
                    meta=meta["meta"],
                    **scales,
                )
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (ValueError, OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(
                f"{path} is not a trajectory file written by Trajectory.save: {exc}"
            ) from None


_SAVED_ARRAYS = (
    "steps",
    "old_weight",
    "old_mean",
    "new_mean",
    "starved",
    "diverged",
    "meta_json",
)


def _objective_text(record: Any) -> str:
    """Short text of an objective record (``Objective.as_dict()``), e.g.
    ``ReverseKL(replay=0.25)``; the kind alone when it cannot be rebuilt."""
    if not isinstance(record, dict) or "kind" not in record:
        return "objective n/a"
    try:
        return objective_from_dict(record).label
    except (ValueError, TypeError, KeyError):
        return str(record["kind"])


def numpy_to_plain(value: Any) -> Any:
    """NumPy arrays and scalars as plain Python (lists, int, float); anything else unchanged."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _json_default(value: Any) -> Any:
    plain = numpy_to_plain(value)
    if plain is value:
        raise TypeError(f"cannot store {type(value).__name__} in the metadata")
    return plain


@dataclass(frozen=True)
class GradientEstimates:
    """One-step Monte Carlo study (docs: api, ``estimate_gradient``).

    ``gradients`` (batches, 1 + 2d) ordered (weight, old_mean[0..d], new_mean[0..d]) in the
    original coordinates, then (old_scale, new_scale) when the scales train (3 + 2d
    columns); ``starved`` (batches,) bool; ``old_count`` (batches,) number of
    old-labelled samples per batch; ``seed`` the record reproducing it.
    """

    gradients: np.ndarray
    starved: np.ndarray
    old_count: np.ndarray
    seed: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Short: the number of batches and parameters, the starved fraction."""
        batches, params = self.gradients.shape
        starved = float(np.mean(self.starved)) if batches else float("nan")
        return (
            f"<GradientEstimates {batches} batches x {params} parameters, "
            f"starved fraction {starved:.4g}>"
        )

    @property
    def mean(self) -> np.ndarray:
        """Mean gradient over batches."""
        return self.gradients.mean(axis=0)

    @property
    def stderr(self) -> np.ndarray:
        """Standard error of :attr:`mean` per parameter."""
        n = self.gradients.shape[0]
        return self.gradients.std(axis=0, ddof=1) / np.sqrt(n)

    def as_dict(self, dim: int) -> dict[str, np.ndarray]:
        """Mean gradient split into {weight, old_mean, new_mean} (and old_scale, new_scale
        when the scales train)."""
        m = self.mean
        out = {"weight": m[0], "old_mean": m[1 : 1 + dim], "new_mean": m[1 + dim : 1 + 2 * dim]}
        if m.shape[0] == 3 + 2 * dim:
            out["old_scale"], out["new_scale"] = m[1 + 2 * dim], m[2 + 2 * dim]
        return out
