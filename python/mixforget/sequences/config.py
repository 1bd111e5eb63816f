"""The ``[sequence]`` section of a TOML file (docs: theory-sequences): a task sequence as
configuration, validated before any work, run with :func:`mixforget.sequence`.

Format (every key of ``[sequence]`` is a keyword of :func:`mixforget.sequence`; ``steps``,
``lr`` and ``batch_size`` may be lists, one per stage)::

    [sequence]
    steps = 500
    lr = 0.1
    batch_size = 32
    replicates = 100
    schedule = "uniform"      # or "proportional", "recency" (with recency = γ)

    [sequence.tasks]          # the K tasks as a Mixture
    weights = [0.2, 0.2, 0.2, 0.2, 0.2]
    means = [[-8.0], [-4.0], [0.0], [4.0], [8.0]]
    cov = 1.0

    [sequence.objective]      # ForwardKL or ReverseKL, its fields
    kind = "ForwardKL"
    replay = 0.2

The command line does not read this section yet; :func:`load_sequence_config` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, _objective, _toml
from ..mixture import Mixture
from .curriculum import make_curriculum

__all__ = ["SEQUENCE_KEYS", "SequenceConfig", "load_sequence_config", "parse_sequence_config"]

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
_TASK_KEYS = ("weights", "means", "cov", "covs")
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


@dataclass(frozen=True)
class SequenceConfig:
    """A validated ``[sequence]``: ``tasks``, ``objective`` and the other keywords."""

    tasks: Mixture
    objective: Any
    settings: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Any:
        """:func:`mixforget.sequence` with these settings (a SequenceResult)."""
        from .run import sequence

        return sequence(self.tasks, self.objective, **self.settings)


def _tasks(table: Any) -> Mixture:
    if not isinstance(table, Mapping):
        raise ConfigError("[sequence.tasks] is required: weights, means and cov (or covs)")
    unknown = sorted(set(table) - set(_TASK_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key 'sequence.tasks.{unknown[0]}'; allowed keys: {list(_TASK_KEYS)}"
        )
    try:
        return Mixture(**{"cov": 1.0, **table} if "covs" not in table else dict(table))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[sequence.tasks] {exc}") from None


def parse_sequence_config(data: Mapping[str, Any], source: str = "<config>") -> SequenceConfig:
    """Validate the ``sequence`` table of parsed TOML ``data`` (ConfigError naming the key)."""
    table = data.get("sequence")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: a [sequence] section is required")
    settings = {k: v for k, v in table.items() if k not in ("tasks", "objective")}
    unknown = sorted(set(settings) - set(SEQUENCE_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key 'sequence.{unknown[0]}'; allowed keys: tasks, objective, "
            f"{list(SEQUENCE_KEYS)}"
        )
    tasks = _tasks(table.get("tasks"))
    if not isinstance(table.get("objective"), Mapping):
        raise ConfigError("[sequence.objective] is required (kind = 'ForwardKL' or 'ReverseKL')")
    objective = _objective(dict(table["objective"]), "sequence.objective")
    given = {k: settings[k] for k in _CURRICULUM_KEYS if k in settings}
    try:  # every curriculum check now, before any work
        make_curriculum(
            tasks,
            objective,
            **{"steps": 2000, "lr": 0.05, "batch_size": 64, "record_every": 10, **given},
        )
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(f"[sequence] {exc}") from None
    return SequenceConfig(tasks, objective, settings)


def load_sequence_config(path: str | Path) -> SequenceConfig:
    """Read a TOML file and validate its ``[sequence]`` section."""
    if _toml is None:  # pragma: no cover - Python < 3.11 without tomli
        raise ConfigError("reading TOML needs Python >= 3.11 or the 'tomli' package")
    path = Path(path)
    try:
        data = _toml.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except _toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_sequence_config(data, source=str(path))
