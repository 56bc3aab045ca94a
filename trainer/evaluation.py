"""Metrics users can trust on imbalanced data: macro-F1, per-class P/R/F1, confusion matrix.

A model that always says NoEntailment scores 84% accuracy on the real set, so every report
carries the majority-class baseline of the same split beside the model's figures.
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
    matrix, and with scikit-learn installed, Keras imports it at every `import tensorflow`
    (0.8 s in each trainer and Beam worker process, measured in `benchmarks/startup.py`).
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
    """The per-split block of metrics.json (see the README for the layout)."""
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


def loss_value(labels: np.ndarray, probabilities: np.ndarray, loss: str, focal_gamma: float = 2.0) -> float:
    """Mean of the training loss over a split: cross-entropy (`ce`, `weighted-ce`) or focal.

    Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras' cross-entropy does. Class weights
    apply to training only, as with Keras' own validation loss.
    """
    if not len(labels):
        return 0.0
    chosen = np.clip(probabilities[np.arange(len(labels)), np.asarray(labels, np.int64)], 1e-7, 1 - 1e-7)
    losses = -np.log(chosen)
    if loss == "focal":
        losses = losses * (1 - chosen) ** focal_gamma
    return float(losses.mean())


def _save_figure(figure, path: str) -> None:
    """PNG through tf.io.gfile, so `gs://` and any other TensorFlow file system work."""
    import io

    import tensorflow as tf

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


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


def plot_confusion_matrices(reports: dict[str, dict], path: str) -> None:
    """One panel per split; counts, shaded by row share so rare classes stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(reports), figsize=(5 * len(reports), 4.4), squeeze=False)
    for axes, (split, report) in zip(panels[0], reports.items()):
        matrix = np.array(report["confusion_matrix"], dtype=float)
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (row, column), count in np.ndenumerate(matrix):
            colour = "black" if shares[row, column] < 0.6 else "white"
            axes.text(column, row, f"{int(count)}", ha="center", va="center", color=colour)
        axes.set_xticks(range(len(features.LABELS)), features.LABELS, rotation=20)
        axes.set_yticks(range(len(features.LABELS)), features.LABELS)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(f"{split}: macro-F1 {report['macro_f1']:.3f} (majority {report['majority_baseline']['macro_f1']:.3f})")
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


def plot_history(history: dict, path: str) -> None:
    """Loss (train and val) and validation macro-F1 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, f1_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history.get("loss", [])) + 1)
    for key in ("loss", "val_loss"):
        if key in history:
            loss_axes.plot(epochs, history[key], marker="o", label=key)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_title("loss")
    loss_axes.legend()
    if "val_macro_f1" in history:
        f1_axes.plot(epochs, history["val_macro_f1"], marker="o", color="tab:green", label="val macro-F1")
    f1_axes.set_xlabel("epoch")
    f1_axes.set_ylim(0, 1)
    f1_axes.set_title("validation macro-F1")
    f1_axes.legend()
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)
