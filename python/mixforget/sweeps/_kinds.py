"""The three kinds of sweep point and what differs between them (docs: api-sweep): a
two-mode run (:class:`~mixforget.TwoMode` models, the columns of :data:`METRICS`), a
K-component run (:class:`~mixforget.Mixture` models, K >= 3: the per-component summary of
:class:`~mixforget.results.MixtureTrajectory`) and a task sequence (a ``tasks`` Mixture:
the average, BWT and forgetting of :class:`~mixforget.sequences.SequenceResult`). One sweep
loop (:mod:`.run`) serves all three; the per-point summary of the last two is stored as JSON
in the ``summaries`` table (:mod:`.store`) and appears as columns of the returned table.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from .._problem import check_objective
from .._validate import as_positive_int
from ..config._parse import check_mixture_kwargs
from ..mixture import Mixture, TwoMode
from ..objectives import Objective, objective_from_dict
from ..population import population_flow, population_gradient
from ..sequences.config import check_sequence_settings
from ..sequences.result import MATRIX_KINDS, SequenceResult
from ..sequences.run import sequence

__all__ = [
    "SEQUENCE_BASE_KEYS",
    "apply_objective_fields",
    "compute_mixture_summary",
    "compute_sequence_point",
    "model_from_dict",
    "point_kind",
]

#: keywords of :func:`mixforget.sequence` a sequence sweep's base may hold
SEQUENCE_BASE_KEYS = [
    k for k in inspect.signature(sequence).parameters if k not in ("rng", "progress")
]
#: the model keys of a task: TwoMode or Mixture as plain data
_MODEL_KEYS = ("target", "start", "tasks")


def point_kind(base: Mapping[str, Any]) -> str:
    """'sequence' (a ``tasks`` key), 'mixture' (Mixture models) or 'two_mode'."""
    if "tasks" in base:
        return "sequence"
    if isinstance(base.get("target"), Mixture) or isinstance(base.get("start"), Mixture):
        return "mixture"
    return "two_mode"


def model_from_dict(data: Mapping[str, Any]) -> TwoMode | Mixture:
    """A model of a task's plain data (:meth:`Mixture.to_dict` has ``weights``)."""
    return Mixture(**data) if "weights" in data else TwoMode(**data)


# ---------------------------------------------------------------------------------------
# K-component runs
# ---------------------------------------------------------------------------------------
def check_mixture_point(kw: Mapping[str, Any], population: bool) -> None:
    """simulate()'s checks of a Mixture point (the two-mode engine's for K = 2); with
    ``population``, the flow's first gradient too."""
    from .._problem import check_run

    models = check_mixture_kwargs(kw)
    if models is not None:
        target, start = models
        check_run(
            target, start, kw["objective"], kw["steps"], kw["batch_size"], kw["lr"],
            kw["replicates"], kw["record_every"], kw["weight_param"], kw["lr_scale"],
            kw.get("threads"), False, kw.get("memory_limit"), kw.get("train_scales", False),
            kw.get("scale_param", "direct"), kw.get("update", "sgd"),
        )  # fmt: skip
    if population:
        population_gradient(
            kw["target"], kw["start"], kw["objective"], kw["weight_param"],
            new_components=kw.get("new_components"),
        )  # fmt: skip


def compute_mixture_summary(traj: Any, task: Mapping[str, Any]) -> dict[str, Any]:
    """The stored summary of a K >= 3 point: ``<quantity>_<j>_<mean|lo|hi>`` of every
    component (:meth:`MixtureTrajectory.summary`), with ``population`` also the flow's
    final weights ``weight_<j>_population`` and ``sup_drift_<j>_population``."""
    out: dict[str, Any] = {}
    for name, stats in traj.summary().items():
        if isinstance(stats, dict):
            for s in ("mean", "lo", "hi"):
                out[f"{name}_{s}"] = float(stats[s])
    if task["population"]:
        run = task["run"]
        flow = population_flow(
            model_from_dict(task["target"]),
            model_from_dict(task["start"]),
            objective_from_dict(task["objective"]),
            steps=run["steps"],
            lr=run["lr"],
            record_every=run["record_every"],
            lr_scale=run.get("lr_scale"),
            new_components=run.get("new_components"),
            update=run.get("update", "sgd"),
        )
        if not bool(flow.diverged[0]):
            for j in range(flow.n_components):
                out[f"weight_{j}_population"] = float(flow.weights[0, -1, j])
                out[f"sup_drift_{j}_population"] = float(flow.drift[0, :, j].max())
    return out


