"""TOML run and sweep configurations, validated against a schema (docs: api, design-reliability).

A configuration file describes one training problem (the arguments of
:func:`mixforget.simulate`) and, optionally, a grid for :func:`mixforget.sweep`::

    [target]                 # the world p* (docs: theory-model); required
    old_mean = [-3.0]        # a number (d = 1) or a list of d numbers
    new_mean = [3.5]
    old_weight = 0.75        # α* in (0, 1)
    cov = 1.0                # number, list (diagonal) or list of lists (SPD); default 1.0
                             # (or old_cov = …, new_cov = … for unequal covariances)

    [start]                  # the start model; every key defaults to the target's
    new_mean = [0.5]

    [objective]              # required; kind plus the fields of that objective class
    kind = "ReverseKL"       # a class of mixforget.objectives.OBJECTIVES, e.g. ForwardKL | OAPL
    replay = 0.0             # fields, defaults and checks are the dataclass's own

    [run]                    # keyword arguments of mixforget.simulate (defaults shown)
    steps = 2000
    batch_size = 64
    lr = 0.05
    replicates = 1000
    record_every = 10        # must divide steps
    rng = 0                  # root seed (an integer >= 0)
    weight_param = "logit"   # logit | direct
    threads = 2              # optional; results do not depend on it
    lr_scale = { weight = 1.0, old_mean = 1.0, new_mean = 1.0 }   # optional
    train_scales = false     # optional; true adds the lr_scale keys old_scale, new_scale
    scale_param = "direct"   # direct | log (with train_scales)
    update = "sgd"           # sgd | natural (steps preconditioned by the Fisher)

    [sweep]                  # only for `mixforget sweep`
    keep_trajectories = "trajectories"   # optional directory for one .npz per point
    population = false                   # also compute the population flow per point
    separation_mode = "proportional"     # or "fixed" (see mixforget.sweeps.apply_separation)
    [sweep.grid]             # lists of values; the Cartesian product in this key order
    separation = [2.0, 4.0, 6.0]
    batch_size = [16, 64]
    "objective.replay" = [0.0, 0.25]

Grid keys: ``steps``, ``batch_size``, ``lr``, ``replicates``, ``record_every``,
``weight_param``, ``update``, ``separation`` (a number > 0; the start's new mean follows
according to ``[sweep] separation_mode``, see :func:`mixforget.sweeps.apply_separation`),
``old_weight`` (sets the target's and the start's α), ``target.<key>`` and ``start.<key>``
(one model key), ``objective`` (a list of inline tables ``{kind = "…", …}``) and
``objective.<field>`` (a field of the objective).

Every problem (an unknown key, a wrong type, a value out of range) raises
:class:`ConfigError` with one message naming the key and the allowed values; the CLI turns
it into exit status 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ._defaults import DEFAULT_LR
from .mixture import TwoMode
from .objectives import OBJECTIVES, Objective

__all__ = ["GRID_RUN_KEYS", "Config", "ConfigError", "load_config", "parse_config"]

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # pragma: no cover - depends on the interpreter
    try:
        import tomli as _toml
    except ImportError:  # pragma: no cover
        _toml = None


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key and the allowed values."""


# ---------------------------------------------------------------------------------------
# value specifications: each returns the normalised value or raises ConfigError
# ---------------------------------------------------------------------------------------
Spec = Callable[[str, Any], Any]


def _describe(value: Any) -> str:
    kinds = {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }
    for typ, name in kinds.items():
        if type(value) is typ:
            return f"{value!r} ({name})"
    return f"{value!r} ({type(value).__name__})"


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def int_spec(minimum: int = 1, maximum: Optional[int] = None) -> Spec:
    desc = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )

    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{key} must be {desc}, got {_describe(value)}")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ConfigError(f"{key} must be {desc}, got {number}")
        return number

    check.desc = desc  # type: ignore[attr-defined]
    return check


def float_spec(
    lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False
) -> Spec:
    if lo == -math.inf and hi == math.inf:
        desc = "a finite number"
    elif hi == math.inf:
        desc = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        desc = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def check(key: str, value: Any) -> float:
        if not _is_real(value):
            raise ConfigError(f"{key} must be {desc}, got {_describe(value)}")
        v = float(value)
        ok = (
            math.isfinite(v)
            and (v > lo if lo_open else v >= lo)
            and (v < hi if hi_open else v <= hi)
        )
        if not ok:
            raise ConfigError(f"{key} must be {desc}, got {value!r}")
        return v

    check.desc = desc  # type: ignore[attr-defined]
    return check


