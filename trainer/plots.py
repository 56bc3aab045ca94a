"""The two pictures a training job leaves beside metrics.json: confusion matrices and history.

Written through `tf.io.gfile`, so `gs://` and any other TensorFlow file system work.
"""

from __future__ import annotations

import io

import numpy as np

from pipeline import features


def _save_figure(figure, path: str) -> None:
    import tensorflow as tf

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


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
