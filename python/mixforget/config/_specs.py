"""The value checks of a TOML configuration (docs: api): :class:`ConfigError`, one spec per
kind of value (each returns the normalised value or raises ConfigError naming the key and
the allowed values), the table checks, and :func:`read_toml`, the one reader of TOML files."""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

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


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML document of ``path``; ConfigError for a missing or unreadable file,
    a TOML syntax error or text that is not UTF-8."""
    if _toml is None:  # pragma: no cover
        raise ConfigError(
            "reading TOML needs Python >= 3.11 or the 'tomli' package: pip install tomli"
        )
    path = Path(path)
    try:
        # utf-8-sig: a byte-order mark (written by some Windows editors) is accepted
        data: dict[str, Any] = _toml.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except _toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (TOML must be UTF-8): {exc}") from None
    return data
