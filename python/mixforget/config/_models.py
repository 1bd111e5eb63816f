"""The problem's values in a TOML configuration (docs: api, theory-k-components): the
``[target]`` and ``[start]`` models, two-mode (``old_mean``, ``new_mean``, ``old_weight``)
or K-component (``weights``, ``means``, ``cov`` | ``covs``), and the ``[objective]``."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from ..mixture import Mixture, TwoMode
from ..objectives import OBJECTIVES, Objective
from ._specs import (
    _PROBABILITY,
    ConfigError,
    Spec,
    _check_unknown,
    _cov_spec,
    _describe,
    _is_real,
    _vector_spec,
    choice_spec,
)

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


def _key_error(where: str, exc: Exception, names: Any) -> ConfigError:
    """A library error as a ConfigError naming the key: a message that starts with one of
    ``names`` ("weights must sum to 1 …") becomes ``where.weights must …``, others are
    prefixed by the section."""
    text = str(exc)
    head = re.match(r"[A-Za-z_]+", text)
    if head and head.group(0) in names:
        return ConfigError(f"{where}.{text}")
    return ConfigError(f"[{where}] {text}")


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


# ---------------------------------------------------------------------------------------
# K-component models: [target] weights, means, cov | covs (and new_components)
# ---------------------------------------------------------------------------------------
def _weights_spec(key: str, value: Any) -> list[float]:
    if not isinstance(value, list) or not value or not all(_is_real(v) for v in value):
        raise ConfigError(
            f"{key} must be an array of K >= 2 numbers in (0, 1) summing to 1, "
            f"got {_describe(value)}"
        )
    return [float(v) for v in value]


def _means_spec(key: str, value: Any) -> list[list[float]]:
    """K means: an array of numbers (d = 1) or an array of K arrays of d numbers."""
    desc = "an array of K numbers (d = 1) or an array of K arrays of d numbers"
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be {desc}, got {_describe(value)}")
    if all(_is_real(v) for v in value):
        return [_vector_spec(f"{key}[{i}]", v) for i, v in enumerate(value)]
    if all(isinstance(v, list) for v in value):
        return [_vector_spec(f"{key}[{i}]", v) for i, v in enumerate(value)]
    raise ConfigError(f"{key} must be {desc}, got {_describe(value)}")


def _covs_spec(key: str, value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{key} must be an array of K covariances (each a number > 0, a list of numbers "
            f"> 0 or a list of lists), got {_describe(value)}"
        )
    return [_cov_spec(f"{key}[{i}]", v) for i, v in enumerate(value)]


def _new_components_spec(key: str, value: Any) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(
            f"{key} must be a non-empty array of component indices (integers 0 .. K-1), "
            f"got {_describe(value)}"
        )
    return list(value)


#: keys of a K-component [target] / [start]
MIXTURE_KEYS: dict[str, Spec] = {
    "weights": _weights_spec,
    "means": _means_spec,
    "cov": _cov_spec,
    "covs": _covs_spec,
}
#: [target] only: the components of the new task (a keyword of mixforget.simulate)
TARGET_ONLY_KEYS: dict[str, Spec] = {"new_components": _new_components_spec}


def is_mixture_table(table: Any) -> bool:
    """True when a ``[target]`` table uses the K-component keys."""
    return isinstance(table, dict) and bool(
        set(table) & {"weights", "means", "covs", "new_components"}
    )


def mixture_model(
    section: str,
    table: dict[str, Any],
    defaults: Optional[Mixture] = None,
    extra_keys: Optional[dict[str, Spec]] = None,
) -> Mixture:
    """The Mixture of ``[section]``; with ``defaults`` (the target) every key is optional.
    ``extra_keys``: keys the caller reads itself (allowed here, not model keys)."""
    allowed = {**MIXTURE_KEYS, **(extra_keys or {})}
    two_mode = sorted(set(table) & set(MODEL_KEYS) - {"cov"})
    if two_mode:
        raise ConfigError(
            f"[{section}] mixes two-mode keys {two_mode} with K-component keys; a K-component "
            f"[{section}] has the keys {sorted(allowed)}"
        )
    _check_unknown(section, table, allowed)
    values = {
        k: MIXTURE_KEYS[k](f"{section}.{k}", v) for k, v in table.items() if k in MIXTURE_KEYS
    }
    if defaults is None:
        for key in ("weights", "means"):
            if key not in values:
                raise ConfigError(
                    f"{section}.{key} is required (keys of a K-component [{section}]: "
                    f"{sorted(allowed)})"
                )
        if "covs" not in values and "cov" not in values:
            values["cov"] = 1.0
        args = values
    else:
        args = defaults.to_dict()
        if "cov" in values or "covs" in values:
            args.pop("cov", None)
            args.pop("covs", None)
        args.update(values)
    try:
        return Mixture(**args)
    except (ValueError, TypeError) as exc:
        raise _key_error(section, exc, MIXTURE_KEYS) from None


def parse_models(
    target_table: dict[str, Any], start_table: dict[str, Any]
) -> tuple[TwoMode | Mixture, TwoMode | Mixture, Optional[list[int]]]:
    """(target, start, new_components) of the ``[target]`` and ``[start]`` tables: TwoModes
    for the two-mode keys, Mixtures for the K-component keys (``new_components`` None for
    two-mode targets or when not given)."""
    if not is_mixture_table(target_table):
        target = _model("target", target_table, None)
        start = _model("start", start_table, target)
        if start.dim != target.dim:
            raise ConfigError(f"[start] has dimension {start.dim} but [target] has {target.dim}")
        return target, start, None
    mixture = mixture_model("target", target_table, None, TARGET_ONLY_KEYS)
    new = target_table.get("new_components")
    new_components = None if new is None else _new_components_spec("target.new_components", new)
    if "new_components" in start_table:
        raise ConfigError("start.new_components is not a model key: give it in [target]")
    begin = mixture_model("start", start_table, mixture)
    if begin.dim != mixture.dim:
        raise ConfigError(f"[start] has dimension {begin.dim} but [target] has {mixture.dim}")
    if begin.n_components != mixture.n_components:
        raise ConfigError(
            f"[start] has K = {begin.n_components} components but [target] has "
            f"K = {mixture.n_components} (start.weights and start.means need one entry per "
            "component)"
        )
    return mixture, begin, new_components
