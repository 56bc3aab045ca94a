"""Metrics users can trust on imbalanced data: macro-F1, per-class P/R/F1, confusion matrix.

A model that always says NoEntailment scores 84% accuracy on the real set, so every report
carries the majority-class baseline of the same split beside the model's figures.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as sk

from pipeline import features


def classification_report(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """The per-split block of metrics.json (see the README for the layout)."""
    classes = list(range(len(features.LABELS)))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    majority = np.full_like(labels, np.bincount(labels, minlength=len(classes)).argmax()) if len(labels) else labels
    return {
        "examples": int(len(labels)),
        "accuracy": float(sk.accuracy_score(labels, predictions)) if len(labels) else 0.0,
        "macro_f1": float(sk.f1_score(labels, predictions, labels=classes, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(features.LABELS)
        },
        "confusion_matrix": sk.confusion_matrix(labels, predictions, labels=classes).tolist(),
        "majority_baseline": {
            "accuracy": float(sk.accuracy_score(labels, majority)) if len(labels) else 0.0,
            "macro_f1": float(sk.f1_score(labels, majority, labels=classes, average="macro", zero_division=0)),
        },
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
    figure.savefig(path, dpi=100)
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
    figure.savefig(path, dpi=100)
    plt.close(figure)
