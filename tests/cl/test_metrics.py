"""Continual-learning metrics against matrices worked out by hand."""

import numpy as np
import pytest

from seqjax.cl import metrics

# R[i, j]: accuracy on task j after training through task i.
R3 = np.array(
    [
        [0.90, 0.15, 0.10],
        [0.92, 0.95, 0.20],
        [0.70, 0.80, 0.875],
    ]
)
B3 = np.array([0.10, 0.12, 0.08])  # random-init accuracy per task

# By hand, T = 3:
# ACC = (0.70 + 0.80 + 0.875) / 3 = 2.375 / 3 = 0.791666...
# A_0 = 0.90; A_1 = (0.92 + 0.95) / 2 = 0.935; A_2 = ACC = 0.791666...
#   average incremental = (0.90 + 0.935 + 0.791666...) / 3 = 2.626666... / 3
#                       = 0.875555...
# BWT = ((0.70 - 0.90) + (0.80 - 0.95)) / 2 = (-0.20 - 0.15) / 2 = -0.175
# FWT = ((R[0,1] - b1) + (R[1,2] - b2)) / 2 = ((0.15 - 0.12) + (0.20 - 0.08)) / 2
#     = (0.03 + 0.12) / 2 = 0.075
# forgetting: task 0: max(0.90, 0.92) - 0.70 = 0.22
#             task 1: max(0.15, 0.95) - 0.80 = 0.15
#   F = (0.22 + 0.15) / 2 = 0.185  (not -BWT: task 0 peaked after task 1)
ACC3 = 0.7916666666666666
AIA3 = 0.8755555555555555
BWT3 = -0.175
FWT3 = 0.075
F3 = 0.185


def test_average_accuracy_by_hand():
    assert metrics.average_accuracy(R3) == pytest.approx(ACC3, abs=1e-12)


def test_average_incremental_accuracy_by_hand():
    assert metrics.average_incremental_accuracy(R3) == pytest.approx(AIA3, abs=1e-12)


def test_backward_transfer_by_hand():
    assert metrics.backward_transfer(R3) == pytest.approx(BWT3, abs=1e-12)


def test_forward_transfer_by_hand():
    assert metrics.forward_transfer(R3, B3) == pytest.approx(FWT3, abs=1e-12)


def test_forgetting_by_hand():
    assert metrics.forgetting(R3) == pytest.approx(F3, abs=1e-12)


def test_metrics_return_python_floats_and_accept_lists():
    values = [
        metrics.average_accuracy(R3.tolist()),
        metrics.average_incremental_accuracy(R3.tolist()),
        metrics.backward_transfer(R3.tolist()),
        metrics.forward_transfer(R3.tolist(), B3.tolist()),
        metrics.forgetting(R3.tolist()),
    ]
    assert all(type(v) is float for v in values)
    assert values == pytest.approx([ACC3, AIA3, BWT3, FWT3, F3], abs=1e-12)


def test_forgetting_can_be_negative():
    # Task 0 improves while training task 1: F = max(R[0,0]) - R[1,0]
    # = 0.6 - 0.7 = -0.1. (Mammoth's max over every row would give 0.)
    r = np.array([[0.6, 0.1], [0.7, 0.9]])
    assert metrics.forgetting(r) == pytest.approx(-0.1, abs=1e-12)
    assert metrics.backward_transfer(r) == pytest.approx(0.1, abs=1e-12)


def test_forgetting_max_runs_over_rows_before_the_last_only():
    # Task 0 after task 0, 1, 2: 0.5, 0.8, 0.9 -> max over rows 0..1 is 0.8,
    # F = ((0.8 - 0.9) + (max(0.2, 0.7) - 0.6)) / 2 = (-0.1 + 0.1) / 2 = 0.
    r = np.array([[0.5, 0.2, 0.1], [0.8, 0.7, 0.1], [0.9, 0.6, 0.9]])
    assert metrics.forgetting(r) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("r", [[[0.8]], np.array([[0.8]])])
def test_single_task(r):
    assert metrics.average_accuracy(r) == pytest.approx(0.8)
    assert metrics.average_incremental_accuracy(r) == pytest.approx(0.8)
    assert metrics.backward_transfer(r) == 0.0
    assert metrics.forward_transfer(r, [0.1]) == 0.0
    assert metrics.forgetting(r) == 0.0


