"""Metrics users can trust on imbalanced data: macro-F1, per-class P/R/F1, confusion matrix.

Shared by the trainer (validation, `metrics.json`) and the scoring job (`summary.json`), which
sums a confusion matrix across workers. A model that always says NoEntailment scores 84%
accuracy on the real set, so every report carries the majority-class baseline of the same
split beside the model's figures.
"""

from __future__ import annotations

import numpy as np

from pipeline import features

BOOTSTRAP_RESAMPLES = 2000


def class_weights(train_counts: dict[int, int]) -> dict[str, float]:
    """n / (classes · n_c) per label (scikit-learn's 'balanced'); 0 for a label absent from train."""
    total = sum(train_counts.values())
    return {
        name: (total / (len(features.LABELS) * train_counts[index]) if train_counts.get(index) else 0.0)
        for index, name in enumerate(features.LABELS)
    }


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """[true, predicted] counts over every label of `features.LABELS`."""
    classes = len(features.LABELS)
    flat = np.asarray(labels, np.int64) * classes + np.asarray(predictions, np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def _scores(matrix: np.ndarray):
    """Per-class precision, recall and F1 (0 where undefined), accuracy and macro-F1 of one
    confusion matrix [K, K], or of a stack of them [..., K, K] (then each is an array).

    Written out rather than taken from scikit-learn: these are a few sums over the confusion
    matrix, and with scikit-learn installed, Keras imports it at every `import tensorflow`,
    which every trainer and Beam worker process would pay for.
    """
    true_positives = np.diagonal(matrix, axis1=-2, axis2=-1).astype(float)
    support, predicted = matrix.sum(axis=-1), matrix.sum(axis=-2)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    total = support.sum(axis=-1)
    accuracy = np.divide(true_positives.sum(axis=-1), total, out=np.zeros_like(total, float), where=total > 0)
    return precision, recall, f1, accuracy, f1.mean(axis=-1)


def bootstrap_intervals(matrix: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                        seed: int = 0) -> dict:
    """Percentile intervals of accuracy, macro-F1 and each class's recall over stratified
    bootstrap resamples of a split's examples.

    Each resample draws, within every true class, as many examples as the class has, with
    replacement; so a resample's row of the confusion matrix is a multinomial draw from that
    row's shares, and the whole bootstrap needs only the matrix (the scoring job's summed one
    too). Stratified, because the classes' sizes are fixed by the split, not by chance. The
    seed is fixed: the same predictions give the same interval.
    """
    matrix = np.asarray(matrix, np.int64)
    rng = np.random.default_rng(seed)
    samples = np.zeros((resamples,) + matrix.shape, np.int64)
    for row, count in enumerate(matrix.sum(axis=1)):
        if count:
            samples[:, row, :] = rng.multinomial(count, matrix[row] / count, size=resamples)
    _, recall, _, accuracy, macro_f1 = _scores(samples)
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    interval = lambda values: [round(float(bound), 4) for bound in np.percentile(values, tails)]  # noqa: E731
    return {"level": level, "resamples": resamples, "accuracy": interval(accuracy), "macro_f1": interval(macro_f1),
            "recall": {name: interval(recall[:, index]) for index, name in enumerate(features.LABELS)}}


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
        "accuracy": float(accuracy),
        "macro_f1": float(macro_f1),
        "intervals": bootstrap_intervals(matrix),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(features.LABELS)
        },
        "confusion_matrix": matrix.tolist(),
        "majority_baseline": {"accuracy": float(majority_accuracy), "macro_f1": float(majority_macro_f1)},
    }


def with_interval(value: float, interval: list[float] | None) -> str:
    """`0.943 [0.901, 0.975]`: a figure and its interval, as the tables print them."""
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def format_table(split: str, report: dict) -> str:
    """A plain-text table for the console; intervals are 95% stratified bootstrap intervals."""
    intervals = report.get("intervals", {})
    lines = [
        f"{split}: {report['examples']} examples  accuracy {with_interval(report['accuracy'], intervals.get('accuracy'))}"
        f"  macro-F1 {with_interval(report['macro_f1'], intervals.get('macro_f1'))}"
        f"  (majority baseline: accuracy {report['majority_baseline']['accuracy']:.3f},"
        f" macro-F1 {report['majority_baseline']['macro_f1']:.3f}; [95% bootstrap intervals])",
        f"  {'label':<15}{'precision':>10}{'recall [95% interval]':>29}{'f1':>8}{'support':>9}",
    ]
    for name, row in report["per_class"].items():
        recall = with_interval(row["recall"], intervals.get("recall", {}).get(name))
        lines.append(f"  {name:<15}{row['precision']:>10.3f}{recall:>29}{row['f1']:>8.3f}{row['support']:>9}")
    lines.append("  confusion (rows true, columns predicted): " + str(report["confusion_matrix"]))
    return "\n".join(lines)
