"""The grid of a sweep: its columns, the separation geometry, the expansion into points,
the validation of base and grid, the resolution of one point into simulate arguments and the
canonical plain-data forms that are hashed and stored."""

from __future__ import annotations

import inspect
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._defaults import DEFAULT_LR
from .._problem import (
    check_lr,
    check_lr_scale,
    check_models,
    check_objective,
    check_run,
    check_steps,
    check_weight_param,
)
from .._validate import as_positive_int, as_probability
from ..config import GRID_RUN_KEYS
from ..engine._plan import check_flow
from ..mixture import Mixture, TwoMode
from ..objectives import Objective, objective_from_dict
from ..population import population_gradient
from ..reference._backend import check_backend_args, get_backend
from ..results import numpy_to_plain
from ..simulate import simulate
from ._kinds import (
    SEQUENCE_BASE_KEYS,
    apply_objective_fields,
    check_mixture_point,
    check_sequence_point,
    point_kind,
    resolve_sequence_point,
)

FORMAT = "mixforget-sweep-1"

#: Summary quantities stored per point, each as <name>_mean, <name>_lo, <name>_hi.
METRICS = ("old_weight", "drift", "sup_drift", "new_error", "starved")

_METRIC_COLUMNS = [f"{m}_{s}" for m in METRICS for s in ("mean", "lo", "hi")]
#: Columns of the ``points`` table, in order.
COLUMNS = [
    "point",
    "params",
    "config",
    "seed_entropy",
    "seed_spawn_key",
    "separation",
    "bhattacharyya",
    "replicates",
    "diverged",
    *_METRIC_COLUMNS,
    "old_weight_population",
    "sup_drift_population",
    "wall_time",
    "trajectory",
]

_SIM_PARAMS = list(inspect.signature(simulate).parameters)
#: base keys that do not change results (left out of the hash and of the stored config).
_EXECUTION_KEYS = ("threads", "memory_limit")
_BASE_KEYS = [k for k in _SIM_PARAMS if k not in ("rng", "progress")]
#: grid keys that are simulate() keywords: the models, the objective, the [run] grid keys
_GRID_PLAIN_KEYS = ("target", "start", "objective", *GRID_RUN_KEYS, "lr_scale")
_MODEL_FIELDS = ("old_mean", "new_mean", "old_weight", "cov", "old_cov", "new_cov")
_MIXTURE_FIELDS = ("weights", "means", "cov", "covs")


# ---------------------------------------------------------------------------------------
# grid geometry
# ---------------------------------------------------------------------------------------
SEPARATION_MODES = ("proportional", "fixed")


def apply_separation(
    target: TwoMode, start: TwoMode, separation: float, mode: str = "proportional"
) -> tuple[TwoMode, TwoMode]:
    """Move the new means so that the target's Mahalanobis separation Δ equals ``separation``
    (docs: theory-geometry).

    With o = target.old_mean, v = target.new_mean − o and k = separation / target.separation,
    the target's new mean becomes o + k·v (Δ scales linearly, so it is exactly
    ``separation``). The start's new mean μ moves along the same old→new direction:

    - ``mode="proportional"`` (default): μ ← μ + (k − 1)·a·v with a = (μ − o)·v / (v·v) its
      position along the axis (0 at the old mean, 1 at the target's new mean). The start keeps
      its relative position between the modes, and its offset from the target's new mean
      along the axis is scaled by k. Always well defined. Note: the drift of the old mean is
      then gated by the *start's* overlap, ≈ exp(−(aΔ)²/8), so log sup drift against Δ² has
      slope → −a²/8, not −1/8.
    - ``mode="fixed"``: μ ← μ + (k − 1)·v, the same shift as the target's new mean, so the
      start's offset from the target's new mean is unchanged (its error does not grow with
      Δ). This is the family of docs: theory-pred-drift (slope → −1/8 as Δ grows); it needs Δ larger
      than that offset, or the start's new mode sits on or beyond the old one.

    Components orthogonal to the axis, old means, weights and covariances are unchanged.
    """
    if mode not in SEPARATION_MODES:
        raise ValueError(f"separation mode must be one of {list(SEPARATION_MODES)}, got {mode!r}")
    sep = float(separation)
    if not (math.isfinite(sep) and sep > 0):
        raise ValueError(f"separation must be a finite number > 0, got {separation!r}")
    delta0 = target.separation
    if delta0 <= 0:
        raise ValueError(
            "separation: the target's old and new means coincide, the direction is undefined"
        )
    k = sep / delta0
    o = target.old_mean
    v = target.new_mean - o
    a = float((start.new_mean - o) @ v / (v @ v)) if mode == "proportional" else 1.0
    new_target = target.replace(new_mean=o + k * v)
    new_start = start.replace(new_mean=start.new_mean + (k - 1.0) * a * v)
    return new_target, new_start


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of ``grid`` in its key order, last key fastest
    (``itertools.product``): point i of a sweep is element i of this list."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]


