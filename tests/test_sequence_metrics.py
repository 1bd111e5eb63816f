"""The accuracy-matrix summaries against hand-computed values (issue 21)."""

import numpy as np
import pytest

from mixforget.sequences import (
    average_accuracy,
    backward_transfer,
    forgetting,
    mean_forgetting,
)

NAN = np.nan

# A[i, j]: task j after stage i
A3 = [
    [0.9, NAN, NAN],
    [0.7, 0.8, NAN],
    [0.5, 0.6, 0.95],
]
A4 = [
    [0.9, NAN, NAN, NAN],
    [0.6, 0.8, NAN, NAN],
    [0.7, 0.9, 0.85, NAN],
    [0.4, 0.6, 0.7, 0.9],
]


def test_three_tasks_by_hand():
    assert average_accuracy(A3) == pytest.approx((0.5 + 0.6 + 0.95) / 3, abs=1e-15)
    # (0.5 − 0.9) + (0.6 − 0.8) = −0.6 over the K − 1 = 2 old tasks; K − 2 = 1 would give −0.6
    assert backward_transfer(A3) == pytest.approx(-0.3, abs=1e-15)
    np.testing.assert_allclose(forgetting(A3), [0.4, 0.2], atol=1e-15)
    assert mean_forgetting(A3) == pytest.approx(0.3, abs=1e-15)


def test_four_tasks_by_hand_max_is_not_the_diagonal():
    assert average_accuracy(A4) == pytest.approx(0.65, abs=1e-15)
    assert backward_transfer(A4) == pytest.approx(-0.85 / 3, abs=1e-15)
    # task 1 peaked at stage 2 (0.9), after its own stage (0.8): F differs from −BWT's term
    np.testing.assert_allclose(forgetting(A4), [0.5, 0.3, 0.15], atol=1e-15)
    assert mean_forgetting(A4) == pytest.approx(0.95 / 3, abs=1e-15)


def test_averaging_over_k_minus_1_not_k_minus_2():
    a = np.array(A4)
    total_drop = sum(a[3, j] - a[j, j] for j in range(3))
    assert backward_transfer(a) == pytest.approx(total_drop / 3)
    assert backward_transfer(a) != pytest.approx(total_drop / 2)


def test_a_new_best_at_the_end_is_negative_forgetting():
    a = [[0.5, NAN], [0.7, 0.9]]
    np.testing.assert_allclose(forgetting(a), [-0.2], atol=1e-15)
    assert backward_transfer(a) == pytest.approx(0.2)


def test_upper_triangle_is_ignored():
    filled = np.array(A3)
    filled[np.triu_indices(3, 1)] = 123.0
    assert backward_transfer(filled) == backward_transfer(A3)
    assert mean_forgetting(filled) == mean_forgetting(A3)
    assert average_accuracy(filled) == average_accuracy(A3)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 3)), np.zeros((1, 1)), np.zeros(3), [[1.0, NAN], [NAN, 1.0]]],
)
def test_bad_matrices(bad):
    with pytest.raises(ValueError, match="matrix"):
        backward_transfer(bad)
