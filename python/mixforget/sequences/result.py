"""The record of a task sequence (docs: theory-sequences): :class:`StageRecord` (one stage's
states at absolute steps) and :class:`SequenceResult` (all stages, the per-task quantities,
their accuracy matrices, the metrics of :mod:`.metrics`, tables and figures).

Accuracy matrices are K × K: row 0 is the model pre-trained on task 0 (the start of stage 1,
before task 1 enters: component 0 alone), row i ≥ 1 the end of stage i; column j is task j,
NaN above the diagonal. Kinds (each averaged over the replicates kept in the last stage):

* ``'weight'``: w_j / w*_j, the component's weight relative to the stage target's (1 = at
  target; row 0 is 1 by definition);
* ``'mean_error'``: ‖μ_j − μ*_j‖ in the Mahalanobis metric of Σ*_j (lower is better: the
  summaries use its negative);
* ``'log_likelihood'``: E_{x∼p_j} log q(x), the model's own score on task j, by
  Gauss–Hermite quadrature (:mod:`.quadrature`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ..mixture import Mixture
from ..objectives import Objective, objective_from_dict
from . import metrics
from .curriculum import Curriculum
from .quadrature import expected_log_likelihood

__all__ = ["MATRIX_KINDS", "SequenceResult", "StageRecord"]

#: the per-task quantities with an accuracy matrix; True where larger is better
MATRIX_KINDS = {"weight": True, "mean_error": False, "log_likelihood": True}

#: the arrays of every stage in a saved result (``stage<s>_<name>``)
_STAGE_ARRAYS = ("steps", "weights", "means", "starved", "diverged")
#: the ``format`` entry of a saved result's metadata
SEQUENCE_FORMAT = "mixforget-sequence-1"


@dataclass(frozen=True)
class StageRecord:
    """Stage ``stage`` (1-based, task ``stage`` new): ``steps`` (n,) absolute, ``weights``
    (R, n, s+1), ``means`` (R, n, s+1, d), ``starved`` (R, n, s+1) cumulative within the
    stage (float; NaN where the engine does not count it), ``diverged`` (R,), its
    ``target`` and ``objective`` (with the resolved ``replay_mix``)."""

    stage: int
    steps: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    starved: np.ndarray
    diverged: np.ndarray
    target: Mixture
    objective: Objective

    @property
    def end_step(self) -> int:
        return int(self.steps[-1])

    @classmethod
    def of_two_mode(
        cls, stage: int, offset: int, traj: Any, target: Mixture, objective: Objective
    ) -> StageRecord:
        """From a two-mode Trajectory (stage 1): component 0 = old, 1 = new; the two-mode
        engine counts batches without an old sample (column 0), not the new (NaN)."""
        w0 = traj.old_weight
        starved = np.stack([traj.starved.astype(np.float64), np.full(w0.shape, np.nan)], axis=-1)
        return cls(
            stage=stage,
            steps=np.asarray(traj.steps, dtype=np.int64) + offset,
            weights=np.stack([w0, 1.0 - w0], axis=-1),
            means=np.stack([traj.old_mean, traj.new_mean], axis=2),
            starved=starved,
            diverged=np.asarray(traj.diverged, dtype=bool),
            target=target,
            objective=objective,
        )

    @classmethod
    def of_mixture(cls, stage: int, offset: int, traj: Any, objective: Objective) -> StageRecord:
        """From a MixtureTrajectory (stages ≥ 2)."""
        return cls(
            stage=stage,
            steps=np.asarray(traj.steps, dtype=np.int64) + offset,
            weights=traj.weights,
            means=traj.means,
            starved=traj.starved.astype(np.float64),
            diverged=np.asarray(traj.diverged, dtype=bool),
            target=traj.target,
            objective=objective,
        )


@dataclass(frozen=True)
class SequenceResult:
    """All stages of a sequence (:func:`mixforget.sequence`); ``curriculum`` its settings."""

    curriculum: Any
    stages: tuple[StageRecord, ...]
    population: bool = False
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_tasks(self) -> int:
        return self.curriculum.tasks.n_components

    @property
    def kept(self) -> np.ndarray:
        """(R,) replicates that never diverged (the last stage's flags include the carried)."""
        return ~self.stages[-1].diverged

    @property
    def boundaries(self) -> np.ndarray:
        """(K−2,) absolute steps where a new task entered after stage 1."""
        return np.array([st.end_step for st in self.stages[:-1]], dtype=np.int64)

    def weights_over_sequence(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps (N,), weights (R, N, K)) over the whole sequence, NaN for tasks not yet
        present; at a boundary the step appears twice (before and after the entry)."""
        r, k = self.stages[0].weights.shape[0], self.n_tasks
        steps, blocks = [], []
        for st in self.stages:
            pad = np.full((r, st.steps.size, k), np.nan)
            pad[:, :, : st.weights.shape[-1]] = st.weights
            steps.append(st.steps)
            blocks.append(pad)
        return np.concatenate(steps), np.concatenate(blocks, axis=1)

    def _rows(self) -> list[tuple[np.ndarray, np.ndarray, Any]]:
        """(weights (R, m), means (R, m, d), stage target or None) of rows 0 … K−1 of the
        matrices; row 0 is component 0 alone at the start of stage 1."""
        first = self.stages[0]
        r = first.weights.shape[0]
        rows: list[tuple[np.ndarray, np.ndarray, Any]] = [
            (np.ones((r, 1)), first.means[:, 0, :1], None)
        ]
        rows += [(st.weights[:, -1], st.means[:, -1], st.target) for st in self.stages]
        return rows

    def per_replicate_matrix(self, kind: str) -> np.ndarray:
        """(R, K, K) the per-replicate values of ``kind`` (see the module docstring)."""
        if kind not in MATRIX_KINDS:
            raise ValueError(f"kind must be one of {list(MATRIX_KINDS)}, got {kind!r}")
        if kind in self._cache:
            return self._cache[kind]
        tasks, k = self.curriculum.tasks, self.n_tasks
        rows = self._rows()
        out = np.full((rows[0][0].shape[0], k, k), np.nan)
        for i, (weights, means, target) in enumerate(rows):
            for j in range(i + 1):
                out[:, i, j] = self._value(kind, i, j, weights, means, target, tasks)
        self._cache[kind] = out
        return out

    @staticmethod
    def _value(kind, i, j, weights, means, target, tasks) -> np.ndarray:
        if kind == "weight":
            return weights[:, j] / (1.0 if i == 0 else target.weights[j])
        if kind == "mean_error":
            chol = np.linalg.cholesky(tasks.cov_matrix(j))
            white = np.linalg.solve(chol, (means[:, j] - tasks.means[j]).T).T
            return np.sqrt(np.sum(white * white, axis=-1))
        covs = [tasks.cov_matrix(c) for c in range(weights.shape[1])]
        return expected_log_likelihood(tasks.means[j], tasks.cov_matrix(j), weights, means, covs)

    def matrix(self, kind: str = "weight") -> np.ndarray:
        """(K, K) the accuracy-like matrix A[i, j] of ``kind`` averaged over the kept
        replicates (NaN above the diagonal)."""
        values = self.per_replicate_matrix(kind)[self.kept]
        if not values.shape[0]:
            return np.full(values.shape[1:], np.nan)
        return values.mean(axis=0)

    def summary(self, kind: str = "weight") -> dict[str, Any]:
        """average, bwt, forgetting (K−1 list), mean_forgetting of ``kind``'s matrix, in the
        larger-is-better orientation (``mean_error`` negated)."""
        a = self.matrix(kind)
        if not MATRIX_KINDS[kind]:
            a = -a
        return {
            "average": metrics.average_accuracy(a),
            "bwt": metrics.backward_transfer(a),
            "forgetting": metrics.forgetting(a).tolist(),
            "mean_forgetting": metrics.mean_forgetting(a),
        }

    def starvation(self) -> np.ndarray:
        """(K−1, K) per stage (row s−1) and task: the fraction of the stage's batches with no
        sample of the task, over the kept replicates (NaN where not counted or absent)."""
        out = np.full((len(self.stages), self.n_tasks), np.nan)
        for st in self.stages:
            n_steps = st.end_step - int(st.steps[0])
            kept = st.starved[self.kept, -1]
            out[st.stage - 1, : kept.shape[-1]] = kept.mean(axis=0) / n_steps
        return out

    def to_pandas(self) -> Any:
        """Long table, one row per (row i of the matrices, task j ≤ i): stage, task, and the
        mean of every kind. Needs pandas."""
        import pandas as pd

        k = self.n_tasks
        mats = {kind: self.matrix(kind) for kind in MATRIX_KINDS}
        rows = [
            {"stage": i, "task": j, **{kind: float(m[i, j]) for kind, m in mats.items()}}
            for i in range(k)
            for j in range(i + 1)
        ]
        return pd.DataFrame(rows)

    def to_markdown(self, kind: str = "weight", digits: int = 3) -> str:
        """The matrix of ``kind`` as a Markdown table (rows: after stage i; columns: tasks),
        then its summary line."""
        a = self.matrix(kind)
        k = a.shape[0]
        head = "| after stage | " + " | ".join(f"task {j}" for j in range(k)) + " |"
        lines = [head, "|" + "---|" * (k + 1)]
        for i in range(k):
            cells = [f"{a[i, j]:.{digits}f}" if j <= i else "" for j in range(k)]
            lines.append(f"| {i} | " + " | ".join(cells) + " |")
        s = self.summary(kind)
        lines.append("")
        lines.append(
            f"{kind}: average {s['average']:.{digits}f}, BWT {s['bwt']:.{digits}f}, "
            f"mean forgetting {s['mean_forgetting']:.{digits}f}"
        )
        return "\n".join(lines)

    def plot_weights(self, ax: Any = None) -> Any:
        """Mean weight of every task over the whole sequence, stage boundaries dashed."""
        from .._plotting import ensure_axes

        ax = ensure_axes(ax)
        steps, weights = self.weights_over_sequence()
        with warnings.catch_warnings():  # tasks not yet present are NaN in every replicate
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(weights[self.kept], axis=0) if self.kept.any() else weights[0]
        for j in range(self.n_tasks):
            ax.plot(steps, mean[:, j], color=f"C{j}", label=f"task {j}")
        for b in self.boundaries:
            ax.axvline(b, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_xlabel("step (absolute)")
        ax.set_ylabel(r"component weight $w_j$")
        ax.legend(fontsize="small")
        return ax

    def plot_matrix(self, kind: str = "weight", ax: Any = None) -> Any:
        """Heatmap of the accuracy matrix of ``kind``, values written in the cells."""
        from .._plotting import ensure_axes

        ax = ensure_axes(ax)
        a = self.matrix(kind)
        image = ax.imshow(np.ma.masked_invalid(a), cmap="viridis")
        low, high = np.nanmin(a), np.nanmax(a)
        for i in range(a.shape[0]):
            for j in range(i + 1):
                bright = high > low and (a[i, j] - low) / (high - low) > 0.6
                colour = "k" if bright else "w"  # readable on viridis' light and dark ends
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=8)
        ax.set_xlabel("task j")
        ax.set_ylabel("after stage i")
        ax.set_title(kind)
        ax.figure.colorbar(image, ax=ax)
        return ax

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write an .npz (no pickled objects), atomically: every stage's arrays as
        ``stage<s>_<name>`` and the curriculum, stage targets and objectives as JSON text.
        :meth:`load` reads it back to an equal result (the same matrices bit for bit)."""
        path = Path(path)
        meta = {
            "format": SEQUENCE_FORMAT,
            "curriculum": self.curriculum.as_dict(),
            "population": self.population,
            "stages": [
                {
                    "stage": st.stage,
                    "target": st.target.to_dict(),
                    "objective": st.objective.as_dict(),
                }
                for st in self.stages
            ],
        }
        arrays = {
            f"stage{st.stage}_{name}": getattr(st, name)
            for st in self.stages
            for name in _STAGE_ARRAYS
        }
        with atomic_write(path) as fh:
            np.savez_compressed(fh, meta_json=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SequenceResult:
        """Read a file written by :meth:`save` (``allow_pickle=False``); ValueError naming the
        file when it is not one."""
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            files = set(getattr(data, "files", ()))
            meta = json.loads(str(data["meta_json"])) if "meta_json" in files else {}
            if meta.get("format") != SEQUENCE_FORMAT:
                raise ValueError(f"{path} is not a saved SequenceResult (SequenceResult.save)")
            stages = tuple(
                StageRecord(
                    stage=entry["stage"],
                    **{n: data[f"stage{entry['stage']}_{n}"] for n in _STAGE_ARRAYS},
                    target=Mixture(**entry["target"]),
                    objective=objective_from_dict(entry["objective"]),
                )
                for entry in meta["stages"]
            )
        return cls(
            curriculum=_curriculum_from_dict(meta["curriculum"]),
            stages=stages,
            population=bool(meta["population"]),
        )


def _curriculum_from_dict(data: dict[str, Any]) -> Curriculum:
    """The :class:`Curriculum` of :meth:`Curriculum.as_dict` (the settings were validated
    when the sequence ran; JSON keeps every float exactly)."""
    return Curriculum(
        tasks=Mixture(**data["tasks"]),
        objective=objective_from_dict(data["objective"]),
        stage_weights=tuple(np.array(w, dtype=np.float64) for w in data["stage_weights"]),
        replay_mixes=tuple(tuple(m) for m in data["replay_mixes"]),
        steps=tuple(data["steps"]),
        lr=tuple(data["lr"]),
        batch_size=tuple(data["batch_size"]),
        record_every=int(data["record_every"]),
        start_offset=np.array(data["start_offset"], dtype=np.float64),
        entry_weight=data["entry_weight"],
        start=Mixture(**data["start"]),
    )
