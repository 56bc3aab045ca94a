"""Metrics users can trust on imbalanced data: macro-F1, per-class P/R/F1, confusion matrix.

Shared by the trainer (validation, `metrics.json`) and the scoring job (`summary.json`), which
sums a confusion matrix across workers. A model that always says NoEntailment scores 84%
accuracy on the real set, so every report carries the majority-class baseline of the same
split beside the model's figures.
"""

from __future__ import annotations

import numpy as np

from pipeline import features


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """[true, predicted] counts over every label of `features.LABELS`."""
    classes = len(features.LABELS)
    flat = np.asarray(labels, np.int64) * classes + np.asarray(predictions, np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def _scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Per-class precision, recall and F1 (0 where undefined), accuracy and macro-F1.

    Written out rather than taken from scikit-learn: these are a few sums over the confusion
    matrix, and with scikit-learn installed, Keras imports it at every `import tensorflow`,
    which every trainer and Beam worker process would pay for.
    """
    true_positives = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    total = matrix.sum()
    accuracy = float(true_positives.sum() / total) if total else 0.0
    return precision, recall, f1, accuracy, float(f1.mean())


def classification_report(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """The per-split block of metrics.json (docs/training.md lists its keys)."""
    return report_of_matrix(confusion_matrix(labels, predictions))


def report_of_matrix(matrix: np.ndarray) -> dict:
    """`classification_report` from the [true, predicted] counts alone (the scoring job sums them)."""
    matrix = np.asarray(matrix, np.int64)
    precision, recall, f1, accuracy, macro_f1 = _scores(matrix)
    support = matrix.sum(axis=1)
    majority = np.zeros_like(matrix)  # Always the most frequent true label.
    majority[:, support.argmax()] = support
    _, _, _, majority_accuracy, majority_macro_f1 = _scores(majority)
    return {
        "examples": int(matrix.sum()),
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(features.LABELS)
        },
        "confusion_matrix": matrix.tolist(),
        "majority_baseline": {"accuracy": majority_accuracy, "macro_f1": majority_macro_f1},
    }


def format_table(split: str, report: dict) -> str:
    """A plain-text table for the console."""
    lines = [
        f"{split}: {report['examples']} examples  accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}"
        f"  (majority baseline: accuracy {report['majority_baseline']['accuracy']:.3f},"
        f" macro-F1 {report['majority_baseline']['macro_f1']:.3f})",
        f"  {'label':<15}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for name, row in report["per_class"].items():
        lines.append(f"  {name:<15}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>9}")
    lines.append("  confusion (rows true, columns predicted): " + str(report["confusion_matrix"]))
    return "\n".join(lines)
