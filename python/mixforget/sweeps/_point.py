"""The work of one sweep point, run on a worker process: plain data in (the task), plain data
out (the row; a K-component trajectory or a sequence result travels as the picklable value
it is), so that any executor can run it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .._rng import seed_from_record
from ..mixture import Mixture
from ..objectives import objective_from_dict
from ..population import population_flow
from ..results import MixtureTrajectory
from ..simulate import simulate
from ._kinds import compute_mixture_summary, compute_sequence_point, model_from_dict
from .grid import METRICS


def _empty_metrics() -> dict[str, Any]:
    """The two-mode columns of a point that has none (K-component runs, sequences)."""
    metrics: dict[str, Any] = {
        "separation": None,
        "bhattacharyya": None,
        "old_weight_population": None,
        "sup_drift_population": None,
    }
    metrics.update({f"{name}_{s}": None for name in METRICS for s in ("mean", "lo", "hi")})
    return metrics


def _compute_other_point(task: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row of a sequence point or of a K >= 3 point, None for a two-mode one."""
    seed = seed_from_record(task["seed"])
    began = time.perf_counter()
    if task.get("kind") == "sequence":
        found, result = compute_sequence_point(task, seed)
        wall = time.perf_counter() - began
        summary = found.pop("summary")
        return {
            "metrics": {**_empty_metrics(), **found},
            "wall_time": wall,
            "trajectory": result if task["keep"] else None,
            "summary": summary,
        }
    target, start = model_from_dict(task["target"]), model_from_dict(task["start"])
    if not (isinstance(target, Mixture) and target.n_components >= 3):
        return None
    objective = objective_from_dict(task["objective"])
    traj = simulate(target, start, objective, rng=seed, **task["run"])
    wall = time.perf_counter() - began
    assert isinstance(traj, MixtureTrajectory)  # K >= 3 runs on the K-component engine
    summary = compute_mixture_summary(traj, task)
    counts = traj.summary()
    return {
        "metrics": {
            **_empty_metrics(),
            "replicates": counts["replicates"],
            "diverged": counts["diverged"],
        },
        "wall_time": wall,
        "trajectory": traj if task["keep"] else None,
        "summary": summary,
    }


# the work of one point (runs on a worker: plain data in, plain data out)
# ---------------------------------------------------------------------------------------
def _compute_point(task: Mapping[str, Any]) -> dict[str, Any]:
    other = _compute_other_point(task)
    if other is not None:
        return other
    target, start = model_from_dict(task["target"]), model_from_dict(task["start"])
    if isinstance(target, Mixture):  # K = 2: the TwoMode it is, bit for bit
        target, start = target.to_two_mode(), start.to_two_mode()  # type: ignore[union-attr]
    objective = objective_from_dict(task["objective"])
    began = time.perf_counter()
    traj = simulate(target, start, objective, rng=seed_from_record(task["seed"]), **task["run"])
    wall = time.perf_counter() - began
    summary = traj.summary()
    metrics: dict[str, Any] = {
        "separation": target.separation,
        "bhattacharyya": target.bhattacharyya,
        "replicates": summary["replicates"],
        "diverged": summary["diverged"],
        "old_weight_population": None,
        "sup_drift_population": None,
    }
    for name in METRICS:
        stats = summary.get(name)
        for s in ("mean", "lo", "hi"):
            metrics[f"{name}_{s}"] = None if stats is None else float(stats[s])
    if task["population"]:
        run = task["run"]
        flow = population_flow(
            target,
            start,
            objective,
            steps=run["steps"],
            lr=run["lr"],
            record_every=run["record_every"],
            weight_param=run["weight_param"],
            lr_scale=run["lr_scale"],
            train_scales=run.get("train_scales", False),
            scale_param=run.get("scale_param", "direct"),
            update=run.get("update", "sgd"),
        )
        if not bool(flow.diverged[0]):
            metrics["old_weight_population"] = float(flow.old_weight[0, -1])
            metrics["sup_drift_population"] = float(flow.drift[0].max())
    payload = None
    if task["keep"]:
        payload = {
            "steps": traj.steps,
            "old_weight": traj.old_weight,
            "old_mean": traj.old_mean,
            "new_mean": traj.new_mean,
            "starved": traj.starved,
            "diverged": traj.diverged,
            "target": target.to_dict(),
            "meta": traj.meta,
            "old_scale": traj.old_scale,
            "new_scale": traj.new_scale,
        }
    return {"metrics": metrics, "wall_time": wall, "trajectory": payload, "summary": None}


# ---------------------------------------------------------------------------------------
