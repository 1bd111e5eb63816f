"""Random numbers for the twin on every array library: the array API standard has none, so one
small adapter per library, each seeded from the user's ``rng`` through its SeedSequence.

Every adapter has the same functional interface — ``state = adapter.init()``, then
``state, u = adapter.uniform(state, shape)`` (U[0, 1)), ``state, z = adapter.normal(state,
shape)`` (standard normals) and ``state, k = adapter.binomial(state, n, p, size)`` — so that
one step function serves both the stateful generators (NumPy, CuPy, torch: ``state`` is the
generator and is returned unchanged) and JAX's keys (``state`` is a key, split at every draw,
carried through ``lax.scan``).

Reproducibility: the same seed gives the same numbers on the same backend, device and
library version; across backends (and across devices of one library) the streams differ and
results agree in distribution only.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def seed_words(seq: np.random.SeedSequence, n: int = 2) -> np.ndarray:
    """``n`` 32-bit words of the SeedSequence's state: the seed of a non-NumPy generator."""
    return seq.generate_state(n, np.uint32)


def seed_int63(seq: np.random.SeedSequence) -> int:
    """A non-negative 63-bit integer seed (torch, CuPy) from the SeedSequence."""
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


class NumpyRandom:
    """NumPy ``Generator`` (PCG64 from the SeedSequence); the draws are converted to the
    target namespace by ``convert`` (identity for NumPy, ``xp.asarray`` for
    array-api-strict)."""

    def __init__(self, seq: np.random.SeedSequence, dtype: Any, convert: Any = None) -> None:
        self.seq = seq
        self.np_dtype = np.dtype(dtype)
        self.convert = convert if convert is not None else (lambda a: a)

    def init(self) -> np.random.Generator:
        return np.random.default_rng(self.seq)

    def uniform(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return state, self.convert(state.random(shape, dtype=self.np_dtype))

    def normal(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return state, self.convert(state.standard_normal(shape, dtype=self.np_dtype))

    def binomial(self, state: Any, n: int, p: float, size: int) -> tuple[Any, Any]:
        return state, self.convert(state.binomial(n, p, size=size).astype(np.int64, copy=False))


class CupyRandom:
    """CuPy ``cupy.random.default_rng`` (XORWOW) on the current device."""

    def __init__(self, seq: np.random.SeedSequence, dtype: Any) -> None:
        import cupy

        self.cupy = cupy
        self.seed = seed_int63(seq)
        self.dtype = dtype

    def init(self) -> Any:
        return self.cupy.random.default_rng(self.seed)

    def uniform(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return state, state.random(shape, dtype=self.dtype)

    def normal(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return state, state.standard_normal(shape, dtype=self.dtype)

    def binomial(self, state: Any, n: int, p: float, size: int) -> tuple[Any, Any]:
        return state, state.binomial(n, p, size=size).astype(self.cupy.int64)


class TorchRandom:
    """A ``torch.Generator`` on the run's device (Philox on CUDA, MT19937 on the CPU)."""

    def __init__(self, seq: np.random.SeedSequence, dtype: Any, device: Any) -> None:
        import torch

        self.torch = torch
        self.seed = seed_int63(seq)
        self.dtype = dtype
        self.device = device

    def init(self) -> Any:
        gen = self.torch.Generator(device=self.device)
        gen.manual_seed(self.seed)
        return gen

    def uniform(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return state, self.torch.rand(shape, generator=state, dtype=self.dtype, device=self.device)

    def normal(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return state, self.torch.randn(shape, generator=state, dtype=self.dtype, device=self.device)

    def binomial(self, state: Any, n: int, p: float, size: int) -> tuple[Any, Any]:
        torch = self.torch
        count = torch.full((size,), float(n), dtype=torch.float64, device=self.device)
        prob = torch.full((size,), float(p), dtype=torch.float64, device=self.device)
        return state, torch.binomial(count, prob, generator=state).to(torch.int64)


class JaxRandom:
    """``jax.random`` with a threefry key built from 64 bits of the SeedSequence; every draw
    splits the key (the state), so the draws of a step are a pure function of the state and
    the step can be jitted and scanned."""

    def __init__(self, seq: np.random.SeedSequence, dtype: Any, device: Any) -> None:
        import jax

        self.jax = jax
        self.words = seed_words(seq, 2)
        self.dtype = dtype
        self.device = device

    def init(self) -> Any:
        key = self.jax.numpy.asarray(self.words, dtype=self.jax.numpy.uint32)
        return self.jax.device_put(key, self.device)

    def uniform(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        state, sub = self.jax.random.split(state)
        return state, self.jax.random.uniform(sub, shape, dtype=self.dtype)

    def normal(self, state: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        state, sub = self.jax.random.split(state)
        return state, self.jax.random.normal(sub, shape, dtype=self.dtype)

    def binomial(self, state: Any, n: int, p: float, size: int) -> tuple[Any, Any]:
        state, sub = self.jax.random.split(state)
        jnp = self.jax.numpy
        draws = self.jax.random.binomial(sub, float(n), float(p), shape=(size,))
        return state, jnp.astype(jnp.round(draws), jnp.int64)
