"""mixforget: forgetting in continual post-training of generative models, measured.

The model is the two-mode Gaussian mixture of arXiv 2510.18874 / 2603.12163,
q = α N(μ_old, Σ) + (1−α) N(μ_new, Σ); see the theory guide (docs: theory) for every quantity.
"""

from . import kernels, reference, sequences, studies, theory
from ._core import __version__
from ._validate import get_memory_limit, set_memory_limit
from .mixture import Mixture, TwoMode
from .objectives import (
    OAPL,
    SDFT,
    ForwardKL,
    KLRegularizedRL,
    NewModeREINFORCE,
    Objective,
    ReverseKL,
    TTTDiscover,
)
from .population import population_flow, population_gradient
from .results import GradientEstimates, MixtureTrajectory, Trajectory
from .sequences import Curriculum, SequenceResult, sequence
from .simulate import estimate_gradient, simulate
from .sweeps import load_sweep, sweep

__all__ = [
    "OAPL",
    "SDFT",
    "Curriculum",
    "ForwardKL",
    "GradientEstimates",
    "KLRegularizedRL",
    "Mixture",
    "MixtureTrajectory",
    "NewModeREINFORCE",
    "Objective",
    "ReverseKL",
    "SequenceResult",
    "TTTDiscover",
    "Trajectory",
    "TwoMode",
    "__version__",
    "estimate_gradient",
    "get_memory_limit",
    "kernels",
    "load_sweep",
    "population_flow",
    "population_gradient",
    "reference",
    "sequence",
    "sequences",
    "set_memory_limit",
    "simulate",
    "studies",
    "sweep",
    "theory",
]