def choice_spec(options: tuple[str, ...]) -> Spec:
    desc = f"one of {list(options)}"

    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ConfigError(f"{key} must be {desc}, got {_describe(value)}")
        return value

    check.desc = desc  # type: ignore[attr-defined]
    return check


def _bool_spec(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {_describe(value)}")
    return value


def _string_spec(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string (a path), got {_describe(value)}")
    return value


def _vector_spec(key: str, value: Any) -> list[float]:
    """A number (d = 1) or a non-empty list of finite numbers."""
    desc = "a number or a non-empty list of numbers"
    items = [value] if _is_real(value) else value
    if not isinstance(items, list) or not items or not all(_is_real(v) for v in items):
        raise ConfigError(f"{key} must be {desc}, got {_describe(value)}")
    if not all(math.isfinite(float(v)) for v in items):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    return [float(v) for v in items]


def _cov_spec(key: str, value: Any) -> Any:
    """A number (isotropic variance > 0), a list (diagonal) or a list of lists (SPD matrix)."""
    desc = "a number > 0, a list of numbers > 0 (diagonal) or a list of lists (SPD matrix)"
    if _is_real(value):
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise ConfigError(f"{key} must be {desc}, got {value!r}")
        return float(value)
    if isinstance(value, list) and value and all(_is_real(v) for v in value):
        if not all(math.isfinite(float(v)) and float(v) > 0 for v in value):
            raise ConfigError(f"{key} must be {desc}, got {value!r}")
        return [float(v) for v in value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(r, list) and r for r in value)
        and all(_is_real(v) and math.isfinite(float(v)) for r in value for v in r)
    ):
        return [[float(v) for v in r] for r in value]
    raise ConfigError(f"{key} must be {desc}, got {_describe(value)}")


_POSITIVE = float_spec(0.0, lo_open=True)
_NONNEG = float_spec(0.0)
_PROBABILITY = float_spec(0.0, 1.0, lo_open=True, hi_open=True)

MODEL_KEYS: dict[str, Spec] = {
    "old_mean": _vector_spec,
    "new_mean": _vector_spec,
    "old_weight": _PROBABILITY,
    "cov": _cov_spec,
    "old_cov": _cov_spec,
    "new_cov": _cov_spec,
}

#: kind → objective class, read from the registry (the dataclasses validate their own fields)
OBJECTIVE_CLASSES: dict[str, type[Objective]] = {cls.kind: cls for cls in OBJECTIVES}


def _objective_error(where: str, exc: Exception, names: list[str]) -> ConfigError:
    """A dataclass's validation error as a ConfigError naming the key: its messages start
    with the field name ("replay must be in [0, 1), got 1.0")."""
    text = str(exc)
    if text.split(" ", 1)[0] in names:
        return ConfigError(f"{where}.{text}")
    return ConfigError(f"[{where}] {text}")


_LR_SCALE_KEYS = ("weight", "old_mean", "new_mean", "old_scale", "new_scale")


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


def _check_unknown(where: str, table: Mapping[str, Any], allowed: Any) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            section = f"[{where}]" if where else "the top level"
            raise ConfigError(
                f"unknown key '{prefix}{key}'; allowed keys in {section}: {sorted(allowed)}"
            )


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"[{where}] must be a table, got {_describe(value)}")
    return value


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

    target: TwoMode
    start: TwoMode
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
    """Read and validate a TOML configuration file (format in the module docstring).

    Raises :class:`ConfigError` for a missing or unreadable file, a TOML syntax error or any
    schema violation."""
    if _toml is None:  # pragma: no cover
        raise ConfigError(
            "reading TOML needs Python >= 3.11 or the 'tomli' package: pip install tomli"
        )
    path = Path(path)
    try:
        # utf-8-sig: a byte-order mark (written by some Windows editors) is accepted
        data = _toml.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except _toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (TOML must be UTF-8): {exc}") from None
    return parse_config(data, source=str(path))


def _model(section: str, table: dict[str, Any], defaults: Optional[TwoMode]) -> TwoMode:
    _check_unknown(section, table, MODEL_KEYS)
    values = {k: MODEL_KEYS[k](f"{section}.{k}", v) for k, v in table.items()}
    if defaults is None:
        for key in ("old_mean", "new_mean", "old_weight"):
            if key not in values:
                raise ConfigError(
                    f"{section}.{key} is required (keys of [{section}]: old_mean, new_mean, "
                    "old_weight, cov)"
                )
        if "cov" not in values and "old_cov" not in values and "new_cov" not in values:
            values["cov"] = 1.0
        args = values
    else:
        args = defaults.to_dict()
        if any(k in values for k in ("cov", "old_cov", "new_cov")):
            for k in ("cov", "old_cov", "new_cov"):
                args.pop(k, None)
        args.update(values)
    try:
        return TwoMode(**args)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[{section}] {exc}") from None


