"""Task sequences 0 → 1 → … → K−1 (docs: theory-sequences): continual post-training of a
K-component mixture stage by stage (:func:`sequence`, :class:`Curriculum`), replay schedules
and buffers (:mod:`.replay`), the per-task accuracy matrices (:class:`SequenceResult`) and
the forgetting metrics of the continual-learning field (:mod:`.metrics`)."""

from .config import SequenceConfig, load_sequence_config, parse_sequence_config
from .curriculum import Curriculum, make_curriculum
from .metrics import (
    average_accuracy,
    backward_transfer,
    check_accuracy_matrix,
    forgetting,
    mean_forgetting,
)
from .replay import SCHEDULES, balanced_buffer, replay_schedule, reservoir_buffer
from .result import MATRIX_KINDS, SequenceResult, StageRecord
from .run import sequence

__all__ = [
    "MATRIX_KINDS",
    "SCHEDULES",
    "Curriculum",
    "SequenceConfig",
    "SequenceResult",
    "StageRecord",
    "average_accuracy",
    "backward_transfer",
    "balanced_buffer",
    "check_accuracy_matrix",
    "forgetting",
    "load_sequence_config",
    "make_curriculum",
    "mean_forgetting",
    "parse_sequence_config",
    "replay_schedule",
    "reservoir_buffer",
    "sequence",
]
