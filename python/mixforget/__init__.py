"""mixforget: forgetting in continual post-training of generative models, measured.

The model is the two-mode Gaussian mixture of arXiv 2510.18874 / 2603.12163,
q = α N(μ_old, Σ) + (1−α) N(μ_new, Σ); see MATH.md for every quantity.
"""

from . import kernels, reference, studies, theory
from ._core import __version__ as _core_version
from ._validate import get_memory_limit, set_memory_limit
from .mixture import TwoMode
from .objectives import (
    OAPL,
    SDFT,
    ForwardKL,
    NewModeREINFORCE,
    Objective,
    ReverseKL,
    TTTDiscover,
)
from .population import population_flow, population_gradient
from .results import GradientEstimates, Trajectory
from .simulate import estimate_gradient, simulate
from .sweep import sweep

__version__ = "0.1.0"

__all__ = [
    "OAPL",
    "SDFT",
    "ForwardKL",
    "GradientEstimates",
    "NewModeREINFORCE",
    "Objective",
    "ReverseKL",
    "TTTDiscover",
    "Trajectory",
    "TwoMode",
    "__version__",
    "estimate_gradient",
    "get_memory_limit",
    "kernels",
    "population_flow",
    "population_gradient",
    "reference",
    "set_memory_limit",
    "simulate",
    "studies",
    "sweep",
    "theory",
]

assert _core_version == __version__, "the compiled extension does not match the Python package"
