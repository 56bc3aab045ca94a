"""Metrics on imbalanced labels, checked against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import metrics


def test_report_on_a_hand_counted_example():
    # true:      C  C  I  N  N  N  N  N
    # predicted: C  N  I  N  N  N  I  C
    labels = np.array([0, 0, 1, 2, 2, 2, 2, 2])
    predictions = np.array([0, 2, 1, 2, 2, 2, 1, 0])
    report = metrics.classification_report(labels, predictions)
    assert report["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [1, 1, 3]]
    assert report["accuracy"] == 5 / 8
    contradictory, implies, no_entailment = (report["per_class"][k] for k in ("Contradictory", "Implies", "NoEntailment"))
    assert (contradictory["precision"], contradictory["recall"], contradictory["f1"]) == (0.5, 0.5, 0.5)
    assert (implies["precision"], implies["recall"]) == (0.5, 1.0) and implies["f1"] == pytest.approx(2 / 3)
    assert (no_entailment["precision"], no_entailment["recall"]) == (0.75, 0.6) and no_entailment["f1"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert [row["support"] for row in report["per_class"].values()] == [2, 1, 5]
    # Always NoEntailment: accuracy 5/8; F1 0 for the classes it never predicts.
    assert report["majority_baseline"]["accuracy"] == 5 / 8
    assert report["majority_baseline"]["macro_f1"] == pytest.approx((2 * 0.625 * 1.0 / 1.625) / 3)


def test_a_class_never_seen_nor_predicted_scores_zero_and_an_empty_split_is_zero():
    report = metrics.classification_report(np.array([2, 2]), np.array([2, 2]))
    assert report["per_class"]["Implies"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == pytest.approx(1 / 3)
    empty = metrics.classification_report(np.zeros(0, int), np.zeros(0, int))
    assert empty["examples"] == 0 and empty["accuracy"] == 0.0 and empty["macro_f1"] == 0.0


def test_bootstrap_intervals_match_resampling_the_examples_and_narrow_with_more_of_them():
    """The intervals come from the confusion matrix alone; they must agree with resampling the
    examples themselves, within each true class, and hold the figure they bound."""
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], [12, 11, 117])
    predictions = np.where(rng.random(len(labels)) < 0.75, labels, rng.integers(0, 3, len(labels)))
    report = metrics.classification_report(labels, predictions)
    intervals = report["intervals"]
    assert intervals == metrics.classification_report(labels, predictions)["intervals"]  # Seeded.
    assert intervals["macro_f1"][0] <= report["macro_f1"] <= intervals["macro_f1"][1]
    for name in ("Contradictory", "Implies", "NoEntailment"):
        low, high = intervals["recall"][name]
        assert low <= report["per_class"][name]["recall"] <= high

    direct = []
    for _ in range(2000):
        rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), (labels == c).sum()) for c in range(3)])
        direct.append(metrics.classification_report(labels[rows], predictions[rows])["macro_f1"])
    expected = np.percentile(direct, [2.5, 97.5])
    np.testing.assert_allclose(intervals["macro_f1"], expected, atol=0.02)

    ten_times = metrics.report_of_matrix(np.array(report["confusion_matrix"]) * 10)["intervals"]["macro_f1"]
    assert ten_times[1] - ten_times[0] < (intervals["macro_f1"][1] - intervals["macro_f1"][0]) / 2


def test_a_perfect_classifier_has_no_spread():
    labels = np.array([0, 1, 2, 2, 2])
    intervals = metrics.classification_report(labels, labels)["intervals"]
    assert intervals["macro_f1"] == [1.0, 1.0] and intervals["recall"]["Implies"] == [1.0, 1.0]
