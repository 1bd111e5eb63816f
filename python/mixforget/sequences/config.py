"""The ``[sequence]`` section of a TOML file (docs: theory-sequences, api-config): a task
sequence as configuration, validated before any work, run with :func:`mixforget.sequence`
by ``mixforget simulate FILE --out RESULT.npz`` and swept by ``mixforget sweep FILE --db DB``.

Format (every key of ``[sequence]`` is a keyword of :func:`mixforget.sequence`; ``steps``,
``lr`` and ``batch_size`` may be lists, one per stage)::

    [sequence]
    steps = 500
    lr = 0.1
    batch_size = 32
    replicates = 100
    rng = 0                   # root seed
    schedule = "uniform"      # or "proportional", "recency" (with recency = γ)
    # buffer = "reservoir"    # replay from a finite buffer ("reservoir" | "balanced") …
    # memory = 50             # … of memory stored samples

    [sequence.tasks]          # the K tasks as a Mixture
    weights = [0.2, 0.2, 0.2, 0.2, 0.2]
    means = [[-8.0], [-4.0], [0.0], [4.0], [8.0]]
    cov = 1.0

    [sequence.objective]      # ForwardKL or ReverseKL, its fields
    kind = "ForwardKL"
    replay = 0.2

    [sweep.grid]              # only for `mixforget sweep`: lists of values, their product
    schedule = ["uniform", "recency"]
    "objective.replay" = [0.1, 0.3]

A file with ``[sequence]`` has no ``[target]``, ``[start]``, ``[objective]`` or ``[run]``.
Grid keys: the keywords above (``memory``, ``schedule``, ``batch_size``, …, also written
``sequence.<keyword>``), ``objective`` (a list of inline tables), ``objective.<field>`` and
``tasks.<key>`` (weights, means, cov, covs). Every problem raises
:class:`~mixforget.config.ConfigError` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config import ConfigError, read_toml
from ..config._models import MIXTURE_KEYS, _key_error, _objective, mixture_model
from ..config._parse import grid_values, sweep_options
from ..config._specs import (
    _bool_spec,
    _check_integers,
    _table,
    choice_spec,
    int_spec,
)
from ..mixture import Mixture
from .curriculum import make_curriculum
from .run import _check_buffer

__all__ = [
    "SEQUENCE_GRID_KEYS",
    "SEQUENCE_KEYS",
    "SequenceConfig",
    "load_sequence_config",
    "parse_sequence_config",
]

#: the keys of [sequence] besides its tables ``tasks`` and ``objective``
SEQUENCE_KEYS = (
    "steps",
    "lr",
    "batch_size",
    "replicates",
    "record_every",
    "rng",
    "schedule",
    "recency",
    "stage_weights",
    "start_offset",
    "entry_weight",
    "update",
    "threads",
    "backend",
    "population",
    "buffer",
    "memory",
    "stream",
)
#: the [sequence] keywords a sweep grid may vary (rng is per point, threads changes nothing)
SEQUENCE_GRID_KEYS = tuple(k for k in SEQUENCE_KEYS if k not in ("rng", "threads"))
_CURRICULUM_KEYS = (
    "steps",
    "lr",
    "batch_size",
    "record_every",
    "schedule",
    "recency",
    "stage_weights",
    "start_offset",
    "entry_weight",
)
#: checks of the keys that the curriculum does not check
_SETTING_SPECS = {
    "replicates": int_spec(1),
    "rng": int_spec(0),
    "threads": int_spec(1, 1024),
    "update": choice_spec(("sgd", "natural")),
    "backend": choice_spec(("rust", "numpy")),
    "population": _bool_spec,
    "buffer": choice_spec(("reservoir", "balanced")),
    "memory": int_spec(1),
    "stream": int_spec(1),
}
SECTIONS = ("sequence", "sweep")
SWEEP_KEYS = ("grid", "keep_trajectories", "population")


@dataclass(frozen=True)
class SequenceConfig:
    """A validated ``[sequence]``: ``tasks``, ``objective`` and the other keywords
    (``settings``, ``rng`` among them); ``grid``, ``keep_trajectories`` and ``population``
    from ``[sweep]``."""

    tasks: Mixture
    objective: Any
    settings: dict[str, Any] = field(default_factory=dict)
    grid: Optional[dict[str, list[Any]]] = None
    keep_trajectories: Optional[str] = None
    population: bool = False

    @property
    def rng(self) -> int:
        """The root seed (``rng``, default 0)."""
        return int(self.settings.get("rng", 0))

    def run(self, **overrides: Any) -> Any:
        """:func:`mixforget.sequence` with these settings (a SequenceResult); ``overrides``
        replace settings (e.g. ``threads``, ``progress``)."""
        from .run import sequence

        return sequence(self.tasks, self.objective, **{**self.settings, **overrides})

    def sweep_base(self) -> dict[str, Any]:
        """The ``base`` of :func:`mixforget.sweep` (the sweep's rng is :attr:`rng`)."""
        base = {k: v for k, v in self.settings.items() if k != "rng"}
        return {"tasks": self.tasks, "objective": self.objective, **base}


def check_sequence_settings(tasks: Mixture, objective: Any, settings: Mapping[str, Any]) -> None:
    """Every check :func:`mixforget.sequence` makes of its settings, now (ValueError,
    TypeError or NotImplementedError naming the keyword)."""
    given = {k: settings[k] for k in _CURRICULUM_KEYS if k in settings}
    make_curriculum(
        tasks,
        objective,
        **{"steps": 2000, "lr": 0.05, "batch_size": 64, "record_every": 10, **given},
    )
    _check_buffer(
        settings.get("buffer"),
        settings.get("memory"),
        settings.get("stream", 1000),
        bool(settings.get("population", False)),
    )


def _settings(table: Mapping[str, Any]) -> dict[str, Any]:
    settings = {k: v for k, v in table.items() if k not in ("tasks", "objective")}
    unknown = sorted(set(settings) - set(SEQUENCE_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key 'sequence.{unknown[0]}'; allowed keys: tasks, objective, "
            f"{list(SEQUENCE_KEYS)}"
        )
    for key, spec in _SETTING_SPECS.items():
        if key in settings:
            settings[key] = spec(f"sequence.{key}", settings[key])
    return settings


def parse_sequence_config(data: Mapping[str, Any], source: str = "<config>") -> SequenceConfig:
    """Validate a parsed TOML document with a ``[sequence]`` section (ConfigError naming
    the key)."""
    table = data.get("sequence")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: a [sequence] section is required")
    _check_integers(data, "")
    others = sorted(set(data) - set(SECTIONS))
    if others:
        raise ConfigError(
            f"[{others[0]}] is not read in a file with a [sequence] section (its sections: "
            f"{list(SECTIONS)}; the tasks are [sequence.tasks], the objective "
            "[sequence.objective])"
        )
    settings = _settings(table)
    if not isinstance(table.get("tasks"), Mapping):
        raise ConfigError("[sequence.tasks] is required: weights, means and cov (or covs)")
    tasks = mixture_model("sequence.tasks", dict(table["tasks"]))
    if not isinstance(table.get("objective"), Mapping):
        raise ConfigError("[sequence.objective] is required (kind = 'ForwardKL' or 'ReverseKL')")
    objective = _objective(dict(table["objective"]), "sequence.objective")
    try:  # every check now, before any work
        check_sequence_settings(tasks, objective, settings)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise _key_error("sequence", exc, SEQUENCE_KEYS) from None
    sweep = _sweep(data, tasks, objective, settings)
    return SequenceConfig(tasks, objective, settings, **sweep)


def _sweep(
    data: Mapping[str, Any], tasks: Mixture, objective: Any, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The SequenceConfig fields of ``[sweep]``: the grid's values checked one by one."""
    out: dict[str, Any] = {"grid": None, "keep_trajectories": None, "population": False}
    sweep, options = sweep_options(data, SWEEP_KEYS)
    out.update(options)
    if "grid" in sweep:
        out["grid"] = _sequence_grid(
            _table("sweep.grid", sweep["grid"]), tasks, objective, settings
        )
    return out


def _sequence_grid(
    table: Any, tasks: Mixture, objective: Any, settings: Mapping[str, Any]
) -> dict[str, list[Any]]:
    allowed = [*SEQUENCE_GRID_KEYS, "objective", "objective.<field>", "tasks.<key>"]

    def values_of(key: str, where: str, values: list[Any], kinds: list[Any]) -> list[Any]:
        name = key.removeprefix("sequence.")
        part = key.split(".", 1)[1] if key.startswith("tasks.") else None
        if part in MIXTURE_KEYS:
            for i, value in enumerate(values):
                _checked(where, i, value, tasks.replace, **{part: value})
            return list(values)
        if name not in SEQUENCE_GRID_KEYS:
            hint = " (rng is set per point by the sweep)" if name in ("rng", "threads") else ""
            raise ConfigError(f"unknown grid key '{key}'{hint}; allowed grid keys: {allowed}")
        spec = _SETTING_SPECS.get(name)
        checked = [spec(f"{where}[{i}]", v) if spec else v for i, v in enumerate(values)]
        for i, value in enumerate(checked):
            changed = {**settings, name: value}
            _checked(where, i, value, check_sequence_settings, tasks, objective, changed)
        return checked

    return grid_values(table, objective, values_of)


def _checked(where: str, i: int, value: Any, check: Any, *args: Any, **kwargs: Any) -> Any:
    """``check(*args, **kwargs)`` for grid entry ``i`` (``value``), a refusal as a
    ConfigError naming the entry."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}[{i}] must be finite, got {value!r}")
    try:
        return check(*args, **kwargs)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(f"{where}[{i}]: {exc}") from None


def load_sequence_config(path: str | Path) -> SequenceConfig:
    """Read a TOML file and validate its ``[sequence]`` section."""
    return parse_sequence_config(read_toml(path), source=str(path))