def _objective(table: dict[str, Any], where: str = "objective") -> Objective:
    if "kind" not in table:
        raise ConfigError(f"{where}.kind is required, one of {sorted(OBJECTIVE_CLASSES)}")
    kind = choice_spec(tuple(OBJECTIVE_CLASSES))(f"{where}.kind", table["kind"])
    cls = OBJECTIVE_CLASSES[kind]
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    fields = {k: v for k, v in table.items() if k != "kind"}
    for key in fields:
        if key not in names:
            raise ConfigError(
                f"unknown key '{where}.{key}' for kind = {kind!r}; allowed keys: {['kind', *names]}"
            )
    try:
        obj: Objective = cls(**fields)
    except (ValueError, TypeError) as exc:
        raise _objective_error(where, exc, names) from None
    return obj


def _grid(table: Any, objective: Objective) -> dict[str, list[Any]]:
    table = _table("sweep.grid", table)
    if not table:
        raise ConfigError("[sweep.grid] is empty; give at least one key = [values]")
    allowed = [
        *list(GRID_RUN_KEYS),
        "separation",
        "old_weight",
        "objective",
        "objective.<field>",
        "target.<key>",
        "start.<key>",
    ]
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
            continue
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where} must be a non-empty array of values, got {_describe(values)}"
            )
        if key in GRID_RUN_KEYS:
            spec = RUN_KEYS[key]
        elif key == "separation":
            spec = _POSITIVE
        elif key == "old_weight":
            spec = _PROBABILITY
        elif key.startswith("objective."):
            grid[key] = _objective_field_values(key, where, values, kinds)
            continue
        elif key.startswith(("target.", "start.")):
            name = key.split(".", 1)[1]
            if name not in MODEL_KEYS:
                raise ConfigError(f"unknown grid key '{key}'; model keys: {sorted(MODEL_KEYS)}")
            spec = MODEL_KEYS[name]
        else:
            hint = (
                " (rng is set per point by the sweep; use [run] rng for the root seed)"
                if key in ("rng", "threads")
                else ""
            )
            raise ConfigError(f"unknown grid key '{key}'{hint}; allowed grid keys: {allowed}")
        grid[key] = [spec(f"{where}[{i}]", v) for i, v in enumerate(values)]
    return grid


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


def _check_integers(value: Any, where: str) -> None:
    """TOML integers are 64-bit (the spec): a larger one (which Python's parser accepts) is
    refused as such, naming its key, before any key's own check sees it."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_integers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_integers(item, f"{where}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ConfigError(
            f"{where} = {value} is beyond TOML's 64-bit integer range (-2**63 .. 2**63 - 1)"
        )


def parse_config(data: Mapping[str, Any], source: Optional[str] = None) -> Config:
    """Validate an already-parsed TOML document (a dict) and build a :class:`Config`."""
    data = (
        _table("top level", dict(data)) if isinstance(data, Mapping) else _table("top level", data)
    )
    _check_integers(data, "")
    _check_unknown("", data, SECTIONS)
    if "target" not in data:
        raise ConfigError("[target] is required (keys: old_mean, new_mean, old_weight, cov)")
    if "objective" not in data:
        raise ConfigError(f"[objective] is required (kind = one of {sorted(OBJECTIVE_CLASSES)})")
    target = _model("target", _table("target", data["target"]), None)
    start = _model("start", _table("start", data.get("start", {})), target)
    if start.dim != target.dim:
        raise ConfigError(f"[start] has dimension {start.dim} but [target] has {target.dim}")
    objective = _objective(_table("objective", data["objective"]))

    run_table = _table("run", data.get("run", {}))
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

    grid = None
    keep = None
    population = False
    separation_mode = "proportional"
    if "sweep" in data:
        sweep = _table("sweep", data["sweep"])
        _check_unknown("sweep", sweep, SWEEP_KEYS)
        if "grid" in sweep:
            grid = _grid(sweep["grid"], objective)
        if "keep_trajectories" in sweep:
            keep = _string_spec("sweep.keep_trajectories", sweep["keep_trajectories"])
        if "population" in sweep:
            population = _bool_spec("sweep.population", sweep["population"])
        if "separation_mode" in sweep:
            separation_mode = choice_spec(("proportional", "fixed"))(
                "sweep.separation_mode", sweep["separation_mode"]
            )
    return Config(
        target=target,
        start=start,
        objective=objective,
        run=run,
        rng=rng,
        threads=threads,
        grid=grid,
        keep_trajectories=keep,
        population=population,
        separation_mode=separation_mode,
        source=source,
    )