def apply_objective_fields(objective: Objective, values: Mapping[str, Any]) -> Objective:
    """``objective`` with the point's ``objective.<field>`` values (``dataclasses.replace``:
    the dataclass checks them); ValueError naming an unknown field."""
    for key, value in values.items():
        head, _, name = key.partition(".")
        if head == "objective" and name:
            fields = [f.name for f in dataclasses.fields(objective)]  # type: ignore[arg-type]
            if name not in fields:
                raise ValueError(
                    f"grid key {key!r}: {type(objective).__name__} has fields {fields}"
                )
            objective = dataclasses.replace(objective, **{name: value})  # type: ignore[type-var]
    return objective


# ---------------------------------------------------------------------------------------
# task sequences
# ---------------------------------------------------------------------------------------
def resolve_sequence_point(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """sequence() keyword arguments of one grid point: ``sequence.<key>`` / ``<key>``,
    ``tasks.<field>``, ``objective`` and ``objective.<field>`` applied (validated)."""
    kw = dict(base)
    for key, value in values.items():
        name = key.removeprefix("sequence.")
        if name in SEQUENCE_BASE_KEYS:
            kw[name] = value
    for key, value in values.items():
        head, _, name = key.partition(".")
        if head == "tasks" and name:
            kw["tasks"] = kw["tasks"].replace(**{name: value})
    objective = apply_objective_fields(check_objective(kw["objective"]), values)
    kw["objective"] = objective
    if not isinstance(kw["tasks"], Mixture):
        raise TypeError(f"tasks must be a mixforget.Mixture, got {type(kw['tasks']).__name__}")
    check_sequence_settings(kw["tasks"], objective, kw)
    kw["replicates"] = as_positive_int("replicates", kw.get("replicates", 100))
    return kw


def check_sequence_point(kw: Mapping[str, Any], population: bool) -> None:
    """The rest of sequence()'s checks (backend), and with ``population`` that the
    population flow can run these settings (no buffer)."""
    if kw.get("backend", "rust") not in ("rust", "numpy"):
        raise ValueError(f"backend must be 'rust' or 'numpy', got {kw.get('backend')!r}")
    if population and kw.get("buffer") is not None:
        raise ValueError(
            "population=True runs the population flow beside each point, which has no buffer "
            f"to replay from (buffer={kw['buffer']!r})"
        )


def sequence_summary(result: SequenceResult, suffix: str = "") -> dict[str, Any]:
    """``<kind>_average``, ``<kind>_bwt``, ``<kind>_mean_forgetting`` and
    ``<kind>_forgetting`` (a list, one per old task) of every matrix kind."""
    out: dict[str, Any] = {}
    for kind in MATRIX_KINDS:
        summary = result.summary(kind)
        for name in ("average", "bwt", "mean_forgetting", "forgetting"):
            out[f"{kind}_{name}{suffix}"] = summary[name]
    return out


def compute_sequence_point(task: Mapping[str, Any], seed: Any) -> tuple[dict[str, Any], Any]:
    """(metrics, SequenceResult) of a sequence point: the replicates kept, their summary
    (:func:`sequence_summary`), with ``population`` also the flow's (``…_population``)."""
    settings = dict(task["run"])
    tasks, objective = Mixture(**task["tasks"]), objective_from_dict(task["objective"])
    result = sequence(tasks, objective, rng=seed, **settings)
    kept = int(result.kept.sum())
    metrics: dict[str, Any] = {"replicates": kept, "diverged": int(result.kept.size - kept)}
    summary = sequence_summary(result)
    if task["population"]:
        flow_settings = {k: v for k, v in settings.items() if k not in ("threads", "backend")}
        flow = sequence(tasks, objective, **{**flow_settings, "population": True})
        summary.update(sequence_summary(flow, "_population"))
    return {**metrics, "summary": summary}, result
