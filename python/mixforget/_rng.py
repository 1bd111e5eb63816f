"""Random-state resolution per SPEC 7 (int, Generator, SeedSequence or None).

The resolved entropy is returned with every result so that any call can be repeated exactly:
pass ``np.random.SeedSequence(entropy, spawn_key=spawn_key)`` (or the stored dict via
:func:`seed_from_record`) as ``rng``.
"""

from __future__ import annotations

import numbers
from typing import Any, Union

import numpy as np

RngLike = Union[None, int, np.random.Generator, np.random.SeedSequence]

__all__ = ["RngLike", "resolve_rng", "root_key", "seed_from_record", "seed_record"]


def resolve_rng(rng: Any) -> np.random.SeedSequence:
    """Turn ``rng`` into a SeedSequence.

    - int ≥ 0 or None: ``SeedSequence(rng)`` (None draws fresh OS entropy, which is recorded);
    - Generator: four 64-bit words drawn from it become the entropy (the Generator advances);
    - SeedSequence: used as is.
    """
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.Generator):
        words = rng.integers(0, 2**63, size=4, dtype=np.int64)
        return np.random.SeedSequence([int(w) for w in words])
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise ValueError(f"rng must be a non-negative integer seed, got {int(rng)}")
        return np.random.SeedSequence(int(rng))
    raise TypeError(
        "rng must be None, a non-negative int, a numpy Generator or a SeedSequence, got "
        f"{type(rng).__name__}"
    )


def root_key(seq: np.random.SeedSequence) -> tuple[int, int]:
    """The two 64-bit words from which Rust derives every stream (key, stream index)."""
    words = seq.generate_state(2, np.uint64)
    return int(words[0]), int(words[1])


def seed_record(seq: np.random.SeedSequence) -> dict[str, Any]:
    """JSON/npz-friendly record of a SeedSequence: entropy as a decimal string, spawn key."""
    entropy: Any = seq.entropy  # an int, or a sequence of ints when built from one
    if isinstance(entropy, (list, tuple, np.ndarray)):
        entropy_str = ",".join(str(int(e)) for e in entropy)
    else:
        entropy_str = str(int(entropy))
    return {"entropy": entropy_str, "spawn_key": [int(k) for k in seq.spawn_key]}


def seed_from_record(record: dict[str, Any]) -> np.random.SeedSequence:
    """Inverse of :func:`seed_record`."""
    text = str(record["entropy"])
    entropy: Any = [int(e) for e in text.split(",")] if "," in text else int(text)
    return np.random.SeedSequence(entropy, spawn_key=tuple(int(k) for k in record["spawn_key"]))
