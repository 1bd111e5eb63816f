import numpy as np
import pytest

import mixforget as mf


@pytest.fixture
def target() -> mf.TwoMode:
    """The default problem: 1-D, old mode −3, new target 3.5, α* = 0.75 (Δ = 6.5)."""
    return mf.TwoMode(old_mean=[-3.0], new_mean=[3.5], old_weight=0.75, cov=1.0)


@pytest.fixture
def start(target: mf.TwoMode) -> mf.TwoMode:
    """Standard start: old component correct, new mean wrong (docs: theory-model)."""
    return target.replace(new_mean=[0.5])


def within_sigma(value, expected, stderr, k=5.0):
    value, expected, stderr = np.broadcast_arrays(
        np.asarray(value, float), np.asarray(expected, float), np.asarray(stderr, float)
    )
    return np.all(np.abs(value - expected) <= k * stderr + 1e-15)
