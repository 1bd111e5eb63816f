"""Type stubs of the compiled Rust extension (rust/bindings/). Arguments are validated by the
Python layer (mixforget.kernels, mixforget.simulate, ...); call those instead."""

from collections.abc import Mapping, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

from .objectives import Objective

__all__ = [
    "BATCHES_PER_STREAM",
    "OBJECTIVE_KINDS",
    "RUNAWAY_DISTANCE",
    "RUNAWAY_SCALE",
    "RUNAWAY_WEIGHT",
    "SAMPLES_PER_STREAM",
    "MixtureProblem",
    "MixtureRecordChunk",
    "MixtureSimulator",
    "PopulationFlow",
    "RecordChunk",
    "Simulator",
    "TrainingProblem",
    "__version__",
    "estimate_gradient",
    "lane_normal_floor",
    "lane_normal_tail_counts",
    "lane_normals",
    "mixture_estimate_gradient",
    "mixture_logpdf",
    "normal_floor",
    "population_gradient",
    "replay_weights",
    "responsibilities",
    "sample_mixture",
    "starvation_counts",
]

__version__: str
RUNAWAY_DISTANCE: float
RUNAWAY_WEIGHT: float
RUNAWAY_SCALE: float
BATCHES_PER_STREAM: int
SAMPLES_PER_STREAM: int
#: the Python class names of the objectives the kernels implement (rust/objectives/, in the
#: order of ``objective_list!``)
OBJECTIVE_KINDS: tuple[str, ...]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]

def responsibilities(
    x: _F64, weights: _F64, means: _F64, covs: Sequence[_F64], threads: int
) -> _F64: ...
def mixture_logpdf(
    x: _F64, weights: _F64, means: _F64, covs: Sequence[_F64], threads: int
) -> _F64: ...
def sample_mixture(
    n: int,
    weights: _F64,
    means: _F64,
    covs: Sequence[_F64],
    key: tuple[int, int],
    threads: int,
    first_stream: int = 0,
) -> tuple[_F64, _I64]: ...
def starvation_counts(
    old_weight: float,
    batch_size: int,
    batches: int,
    replay: float,
    stratified: bool,
    key: tuple[int, int],
    threads: int,
    first_stream: int = 0,
) -> _I64: ...
def population_gradient(problem: TrainingProblem) -> _F64: ...
def estimate_gradient(
    problem: TrainingProblem,
    batch_size: int,
    batches: int,
    key: tuple[int, int],
    threads: int,
    first_stream: int = 0,
) -> tuple[_F64, _I64]: ...
def replay_weights(problem: TrainingProblem, x: _F64, threads: int) -> _F64: ...
def normal_floor(n: int, key: tuple[int, int], threads: int) -> float: ...

@final
class TrainingProblem:
    def __new__(
        cls,
        *,
        target_weight: float,
        target_means: _F64,
        target_covs: Sequence[_F64],
        model_covs: Sequence[_F64],
        start_weight: float,
        start_means: _F64,
        objective: Objective,
        weight_param: str,
        lr: float,
        lr_scale: Mapping[str, float],
        train_scales: bool,
        scale_param: str,
        update: str = ...,
    ) -> TrainingProblem: ...
    @property
    def dim(self) -> int: ...
    def objective_dict(self) -> dict[str, Any]: ...

@final
class RecordChunk:
    """The records of one ``advance`` call: R replicates (1 for the population flow) × n
    records."""

    @property
    def weight(self) -> _F64: ...
    @property
    def old_mean(self) -> _F64: ...
    @property
    def new_mean(self) -> _F64: ...
    @property
    def starved(self) -> _I64: ...
    @property
    def scale(self) -> _F64: ...

@final
class Simulator:
    def __new__(
        cls,
        problem: TrainingProblem,
        batch_size: int,
        replicates: int,
        key: tuple[int, int],
        threads: int,
    ) -> Simulator: ...
    def advance(self, steps: int, record_every: int) -> RecordChunk: ...
    def diverged(self) -> npt.NDArray[np.bool_]: ...
    @property
    def steps_done(self) -> int: ...

@final
class PopulationFlow:
    def __new__(cls, problem: TrainingProblem) -> PopulationFlow: ...
    def advance(self, steps: int, record_every: int) -> RecordChunk: ...
    @property
    def steps_done(self) -> int: ...
    def diverged(self) -> bool: ...

# the K-component engine (rust/mixture_engine/): flat order [η_0 … η_{K−2}, μ_0 … μ_{K−1}]
@final
class MixtureProblem:
    def __new__(
        cls,
        *,
        target_weights: Sequence[float] | _F64,
        target_means: _F64,
        target_covs: Sequence[_F64],
        model_covs: Sequence[_F64],
        start_weights: Sequence[float] | _F64,
        start_means: _F64,
        objective: Objective,
        new_components: Sequence[int],
        replay_mix: Sequence[float] | _F64,
        lr: float,
        lr_weight: float,
        lr_means: float,
        update: str,
        label_rewards: Sequence[float] = ...,
    ) -> MixtureProblem: ...
    @property
    def dim(self) -> int: ...
    @property
    def n_components(self) -> int: ...
    @property
    def width(self) -> int: ...

@final
class MixtureRecordChunk:
    """The records of one ``MixtureSimulator.advance`` call: R replicates × n records."""

    @property
    def weights(self) -> _F64: ...
    @property
    def means(self) -> _F64: ...
    @property
    def starved(self) -> _I64: ...

@final
class MixtureSimulator:
    def __new__(
        cls,
        problem: MixtureProblem,
        batch_size: int,
        replicates: int,
        key: tuple[int, int],
        threads: int,
    ) -> MixtureSimulator: ...
    def advance(self, steps: int, record_every: int) -> MixtureRecordChunk: ...
    def diverged(self) -> npt.NDArray[np.bool_]: ...
    @property
    def steps_done(self) -> int: ...

def mixture_estimate_gradient(
    problem: MixtureProblem,
    batch_size: int,
    replicates: int,
    key: tuple[int, int],
    threads: int,
) -> tuple[_F64, npt.NDArray[np.bool_], _I64]: ...

# the vectorised generator (rust/random/simd_rng.rs): test and benchmark hooks
def lane_normals(n: int, key: tuple[int, int], index: int) -> _F64: ...
def lane_normal_floor(n: int, key: tuple[int, int], threads: int) -> float: ...
def lane_normal_tail_counts(
    n: int, key: tuple[int, int], thresholds: Sequence[float], threads: int
) -> tuple[list[int], float]: ...