# ---------------------------------------------------------------------------------------
# canonical plain-data forms (hashing, JSON columns, tasks for workers)
# ---------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, TwoMode):
        return {"TwoMode": value.to_dict()}
    if isinstance(value, Mixture):
        return {"Mixture": value.to_dict()}
    if isinstance(value, Objective):
        return {"Objective": value.as_dict()}
    if isinstance(value, (np.ndarray, np.integer, np.floating)):
        return numpy_to_plain(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))


def _display(value: Any) -> Any:
    """Column value of a grid key in the returned table: scalars as is, models by their
    repr, objectives by their :attr:`~mixforget.objectives.Objective.label`, other containers
    as JSON text."""
    if isinstance(value, dict) and set(value) == {"TwoMode"}:
        return repr(TwoMode(**value["TwoMode"]))
    if isinstance(value, dict) and set(value) == {"Mixture"}:
        return repr(Mixture(**value["Mixture"]))
    if isinstance(value, dict) and set(value) == {"Objective"}:
        return objective_from_dict(value["Objective"]).label
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


# ---------------------------------------------------------------------------------------
# validation and resolution of the points
# ---------------------------------------------------------------------------------------
def _check_base(base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` as a dict: keyword arguments of :func:`mixforget.simulate`, or of
    :func:`mixforget.sequence` when it has ``tasks`` (ValueError naming a wrong key)."""
    if not isinstance(base, Mapping):
        raise TypeError(
            "base must be a dict of mixforget.simulate (or mixforget.sequence) keyword "
            f"arguments, got {type(base).__name__}"
        )
    sequence = point_kind(base) == "sequence"
    allowed, required = (
        (SEQUENCE_BASE_KEYS, ("tasks", "objective"))
        if sequence
        else (_BASE_KEYS, ("target", "start", "objective"))
    )
    function = "mixforget.sequence" if sequence else "mixforget.simulate"
    for key in base:
        if key in ("rng", "progress"):
            raise ValueError(f"base[{key!r}] is not allowed: pass {key}= to sweep() itself")
        if key not in allowed:
            raise ValueError(f"unknown base key {key!r} ({function}); allowed: {allowed}")
    for key in required:
        if key not in base:
            raise ValueError(f"base must contain {key!r} (keys of {function}: {allowed})")
    return dict(base)


def _grid_key_ok(key: str, kind: str = "two_mode") -> bool:
    head, _, name = key.partition(".")
    if head == "objective":
        return key == "objective" or bool(name)
    if kind == "sequence":
        task_field = head == "tasks" and name in _MIXTURE_FIELDS
        return task_field or key.removeprefix("sequence.") in _SEQUENCE_GRID_KEYS
    if key in _GRID_PLAIN_KEYS or key == ("weights" if kind == "mixture" else "old_weight"):
        return True
    if kind == "two_mode" and key == "separation":
        return True
    fields = _MIXTURE_FIELDS if kind == "mixture" else _MODEL_FIELDS
    return head in ("target", "start") and name in fields


#: grid keys of a sequence sweep (``sequence.`` prefix optional): sequence() keywords
_SEQUENCE_GRID_KEYS = [k for k in SEQUENCE_BASE_KEYS if k not in ("tasks", "threads")]


def _allowed_grid_keys(kind: str) -> str:
    if kind == "sequence":
        return (
            f"{_SEQUENCE_GRID_KEYS} (or 'sequence.<key>'), 'tasks.<field>' "
            f"(fields {list(_MIXTURE_FIELDS)}), 'objective', 'objective.<field>'"
        )
    if kind == "mixture":
        return (
            f"{list(_GRID_PLAIN_KEYS)}, 'weights' (the target's and the start's), "
            f"'target.<field>', 'start.<field>' (fields {list(_MIXTURE_FIELDS)}), "
            "'objective.<field>'"
        )
    return (
        f"{list(_GRID_PLAIN_KEYS)}, 'separation', 'old_weight', 'target.<field>', "
        f"'start.<field>' (fields {list(_MODEL_FIELDS)}), 'objective.<field>'"
    )


def _check_grid(grid: Mapping[str, Any], kind: str = "two_mode") -> dict[str, list[Any]]:
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of key -> list of values, got {type(grid).__name__}")
    if not grid:
        raise ValueError(
            "grid must have at least one key = [values] (an empty grid sweeps nothing: call "
            "mixforget.simulate for a single run)"
        )
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not isinstance(key, str) or not _grid_key_ok(key, kind):
            raise ValueError(f"unknown grid key {key!r}; allowed: {_allowed_grid_keys(kind)}")
        if isinstance(values, (str, bytes)) or not isinstance(
            values, (list, tuple, np.ndarray, range)
        ):
            raise TypeError(f"grid[{key!r}] must be a list of values, got {type(values).__name__}")
        values = list(values)
        if not values:
            raise ValueError(f"grid[{key!r}] must not be empty")
        out[key] = values
    return out


def _resolve_point(
    base: Mapping[str, Any], values: Mapping[str, Any], separation_mode: str = "proportional"
) -> dict[str, Any]:
    """simulate() (or sequence()) keyword arguments of one grid point (validated)."""
    kind = point_kind(base)
    if kind == "sequence":
        return resolve_sequence_point(base, values)
    kw = dict(base)
    for key, value in values.items():
        if key in _GRID_PLAIN_KEYS:
            kw[key] = value
    if kind == "two_mode":
        check_models(kw["target"], kw["start"])
    target, start, objective = kw["target"], kw["start"], kw["objective"]
    for key, value in values.items():
        head, _, name = key.partition(".")
        if key in ("old_weight", "weights"):
            target = target.replace(**{key: value})
            start = start.replace(**{key: value})
        elif head == "target" and name:
            target = target.replace(**{name: value})
        elif head == "start" and name:
            start = start.replace(**{name: value})
    objective = apply_objective_fields(check_objective(objective), values)
    if "separation" in values:
        target, start = apply_separation(target, start, values["separation"], separation_mode)
    if kind == "two_mode":
        check_models(target, start)
    kw["target"], kw["start"], kw["objective"] = target, start, objective
    # the same checks simulate() makes, so that a bad point fails before any work
    kw["batch_size"] = as_positive_int("batch_size", kw.get("batch_size", 64))
    check_objective(objective, kw["batch_size"])
    kw["steps"], kw["record_every"] = check_steps(kw.get("steps", 2000), kw.get("record_every", 10))
    kw["lr"] = check_lr(kw.get("lr", DEFAULT_LR))
    kw["replicates"] = as_positive_int("replicates", kw.get("replicates", 1000))
    kw["weight_param"] = check_weight_param(kw.get("weight_param", "logit"))
    if kind == "two_mode":  # a Mixture's lr_scale is checked with its engine's plan
        kw["lr_scale"] = check_lr_scale(kw.get("lr_scale"), kw.get("train_scales", False))
    return kw


def _check_execution(kw: Mapping[str, Any], population: bool = False) -> None:
    """The rest of simulate()'s checks of one point resolved by :func:`_resolve_point`, run
    before the store is created: backend,
    device and precision (an array backend's library imported, so that a missing one is
    refused now), train_scales, scale_param, threads, memory_limit and the memory estimate.
    With ``population``, also :func:`mixforget.population_flow`'s checks and its first
    gradient. Only checks: the values of ``kw`` (the sweep's identity) are left as given."""
    kind = point_kind(kw)
    if kind == "sequence":
        check_sequence_point(kw, population)
        return
    backend, device, precision = check_backend_args(
        kw.get("backend", "rust"), kw.get("device"), kw.get("precision", "float64")
    )
    if kind == "mixture":
        check_mixture_point(kw, population)
        return
    check_run(
        kw["target"],
        kw["start"],
        kw["objective"],
        kw["steps"],
        kw["batch_size"],
        kw["lr"],
        kw["replicates"],
        kw["record_every"],
        kw["weight_param"],
        kw["lr_scale"],
        kw.get("threads"),
        False,
        kw.get("memory_limit"),
        kw.get("train_scales", False),
        kw.get("scale_param", "direct"),
        kw.get("update", "sgd"),
    )
    if backend != "rust":
        get_backend(backend, device, precision)
    if population:  # the flow's checks, and its first gradient (NotImplementedError cases)
        flow_args = (kw["steps"], kw["lr"], kw["record_every"], kw["weight_param"])
        scales = (kw["lr_scale"], kw.get("train_scales", False), kw.get("scale_param", "direct"))
        check_flow(
            kw["target"], kw["start"], kw["objective"], *flow_args, *scales, kw.get("update", "sgd")
        )
        population_gradient(
            kw["target"], kw["start"], kw["objective"], kw["weight_param"], *scales[1:]
        )


def _check_distinct(grid: Mapping[str, list[Any]], axes: Sequence[Sequence[Any]]) -> None:
    """Refuse a grid key whose values repeat once canonicalised (``[0.1, 0.1]``, ``[1, 1.0]``):
    the points would be computed twice under different seeds and stored as separate rows."""
    for key, values in zip(grid, axes):
        seen: dict[str, int] = {}
        for j, value in enumerate(values):
            text = json.dumps(value, sort_keys=True)
            if text in seen:
                raise ValueError(
                    f"grid[{key!r}] repeats a value: entries {seen[text]} and {j} "
                    f"({grid[key][seen[text]]!r} and {grid[key][j]!r}) are the same point; "
                    "give each value once"
                )
            seen[text] = j


def _canonical_values(values: Mapping[str, Any], kw: Mapping[str, Any]) -> dict[str, Any]:
    """This point's grid values in canonical plain form (1 and 1.0 hash alike, etc.)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        head, _, name = key.partition(".")
        setting = key.removeprefix("sequence.")
        if "tasks" in kw and setting in _SEQUENCE_GRID_KEYS and setting != "objective":
            out[key] = _plain(kw[setting])
        elif key in _GRID_PLAIN_KEYS:
            out[key] = _plain(kw[key])
        elif key == "separation":
            out[key] = float(value)
        elif key == "old_weight":
            out[key] = as_probability("old_weight", value)
        elif head == "objective":
            out[key] = _plain(getattr(kw["objective"], name))
        else:
            out[key] = _plain(np.asarray(value, dtype=np.float64))
    return out


def _grid_axes(
    grid: Mapping[str, list[Any]], resolved: Sequence[tuple[dict[str, Any], dict[str, Any]]]
) -> list[list[Any]]:
    """The canonical values of each grid key, in the key's order: value j of key p is read
    from the first point whose p-th index is j (points resolved by :func:`_resolve_point`)."""
    shape = [len(v) for v in grid.values()]
    axes = []
    for p, key in enumerate(grid):
        stride = math.prod(shape[p + 1 :])  # last key fastest (expand_grid)
        axes.append([resolved[j * stride][1][key] for j in range(shape[p])])
    return axes


def _task(
    kw: Mapping[str, Any], seed: dict[str, Any], keep: bool, population: bool
) -> dict[str, Any]:
    """Plain-data description of one point, picklable for any executor: its ``kind``
    (:func:`point_kind`), models as plain data, the objective, the other keywords."""
    models = ("target", "start", "tasks")
    run = {k: v for k, v in kw.items() if k not in (*models, "objective")}
    return {
        "kind": point_kind(kw),
        **{k: kw[k].to_dict() for k in models if k in kw},
        "objective": kw["objective"].as_dict(),
        "run": run,
        "seed": seed,
        "keep": keep,
        "population": population,
    }


def _stored_config(task: Mapping[str, Any]) -> dict[str, Any]:
    run = {k: v for k, v in task["run"].items() if k not in _EXECUTION_KEYS}
    models = {k: task[k] for k in ("target", "start", "tasks") if k in task}
    return {**models, "objective": task["objective"], **run}


# ---------------------------------------------------------------------------------------
