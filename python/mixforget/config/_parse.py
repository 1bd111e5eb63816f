"""The parsing of a whole TOML configuration (format: :mod:`mixforget.config`): the
``[run]`` keys, the ``[sweep]`` grid, the validated :class:`Config` and the checks of a
K-component run, all before any work."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .._defaults import DEFAULT_LR
from ..engine._mixture_plan import plan_mixture_run
from ..engine._mixture_route import two_mode_models
from ..mixture import Mixture, TwoMode
from ..objectives import Objective
from ._models import (
    MIXTURE_KEYS,
    MODEL_KEYS,
    OBJECTIVE_CLASSES,
    _key_error,
    _objective,
    parse_models,
)
from ._specs import (
    _NONNEG,
    _POSITIVE,
    _PROBABILITY,
    ConfigError,
    Spec,
    _bool_spec,
    _check_integers,
    _check_unknown,
    _describe,
    _string_spec,
    _table,
    choice_spec,
    int_spec,
    read_toml,
)

_LR_SCALE_KEYS = ("weight", "old_mean", "new_mean", "old_scale", "new_scale", "means")


def _lr_scale_spec(key: str, value: Any) -> dict[str, float]:
    allowed = sorted(_LR_SCALE_KEYS)
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table with keys {allowed}, got {_describe(value)}")
    out = {}
    for k, v in value.items():
        if k not in _LR_SCALE_KEYS:
            raise ConfigError(f"unknown key '{key}.{k}'; allowed keys: {allowed}")
        out[k] = _NONNEG(f"{key}.{k}", v)
    return out


RUN_KEYS: dict[str, Spec] = {
    "steps": int_spec(1),
    "batch_size": int_spec(1),
    "lr": _POSITIVE,
    "replicates": int_spec(1),
    "record_every": int_spec(1),
    "rng": int_spec(0),
    "weight_param": choice_spec(("logit", "direct")),
    "threads": int_spec(1, 1024),
    "lr_scale": _lr_scale_spec,
    "train_scales": _bool_spec,
    "scale_param": choice_spec(("direct", "log")),
    "update": choice_spec(("sgd", "natural")),
}

#: [run] keys that may be swept (rng is per point, threads does not change results).
GRID_RUN_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "replicates",
    "record_every",
    "weight_param",
    "update",
)

RUN_DEFAULTS: dict[str, Any] = {
    "steps": 2000,
    "batch_size": 64,
    "lr": DEFAULT_LR,
    "replicates": 1000,
    "record_every": 10,
    "rng": 0,
    "weight_param": "logit",
}

SECTIONS = ("target", "start", "objective", "run", "sweep")
SWEEP_KEYS = ("grid", "keep_trajectories", "population", "separation_mode")


# ---------------------------------------------------------------------------------------
# the parsed configuration
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """A validated configuration.

    ``run`` holds keyword arguments of :func:`mixforget.simulate` other than target, start,
    objective, rng and threads; ``grid`` is ``None`` or an ordered dict of value lists in the
    form :func:`mixforget.sweep` accepts (``objective`` entries already Objective instances).
    """

    target: TwoMode | Mixture
    start: TwoMode | Mixture
    objective: Objective
    run: dict[str, Any]
    rng: int = 0
    threads: Optional[int] = None
    grid: Optional[dict[str, list[Any]]] = None
    keep_trajectories: Optional[str] = None
    population: bool = False
    separation_mode: str = "proportional"
    source: Optional[str] = field(default=None, compare=False)

    def simulate_kwargs(self) -> dict[str, Any]:
        """Arguments for :func:`mixforget.simulate` (including rng and threads)."""
        return {
            "target": self.target,
            "start": self.start,
            "objective": self.objective,
            **self.run,
            "rng": self.rng,
            "threads": self.threads,
        }

    def sweep_base(self) -> dict[str, Any]:
        """The ``base`` of :func:`mixforget.sweep` (the sweep's rng is :attr:`rng`)."""
        base = {"target": self.target, "start": self.start, "objective": self.objective, **self.run}
        if self.threads is not None:
            base["threads"] = self.threads
        return base


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file (format in :mod:`mixforget.config`).

    Raises :class:`ConfigError` for a missing or unreadable file, a TOML syntax error or any
    schema violation."""
    return parse_config(read_toml(path), source=str(path))


#: a grid key's values, checked: (key, where, values, the grid's objectives) -> list
ValuesOf = Callable[[str, str, list[Any], list[Objective]], list[Any]]


def grid_values(table: Any, objective: Objective, values_of: ValuesOf) -> dict[str, list[Any]]:
    """The ``[sweep.grid]`` table: ``objective`` (a list of inline tables) built, every
    other key's non-empty list of values checked by ``values_of``."""
    table = _table("sweep.grid", table)
    if not table:
        raise ConfigError("[sweep.grid] is empty; give at least one key = [values]")
    kinds = [objective]
    if "objective" in table:
        raw = table["objective"]
        if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
            raise ConfigError(
                "sweep.grid.objective must be a non-empty array of tables like "
                '{ kind = "ReverseKL", replay = 0.1 }'
            )
        kinds = [_objective(t, f"sweep.grid.objective[{i}]") for i, t in enumerate(raw)]
    grid: dict[str, list[Any]] = {}
    for key, values in table.items():
        where = f"sweep.grid.{key}" if "." not in key else f'sweep.grid."{key}"'
        if key == "objective":
            grid[key] = kinds
        elif not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where} must be a non-empty array of values, got {_describe(values)}"
            )
        elif key.startswith("objective."):
            grid[key] = _objective_field_values(key, where, values, kinds)
        else:
            grid[key] = values_of(key, where, values, kinds)
    return grid


