"""The Rust kernels (``mixforget._core``) behind a validating NumPy interface.

Every function has a pure-NumPy twin with the same signature in :mod:`mixforget.reference`.
All run with the GIL released, parallel over fixed-size chunks whose random streams derive
from (root key, chunk index): the same ``rng`` gives bit-identical output for any ``threads``.
Inputs are validated first (ValueError/TypeError naming the argument); float32 and
non-contiguous arrays are accepted and converted to contiguous float64.

The mixture and starvation kernels are defined in :mod:`mixforget._kernels` (below the model
types, which use them) and re-exported here with ``replay_weights``, which takes models.
"""

from __future__ import annotations

from typing import Any as _Any

import numpy as _np

from . import _core
from ._chunks import timed_ranges as _timed_ranges
from ._kernels import FIRST_ROWS as _FIRST_ROWS
from ._kernels import as_points as _as_points
from ._kernels import mixture_args as mixture_args
from ._kernels import mixture_logpdf as mixture_logpdf
from ._kernels import responsibilities as responsibilities
from ._kernels import sample_args as sample_args
from ._kernels import sample_mixture as sample_mixture
from ._kernels import starvation_args as starvation_args
from ._kernels import starvation_counts as starvation_counts
from ._problem import build_problem as _build_problem
from ._problem import check_lr_scale as _check_lr_scale
from ._problem import check_models as _check_models
from ._validate import check_output_size as _check_output_size
from ._validate import resolve_threads as resolve_threads
from .objectives import ReverseKL as _ReverseKL

__all__ = [
    "mixture_logpdf",
    "replay_weights",
    "resolve_threads",
    "responsibilities",
    "sample_mixture",
    "starvation_counts",
]


def replay_weights(
    x: _Any,
    model: _Any,
    target: _Any,
    replay: float,
    weight_cap: float | None = None,
    threads: int | None = None,
) -> _np.ndarray:
    """Bounded importance weights of reverse-KL replay (docs: theory-reverse-kl) at points x (n, d):
    w = min(c, q_θ(x)/m(x)), m = (1−λ) q_θ + λ p_old, so w ≤ 1/(1−λ) without a cap.
    ``model`` is q_θ and ``target`` gives p_old (both TwoMode)."""
    _check_models(target, model, "model")
    objective = _ReverseKL(replay=replay, weight_cap=weight_cap)
    pts = _as_points(x, model.dim)
    _check_output_size(
        f"weights of n={pts.shape[0]} points", pts.shape[0] * 8, "pass fewer points per call"
    )
    problem = _build_problem(target, model, objective, "logit", 1.0, _check_lr_scale(None))
    out = _np.empty(pts.shape[0])
    n_threads = resolve_threads(threads)
    # calls of about 0.1 s, so that Ctrl-C stops a large request promptly
    for start, stop in _timed_ranges(pts.shape[0], _FIRST_ROWS):
        out[start:stop] = _core.replay_weights(problem, pts[start:stop], n_threads)
    return out
