"""Array-API twins of every Rust kernel (docs: api, speed-workloads), with the same signatures as
``mixforget.kernels.*``, ``mixforget.simulate``, ``mixforget.estimate_gradient`` and
``mixforget.population_gradient`` (plus keyword arguments ``backend``, ``device`` and
``precision``).

They are the executable specification of the theory guide (docs: theory), the honest baseline of the
benchmarks and the GPU path of :func:`mixforget.simulate` (``backend="jax" | "torch" | "cupy"``):
written once against the Python array API standard, they run on NumPy (the default; NumPy ≥ 2 needs
no extra package), array-api-strict, JAX (steps jitted and scanned), PyTorch and CuPy
(through array-api-compat) — :mod:`._backend` resolves the namespace, device and precision.
They train the component scales too (``train_scales``, ``scale_param``), as the Rust engine.
They are vectorised over replicates and over the batch (arrays of shape (R, B, d)); the
only Python loops run over training steps, mixture components, root-finding iterations or
fixed-size memory chunks — never over samples or replicates — and nothing is updated in
place. They agree with the Rust engine *in distribution*, not bit for bit: randomness comes
from one adapter per library (:mod:`._random`) seeded from ``resolve_rng(rng)`` (SPEC 7);
the same seed gives the same numbers on the same backend and device. The 1-D population
gradient (quadrature) runs on NumPy. Inputs are validated by the same
helpers as the Rust path (``kernels.mixture_args``/``as_points``/``resolve_threads``,
``_problem.check_*``), so bad input raises the same errors; ``threads`` is validated and
otherwise ignored (one Python thread, BLAS aside).

Layout (the Rust engine's, one module per objective):

- :mod:`.forward_kl`, :mod:`.reverse_kl`, :mod:`.sdft`, :mod:`.ttt_discover`, :mod:`.oapl`,
  :mod:`.new_mode_reinforce`, :mod:`.kl_regularized_rl` — each objective's sampling source,
  second density, per-sample coefficient, extra state and exact-limit behaviour, with its
  formula in the module docstring;
- :mod:`._objective` — the interface those implement (:class:`~._objective.ObjectiveTwin`),
  the run context, the parameters and the pieces several objectives share;
  :mod:`._registry` maps an objective (by its ``kind`` in
  :data:`mixforget.objectives.OBJECTIVES`) to its twin;
- :mod:`._step` — the shared core of one step: draw, densities, score accumulation, update,
  divergence; :mod:`._engine` — the twin's stepper for the engine's driver
  (:func:`mixforget.engine.drive`, which records, chunks and builds the Trajectory) and the
  front doors :func:`simulate`, :func:`estimate_gradient`, :func:`population_gradient`;
- :mod:`._densities` — Gaussian components and two-mode mixtures; :mod:`._averaging` — the
  batch mean and its population (quadrature) limit;
- :mod:`.kernels` — twins of :func:`mixforget.kernels.responsibilities`,
  ``mixture_logpdf``, ``sample_mixture``, ``starvation_counts``
  (``replay_weights`` lives with ReverseKL);
- :mod:`._backend` — backend names, namespace/device/precision resolution, the
  ``while_loop`` that JAX can trace; :mod:`._random` — one random adapter per library.
"""

from __future__ import annotations

from ._engine import estimate_gradient, population_gradient, simulate
from .kernels import mixture_logpdf, responsibilities, sample_mixture, starvation_counts
from .reverse_kl import replay_weights

__all__ = [
    "estimate_gradient",
    "mixture_logpdf",
    "population_gradient",
    "replay_weights",
    "responsibilities",
    "sample_mixture",
    "simulate",
    "starvation_counts",
]