def test_partial_matrix_uses_the_trained_block():
    # Row 2 not trained yet: the metrics are those of the 2x2 block
    # [[0.90, 0.15], [0.92, 0.95]] with b = [0.10, 0.12]:
    # ACC = (0.92 + 0.95) / 2 = 0.935; AIA = (0.90 + 0.935) / 2 = 0.9175
    # BWT = 0.92 - 0.90 = 0.02; FWT = 0.15 - 0.12 = 0.03
    # F = 0.90 - 0.92 = -0.02
    r = R3.copy()
    r[2] = np.nan
    got = metrics.summary(r, B3)
    expected = {
        "acc": 0.935,
        "avg_incremental_acc": 0.9175,
        "bwt": 0.02,
        "fwt": 0.03,
        "forgetting": -0.02,
    }
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(metrics.summary(R3[:2, :2], B3[:2]), abs=1e-12)


def test_partial_matrix_ignores_the_baseline_of_untrained_tasks():
    r = R3.copy()
    r[1:] = np.nan
    b = np.array([0.1, np.nan, np.nan])
    assert metrics.forward_transfer(r, b) == 0.0
    assert metrics.average_accuracy(r) == pytest.approx(0.90)


def test_summary_keys_and_values():
    full = metrics.summary(R3, B3)
    assert list(full) == ["acc", "avg_incremental_acc", "bwt", "fwt", "forgetting"]
    assert full == pytest.approx(
        {
            "acc": ACC3,
            "avg_incremental_acc": AIA3,
            "bwt": BWT3,
            "fwt": FWT3,
            "forgetting": F3,
        },
        abs=1e-12,
    )
    without_b = metrics.summary(R3)
    assert list(without_b) == ["acc", "avg_incremental_acc", "bwt", "forgetting"]


ALL_OF_R = [
    metrics.average_accuracy,
    metrics.average_incremental_accuracy,
    metrics.backward_transfer,
    lambda r: metrics.forward_transfer(r, np.zeros(len(r))),
    metrics.forgetting,
    metrics.summary,
]


@pytest.mark.parametrize("fn", ALL_OF_R)
@pytest.mark.parametrize(
    "r, match",
    [
        (np.zeros((2, 3)), r"R must be a square.*\(2, 3\)"),
        (np.zeros(3), r"R must be a square.*\(3,\)"),
        (np.zeros((2, 2, 2)), r"R must be a square.*\(2, 2, 2\)"),
        (np.zeros((0, 0)), r"R must hold at least one task.*\(0, 0\)"),
        (np.full((2, 2), np.nan), r"R has no trained task"),
        (
            np.array([[0.9, 0.1], [np.nan, 0.8]]),
            r"R\[1, 0\] is nan.*leading 2x2 block",
        ),
        (
            np.array([[0.9, np.nan], [0.8, 0.7]]),
            r"R\[0, 1\] is nan.*leading 2x2 block",
        ),
        (
            np.array([[0.9, 0.1, 0.1], [np.nan] * 3, [0.8, 0.7, 0.6]]),
            r"R row 2 holds accuracies but row 1 before it is all NaN",
        ),
        (np.array([[0.9, 0.1], [np.inf, 0.8]]), r"R\[1, 0\] is inf"),
        ([[0.9, 0.1], [0.8]], r"R must be a \[T, T\] array"),
    ],
)
def test_malformed_matrix_is_rejected(fn, r, match):
    with pytest.raises(ValueError, match=match):
        fn(r)


@pytest.mark.parametrize(
    "b, match",
    [
        (np.zeros(2), r"b must have shape \(3,\).*got shape \(2,\)"),
        (np.zeros((3, 1)), r"b must have shape \(3,\).*got shape \(3, 1\)"),
        (np.array([0.1, np.nan, 0.1]), r"b\[1\] is nan"),
    ],
)
def test_malformed_baseline_is_rejected(b, match):
    with pytest.raises(ValueError, match=match):
        metrics.forward_transfer(R3, b)
    with pytest.raises(ValueError, match=match):
        metrics.summary(R3, b)
