"""The continual-learning summaries of an accuracy matrix (docs: theory-sequences): average
accuracy, backward transfer and forgetting, as pure functions of the matrix.

An accuracy-like matrix ``A`` has one row per stage and one column per task, K × K:
``A[i, j]`` is the performance on task j after stage i (0-based), defined for j ≤ i and NaN
above the diagonal (task j has not been seen yet). "Accuracy-like" means larger is better:
pass a loss or an error negated. With K the number of stages (the last row is i = K − 1):

* average accuracy  ``ACC = (1/K) Σ_{j<K} A[K−1, j]``;
* backward transfer ``BWT = (1/(K−1)) Σ_{j<K−1} (A[K−1, j] − A[j, j])``;
* forgetting of an old task ``F_j = max_{i<K−1} A[i, j] − A[K−1, j]`` (the max over the stages
  i = j … K − 2 where task j was defined), and its mean over the K − 1 old tasks.

BWT and the mean forgetting average over the K − 1 old tasks (every task but the last),
not K − 2: the last task has no "after" and is the only one left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "average_accuracy",
    "backward_transfer",
    "check_accuracy_matrix",
    "forgetting",
    "mean_forgetting",
]


def check_accuracy_matrix(matrix: Any, name: str = "matrix") -> np.ndarray:
    """``matrix`` as a float (K, K) array, K ≥ 2, finite on and below the diagonal
    (ValueError naming ``name`` otherwise); entries above the diagonal are ignored."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"{name} must be a square (K, K) array with K >= 2, got shape {a.shape}")
    lower = a[np.tril_indices(a.shape[0])]
    if not np.all(np.isfinite(lower)):
        raise ValueError(
            f"{name} must be finite on and below the diagonal (task j after stage i >= j)"
        )
    return a


def average_accuracy(matrix: Any) -> float:
    """ACC = (1/K) Σ_j A[K−1, j]: the mean over all K tasks after the last stage."""
    a = check_accuracy_matrix(matrix)
    return float(np.mean(a[-1]))


def backward_transfer(matrix: Any) -> float:
    """BWT = (1/(K−1)) Σ_{j<K−1} (A[K−1, j] − A[j, j]): how much the later stages changed
    each old task from its value just after it was learned (negative: forgetting). The mean
    is over the K − 1 old tasks."""
    a = check_accuracy_matrix(matrix)
    k = a.shape[0]
    return float(np.mean(a[-1, : k - 1] - np.diagonal(a)[: k - 1]))


def forgetting(matrix: Any) -> np.ndarray:
    """(K − 1,) F_j = max_{j ≤ i < K−1} A[i, j] − A[K−1, j] for each old task j < K − 1: the
    drop from the task's best value before the last stage to its value after it (≥ 0
    whenever the last value is not a new best)."""
    a = check_accuracy_matrix(matrix)
    k = a.shape[0]
    best = np.array([np.max(a[j : k - 1, j]) for j in range(k - 1)])
    return best - a[-1, : k - 1]


def mean_forgetting(matrix: Any) -> float:
    """(1/(K−1)) Σ_{j<K−1} F_j: the mean forgetting over the K − 1 old tasks."""
    return float(np.mean(forgetting(matrix)))