def _grid(table: Any, objective: Objective, mixture: bool = False) -> dict[str, list[Any]]:
    """The ``[sweep.grid]`` table, each value checked by its key's spec; ``mixture``: the
    configuration's models are K-component (keys ``weights``, ``target.weights``, …
    instead of ``separation``, ``old_weight``, ``target.old_mean``, …)."""
    model_keys = MIXTURE_KEYS if mixture else MODEL_KEYS
    allowed = [
        *list(GRID_RUN_KEYS),
        *(["weights"] if mixture else ["separation", "old_weight"]),
        "objective",
        "objective.<field>",
        "target.<key>",
        "start.<key>",
    ]

    def values_of(key: str, where: str, values: list[Any], kinds: list[Objective]) -> list[Any]:
        if key in GRID_RUN_KEYS:
            spec = RUN_KEYS[key]
        elif key == "separation" and not mixture:
            spec = _POSITIVE
        elif key == "old_weight" and not mixture:
            spec = _PROBABILITY
        elif key == "weights" and mixture:
            spec = MIXTURE_KEYS["weights"]
        elif key.startswith(("target.", "start.")):
            name = key.split(".", 1)[1]
            if name not in model_keys:
                raise ConfigError(f"unknown grid key '{key}'; model keys: {sorted(model_keys)}")
            spec = model_keys[name]
        else:
            hint = (
                " (rng is set per point by the sweep; use [run] rng for the root seed)"
                if key in ("rng", "threads")
                else (
                    " (a K-component configuration sweeps 'weights' or 'target.<key>')"
                    if mixture and key in ("separation", "old_weight")
                    else ""
                )
            )
            raise ConfigError(f"unknown grid key '{key}'{hint}; allowed grid keys: {allowed}")
        return [spec(f"{where}[{i}]", v) for i, v in enumerate(values)]

    return grid_values(table, objective, values_of)


def _objective_field_values(
    key: str, where: str, values: list[Any], kinds: list[Objective]
) -> list[Any]:
    """Grid values of ``objective.<field>``, each checked by constructing every objective of
    the grid with it (the dataclass's own validation) and normalised as the dataclass
    stores it."""
    name = key.split(".", 1)[1]
    for obj in kinds:
        names = [f.name for f in dataclasses.fields(obj)]  # type: ignore[arg-type]
        if name not in names:
            raise ConfigError(f"unknown grid key '{key}': {type(obj).__name__} has fields {names}")
    out = []
    for i, value in enumerate(values):
        try:
            variants = [dataclasses.replace(obj, **{name: value}) for obj in kinds]  # type: ignore[type-var]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from None
        out.append(getattr(variants[0], name))
    return out


def parse_config(data: Mapping[str, Any], source: Optional[str] = None) -> Config:
    """Validate an already-parsed TOML document (a dict) and build a :class:`Config`."""
    data = (
        _table("top level", dict(data)) if isinstance(data, Mapping) else _table("top level", data)
    )
    _check_integers(data, "")
    _check_unknown("", data, SECTIONS)
    if "target" not in data:
        raise ConfigError(
            "[target] is required (keys: old_mean, new_mean, old_weight, cov; or for K "
            "components: weights, means, cov | covs, new_components)"
        )
    if "objective" not in data:
        raise ConfigError(f"[objective] is required (kind = one of {sorted(OBJECTIVE_CLASSES)})")
    target, start, new_components = parse_models(
        _table("target", data["target"]), _table("start", data.get("start", {}))
    )
    objective = _objective(_table("objective", data["objective"]))
    run, rng, threads = _run_settings(_table("run", data.get("run", {})))
    if new_components is not None:
        run["new_components"] = new_components
    if isinstance(target, Mixture):
        models = {"target": target, "start": start, "objective": objective}
        _check_mixture_run({**models, **run, "threads": threads})
    elif "means" in run.get("lr_scale", {}):
        raise ConfigError(
            "unknown key 'run.lr_scale.means' for a two-mode run; allowed keys: "
            f"{sorted(k for k in _LR_SCALE_KEYS if k != 'means')}"
        )
    sweep = _sweep_settings(data, objective, isinstance(target, Mixture))
    return Config(
        target=target,
        start=start,
        objective=objective,
        run=run,
        rng=rng,
        threads=threads,
        source=source,
        **sweep,
    )


