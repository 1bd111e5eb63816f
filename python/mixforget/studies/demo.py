"""The science of ``mixforget demo``, the canonical study: ForwardKL vs ReverseKL, each with
replay 0 and 0.25, on the default problem of the docs; finite-batch training next to the
population flow, the measured starvation rates next to the theory, and the two checks the
demo asserts (forward KL forgets the old mode's mass, reverse KL retains it). The command
line (:mod:`mixforget.cli.demo`) only prints and writes what these functions return."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from .. import objectives
from .._defaults import DEFAULT_LR, DEFAULT_PROBLEM
from ..kernels import starvation_counts
from ..mixture import TwoMode
from ..objectives import ReverseKL
from ..population import population_flow
from ..simulate import estimate_gradient, simulate
from ..theory import starvation_probability

__all__ = ["DEMO_SETTINGS", "demo_checks", "demo_problem", "demo_runs", "starvation_table"]

#: The canonical study: the default problem of the docs (1-D, old mode −3, new target 3.5,
#: start new mean 0.5, α* = 0.75, cov 1), forward vs reverse KL, with and without replay.
DEMO_SETTINGS: dict[str, Any] = {
    **copy.deepcopy(DEFAULT_PROBLEM),
    "runs": [("ForwardKL", 0.0), ("ForwardKL", 0.25), ("ReverseKL", 0.0), ("ReverseKL", 0.25)],
    "steps": 1000,
    "batch_size": 64,
    "lr": DEFAULT_LR,
    "replicates": 1000,
    "record_every": 10,
    # figure (c): starvation rate against batch size
    "starvation_batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128],
    "starvation_old_weights": [0.02, 0.1],
    "starvation_replays": [0.0, 0.25],
    "starvation_batches": 200_000,
    "gradient_batches": 20_000,
}

#: ForwardKL without replay forgets the old mode's mass: its final old weight is below this.
MASS_FORGETTING_WEIGHT = 0.1
#: ReverseKL retains it: its final old weight is within this of α*.
RETENTION_TOLERANCE = 0.05


def demo_problem(settings: dict[str, Any]) -> tuple[TwoMode, TwoMode]:
    """The (target, start) of the demo's settings."""
    target = TwoMode(**settings["target"])
    return target, target.replace(new_mean=settings["start_new_mean"])


def demo_runs(
    settings: dict[str, Any],
    seeds: list[np.random.SeedSequence],
    threads: Optional[int],
    on_run: Optional[Callable[[str], None]] = None,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Train every run of ``settings["runs"]`` (objective name, replay), run ``k`` from
    ``seeds[k]``, and its population flow. Returns the trajectories and flows by label
    (``"ForwardKL, λ=0.25"``) and one row per run (final old weight, sup drift, new-mode
    error, starved batches — each a mean with its 95 % interval —, the flow's final old
    weight and sup drift, wall time). ``on_run(label)``, if given, is called as each run
    starts (progress display)."""
    target, start = demo_problem(settings)
    trajs: dict[str, Any] = {}
    flows: dict[str, Any] = {}
    rows = []
    for k, (kind, lam) in enumerate(settings["runs"]):
        objective = getattr(objectives, kind)(replay=lam)
        label = f"{kind}, λ={lam:g}"
        if on_run is not None:
            on_run(label)
        common = {
            "steps": settings["steps"],
            "lr": settings["lr"],
            "record_every": settings["record_every"],
        }
        traj = simulate(
            target,
            start,
            objective,
            batch_size=settings["batch_size"],
            replicates=settings["replicates"],
            rng=seeds[k],
            threads=threads,
            **common,
        )
        flow = population_flow(target, start, objective, **common)
        trajs[label], flows[label] = traj, flow
        summ = traj.summary()
        rows.append(
            {
                "objective": kind,
                "replay": lam,
                "label": label,
                "replicates": summ["replicates"],
                "diverged": summ["diverged"],
                "old_weight": summ.get("old_weight"),
                "old_weight_population": float(flow.old_weight[0, -1]),
                "sup_drift": summ.get("sup_drift"),
                "sup_drift_population": float(flow.drift[0].max()),
                "new_error": summ.get("new_error"),
                "starved": summ.get("starved"),
                "wall_time": float(traj.meta["wall_time"]),
            }
        )
    return trajs, flows, rows


def _starvation_row(
    source: str, a: float, lam: float, b: int, batches: int, measured: float
) -> dict[str, Any]:
    return {
        "source": source,
        "old_weight": a,
        "replay": lam,
        "batch_size": b,
        "batches": batches,
        "measured": measured,
        "predicted": float(starvation_probability(a, b, lam)),
    }


def starvation_table(
    settings: dict[str, Any], seed: np.random.SeedSequence, threads: Optional[int]
) -> list[dict[str, Any]]:
    """Measured starvation rates next to the theory: ``kernels.starvation_counts`` for every
    (α, λ, B), and, at B = 8 and 32, the rate inside ``estimate_gradient`` (ReverseKL on the
    demo problem with the model's α set) as a cross-check."""
    target, _ = demo_problem(settings)
    cells = [
        (a, lam, b)
        for a in settings["starvation_old_weights"]
        for lam in settings["starvation_replays"]
        for b in settings["starvation_batch_sizes"]
    ]
    seeds = seed.spawn(2 * len(cells))
    rows = []
    for k, (a, lam, b) in enumerate(cells):
        batches = settings["starvation_batches"]
        counts = starvation_counts(a, b, batches, replay=lam, rng=seeds[2 * k], threads=threads)
        rows.append(
            _starvation_row("starvation_counts", a, lam, b, batches, float(np.mean(counts == 0)))
        )
        if b in (8, 32):
            est = estimate_gradient(
                target,
                target.replace(old_weight=a),
                ReverseKL(replay=lam),
                batch_size=b,
                batches=settings["gradient_batches"],
                rng=seeds[2 * k + 1],
                threads=threads,
            )
            measured = float(np.mean(est.starved))
            rows.append(
                _starvation_row(
                    "estimate_gradient", a, lam, b, settings["gradient_batches"], measured
                )
            )
    return rows


def demo_checks(rows: list[dict[str, Any]], alpha_star: float) -> dict[str, bool]:
    """The demo's two checks: ForwardKL λ=0 forgets the old mode's mass (final old weight
    below :data:`MASS_FORGETTING_WEIGHT`) and every ReverseKL run retains it (within
    :data:`RETENTION_TOLERANCE` of α*)."""
    fwd = next(r for r in rows if r["objective"] == "ForwardKL" and r["replay"] == 0.0)
    rev = [r for r in rows if r["objective"] == "ReverseKL"]
    return {
        "forward_kl_mass_forgetting": bool(
            fwd["old_weight"] and fwd["old_weight"]["mean"] < MASS_FORGETTING_WEIGHT
        ),
        "reverse_kl_retention": bool(
            all(
                r["old_weight"] and abs(r["old_weight"]["mean"] - alpha_star) <= RETENTION_TOLERANCE
                for r in rev
            )
        ),
    }
