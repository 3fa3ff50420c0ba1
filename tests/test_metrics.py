"""Metrics against values worked out by hand, and streaming sample-level scoring."""
from __future__ import annotations

import numpy as np
import pytest

from streamhar.evaluation.evaluate import sample_predictions
from streamhar.evaluation.metrics import confusion, scores
from streamhar.windowing.sliding import WindowSet, window_starts


def test_scores_match_a_hand_computed_example():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    s = scores(confusion(y_true, y_pred, 4), ["a", "b", "c", "absent"])
    # class a: P 1, R 2/3, F1 0.8; class b: P 1/2, R 1/2, F1 0.5; class c: P 1/2, R 1, F1 2/3.
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)       # absent class left out
    assert s["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert s["confusion"][0] == [2, 1, 0, 0]


def test_window_starts_and_streaming_sample_scoring():
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert window_starts(3, 4, 1).tolist() == []
    ws = WindowSet(np.zeros((3, 1, 4), np.float32), np.zeros(3, np.int64), np.zeros(3, np.int32),
                   np.array([3, 6, 9]), ["r"], ["s"])
    [per_sample] = sample_predictions(ws, np.array([5, 6, 7]), [11], stride=3)
    assert per_sample.tolist() == [5, 5, 5, 5, 6, 6, 6, 7, 7, 7, -1]