def _run_settings(run_table: dict[str, Any]) -> tuple[dict[str, Any], int, Optional[int]]:
    """(simulate keywords, root seed, threads) of ``[run]``, defaults filled in."""
    _check_unknown("run", run_table, RUN_KEYS)
    run = dict(RUN_DEFAULTS)
    run.update({k: RUN_KEYS[k](f"run.{k}", v) for k, v in run_table.items()})
    rng = run.pop("rng")
    threads = run.pop("threads", None)
    if run["record_every"] > run["steps"] or run["steps"] % run["record_every"]:
        raise ConfigError(
            f"run.record_every must divide run.steps (1 <= record_every <= steps), got "
            f"record_every = {run['record_every']}, steps = {run['steps']}"
        )
    return run, rng, threads


def sweep_options(
    data: Mapping[str, Any], allowed: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the ``[sweep]`` table, {} when absent; its ``keep_trajectories`` and ``population``,
    those given), its keys checked against ``allowed``."""
    out: dict[str, Any] = {}
    if "sweep" not in data:
        return {}, out
    sweep = _table("sweep", data["sweep"])
    _check_unknown("sweep", sweep, allowed)
    if "keep_trajectories" in sweep:
        out["keep_trajectories"] = _string_spec(
            "sweep.keep_trajectories", sweep["keep_trajectories"]
        )
    if "population" in sweep:
        out["population"] = _bool_spec("sweep.population", sweep["population"])
    return sweep, out


def _sweep_settings(data: Mapping[str, Any], objective: Objective, mixture: bool) -> dict[str, Any]:
    """The Config fields of ``[sweep]`` (grid None without a grid)."""
    out: dict[str, Any] = {
        "grid": None,
        "keep_trajectories": None,
        "population": False,
        "separation_mode": "proportional",
    }
    sweep, options = sweep_options(data, SWEEP_KEYS)
    out.update(options)
    if "grid" in sweep:
        out["grid"] = _grid(sweep["grid"], objective, mixture)
    if "separation_mode" in sweep:
        out["separation_mode"] = choice_spec(("proportional", "fixed"))(
            "sweep.separation_mode", sweep["separation_mode"]
        )
    return out


#: the first word of a K-component check's message → the key of the configuration
_MIXTURE_RUN_KEYS = {
    "new_components": "target",
    "replay_mix": "objective",
    **dict.fromkeys(RUN_KEYS, "run"),
}


def check_mixture_kwargs(kw: Mapping[str, Any]) -> Optional[tuple[TwoMode, TwoMode]]:
    """The checks :func:`mixforget.simulate` makes of Mixture models' keywords ``kw``
    before any work: for K = 2 the route to the two-mode engine (returns its TwoModes,
    whose run checks are the two-mode ones), for K >= 3 the K-component plan (returns None).
    Raises the library's ValueError, TypeError or NotImplementedError."""
    new, update = kw.get("new_components"), kw.get("update", "sgd")
    models = two_mode_models(kw["target"], kw["start"], kw["objective"], new, update)
    if models is not None:
        return models
    batch = (kw["batch_size"], kw["replicates"], kw.get("threads"), np.random.SeedSequence(0))
    plan_mixture_run(
        kw["target"],
        kw["start"],
        kw["objective"],
        new_components=new,
        steps=kw["steps"],
        record_every=kw["record_every"],
        lr=kw["lr"],
        lr_scale=kw.get("lr_scale"),
        update=update,
        weight_param=kw["weight_param"],
        train_scales=kw.get("train_scales", False),
        batch=batch,
        memory_limit=kw.get("memory_limit"),
    )
    return None


def _check_mixture_run(kw: Mapping[str, Any]) -> None:
    """Every check :func:`mixforget.simulate` makes of a K-component run's keywords ``kw``,
    now (ConfigError naming the key): the objective's kind, new_components, replay_mix, the
    [run] keys."""
    objective = kw["objective"]
    try:
        check_mixture_kwargs(kw)
    except (ValueError, TypeError, NotImplementedError) as exc:
        if isinstance(exc, NotImplementedError) and str(exc).startswith(type(objective).__name__):
            raise ConfigError(f"objective.kind: {exc}") from None
        text = str(exc)
        head = text.split(" ", 1)[0].split("=", 1)[0].split("[", 1)[0]
        section = _MIXTURE_RUN_KEYS.get(head)
        if section is None:
            raise ConfigError(f"[run] {text}") from None
        raise _key_error(section, exc, [head]) from None
