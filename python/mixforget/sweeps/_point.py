"""The work of one sweep point, run on a worker process: plain data in (the task), plain data
out (the row), so that any executor can run it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .._rng import seed_from_record
from ..mixture import TwoMode
from ..objectives import objective_from_dict
from ..population import population_flow
from ..simulate import simulate
from .grid import METRICS


# the work of one point (runs on a worker: plain data in, plain data out)
# ---------------------------------------------------------------------------------------
def _compute_point(task: Mapping[str, Any]) -> dict[str, Any]:
    target = TwoMode(**task["target"])
    start = TwoMode(**task["start"])
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
    return {"metrics": metrics, "wall_time": wall, "trajectory": payload}


# ---------------------------------------------------------------------------------------
