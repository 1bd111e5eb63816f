"""Task sequences 1 → 2 → … → K (docs: theory-sequences): continual post-training of a
K-component mixture stage by stage, replay schedules and buffers, and the forgetting metrics
of the continual-learning field (accuracy matrix, average accuracy, BWT, forgetting)."""

from .metrics import (
    average_accuracy,
    backward_transfer,
    check_accuracy_matrix,
    forgetting,
    mean_forgetting,
)

__all__ = [
    "average_accuracy",
    "backward_transfer",
    "check_accuracy_matrix",
    "forgetting",
    "mean_forgetting",
]
