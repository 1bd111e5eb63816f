"""Input validation shared by every public entry point (docs: design-reliability).

Every check raises ``ValueError``/``TypeError`` naming the argument and the allowed range,
before any work is done.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "as_choice",
    "as_cov",
    "as_float_array",
    "as_fraction",
    "as_positive_float",
    "as_positive_int",
    "as_probability",
    "as_real",
    "batch_buffer_bytes",
    "check_output_size",
    "cholesky",
    "describe_type",
    "get_memory_limit",
    "in_flight",
    "set_memory_limit",
]


DEFAULT_MEMORY_LIMIT = 4 * 2**30
_memory_limit = [DEFAULT_MEMORY_LIMIT]


def describe_type(value: Any) -> str:
    """The type of ``value`` for an error message; a class passed where an instance was
    expected (``mf.ReverseKL`` for ``mf.ReverseKL()``) says so, with the fix."""
    if isinstance(value, type):
        return f"the class {value.__name__} itself; did you mean {value.__name__}()?"
    return type(value).__name__


def set_memory_limit(nbytes: int) -> None:
    """Largest memory (bytes) any call may allocate before it is refused (docs: design-reliability):
    outputs, the per-batch work buffers of the batches running at once, and quadrature
    buffers all count; default 4 GiB. ``simulate`` also takes a per-call ``memory_limit``."""
    _memory_limit[0] = as_positive_int("nbytes", nbytes)


def get_memory_limit() -> int:
    """The current limit of :func:`set_memory_limit`."""
    return _memory_limit[0]


def format_bytes(nbytes: int) -> str:
    """A size for messages: exact below 1 KiB, else four significant digits in the largest
    binary unit below it, with the exact byte count (so that two close sizes never read
    alike, e.g. "1.5 KiB (1536 bytes)")."""
    if nbytes < 1024:
        return f"{nbytes} bytes"
    units = (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10))
    unit, power = next((u, p) for u, p in units if nbytes >= 2**p)
    return f"{nbytes / 2**power:.4g} {unit} ({nbytes} bytes)"


def check_output_size(what: str, nbytes: int, fix: str, limit: int | None = None) -> None:
    """Refuse, before any work, a call whose buffers (``nbytes``, every allocation counted)
    exceed the memory limit (ValueError with the size and a fix)."""
    limit = get_memory_limit() if limit is None else limit
    if nbytes > limit:
        raise ValueError(
            f"{what} would take {format_bytes(nbytes)}, over the memory limit "
            f"{format_bytes(limit)}: "
            f"{fix}, or raise the limit (mixforget.set_memory_limit / memory_limit=)"
        )


#: Largest integer any count (steps, batch_size, replicates, ...) may take: the Rust core
#: takes them as 64-bit sizes, so anything larger is refused with the argument's name.
INT_MAX = 2**63 - 1

#: Bytes of the quadrature buffer of one exact (population) gradient, an upper bound: at most
#: 1.2e6 nodes per sampling component, up to 3 components, ~16 f64 work values per node.
QUADRATURE_BYTES = 3 * 1_200_000 * 16 * 8


def in_flight(threads: int, units: int) -> int:
    """How many work units (replicates, batch chunks) run at once: one per thread of the
    pool (``threads`` 0 = all cores), never more than there are units."""
    cores = os.cpu_count() or 1
    return max(1, min(units, cores if threads == 0 else min(threads, cores)))


def batch_buffer_bytes(batch_size: int, dim: int, in_flight: int) -> int:
    """Bytes of the per-batch work buffers of the Rust engine: each batch running at once owns
    the points (batch_size·d) and about 14 per-sample arrays; counted conservatively as
    16·batch_size·(d + 1) float64 values per batch in flight."""
    return 16 * batch_size * (dim + 1) * 8 * in_flight


def as_float_array(name: str, value: Any, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``value`` as a C-contiguous float64 array (float32 and strided inputs are
    converted), checking its number of dimensions and that every entry is finite."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of real numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of real numbers: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64, order="C")  # keeps 0-d arrays 0-d
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape "
                f"{arr.shape}"
            )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def as_positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in [minimum, maximum] (maximum at most :data:`INT_MAX`); bools and floats
    are rejected."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral,)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    maximum = INT_MAX if maximum is None else min(maximum, INT_MAX)
    if value < minimum or value > maximum:
        bound = f"in [{minimum}, {maximum}]" if maximum < INT_MAX else f"in [{minimum}, 2**63 - 1]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def as_real(name: str, value: Any) -> float:
    """A finite real number (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def as_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """One of the allowed strings."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def as_probability(name: str, value: Any) -> float:
    """A weight strictly inside (0, 1)."""
    value = as_real(name, value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value}")
    return value


def as_fraction(name: str, value: Any) -> float:
    """A fraction in [0, 1), e.g. the replay fraction λ."""
    value = as_real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def as_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    value = as_real(name, value)
    if value < 0.0 or (value == 0.0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def cholesky(name: str, full: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of an SPD matrix; symmetric, positive definite, well conditioned."""
    if not np.allclose(full, full.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    try:
        chol = np.linalg.cholesky(full)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} must be symmetric positive definite (Cholesky failed)") from None
    diag = np.diag(chol)
    if diag.min() <= 1e-12 * max(diag.max(), 1e-300):
        raise ValueError(f"{name} is singular or nearly so (condition number too large)")
    return chol


def as_cov(name: str, value: Any, dim: int) -> np.ndarray:
    """A covariance in one of three forms: scalar (isotropic σ²), 1-D (diagonal) or 2-D SPD.

    Returned as a float64 array of ndim 0, 1 or 2, validated (positive / SPD)."""
    arr = as_float_array(name, value, ndim=(0, 1, 2))
    if arr.ndim == 0:
        if arr <= 0:
            raise ValueError(f"{name} must be > 0 (a scalar variance), got {float(arr)}")
    elif arr.ndim == 1:
        if arr.shape != (dim,):
            raise ValueError(f"{name} as a diagonal must have shape ({dim},), got {arr.shape}")
        if np.any(arr <= 0):
            raise ValueError(f"{name} diagonal entries must all be > 0")
    else:
        if arr.shape != (dim, dim):
            raise ValueError(f"{name} as a matrix must have shape ({dim}, {dim}), got {arr.shape}")
        cholesky(name, arr)
    return arr


def cov_matrix(cov: np.ndarray, dim: int) -> np.ndarray:
    """The full (d, d) matrix of a covariance given in any of the three forms."""
    if cov.ndim == 0:
        return float(cov) * np.eye(dim)
    if cov.ndim == 1:
        return np.diag(cov)
    return cov


def normalize_covs(name: str, covs: Any, k: int, dim: int) -> list[np.ndarray]:
    """Per-component covariances for K components in R^d.

    - a real scalar: one isotropic variance shared by all components;
    - a list/tuple of K covariances, each scalar, (d,) diagonal or (d, d) SPD;
    - an array with leading axis K: (K,) variances, (K, d) diagonals or (K, d, d) matrices.
    """
    if isinstance(covs, (list, tuple)):
        items: Sequence[Any] = list(covs)
    else:
        arr = as_float_array(name, covs, ndim=(0, 1, 2, 3))
        items = [arr] * k if arr.ndim == 0 else list(arr)
    if len(items) != k:
        raise ValueError(f"{name} must give {k} covariances (one per component), got {len(items)}")
    return [as_cov(f"{name}[{i}]", c, dim) for i, c in enumerate(items)]


def resolve_threads(threads: Any) -> int:
    """``None`` → all cores (0 for the Rust pool), else an int ≥ 1. The Rust core keeps at
    most 4 thread pools (least recently used dropped) and caps a pool at the number of cores,
    so any sequence of ``threads`` values holds a bounded number of OS threads; results do not
    depend on ``threads``."""
    if threads is None:
        return 0
    return as_positive_int("threads", threads, maximum=max(1024, os.cpu_count() or 1))
