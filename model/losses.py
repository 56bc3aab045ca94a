"""The training losses by name, for Keras (`for_training`) and over stored predictions (`mean_loss`).

`ce` is cross-entropy; `weighted-ce` is the same loss with per-class weights from the shards'
metadata.json, applied by Keras' `class_weight` during training only (as Keras' own
validation loss leaves them out); `focal` is the focal loss, which down-weights the examples
the model already gets right, one answer to a set that is 84% NoEntailment.
"""

from __future__ import annotations

import numpy as np

LOSSES = ("ce", "weighted-ce", "focal")


def focal_loss(gamma: float):
    """Sparse categorical focal loss: cross-entropy down-weighted on easy examples."""
    import keras

    def loss(labels, probabilities):
        labels = keras.ops.cast(keras.ops.reshape(labels, [-1]), "int32")
        probabilities = keras.ops.clip(probabilities, 1e-7, 1.0)
        true_probability = keras.ops.take_along_axis(probabilities, keras.ops.expand_dims(labels, -1), axis=-1)[:, 0]
        return -keras.ops.power(1.0 - true_probability, gamma) * keras.ops.log(true_probability)

    return loss


def for_training(name: str, focal_gamma: float = 2.0):
    """What `model.compile(loss=...)` takes for the loss `name`."""
    if name not in LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, not {name!r}")
    return focal_loss(focal_gamma) if name == "focal" else "sparse_categorical_crossentropy"


def class_weights(name: str, metadata: dict, labels) -> dict[int, float] | None:
    """Keras' `class_weight` for the loss `name`: the shards' balanced weights for `weighted-ce`."""
    if name != "weighted-ce":
        return None
    return {index: metadata["class_weights"][label] for index, label in enumerate(labels)}


def mean_loss(labels: np.ndarray, probabilities: np.ndarray, name: str, focal_gamma: float = 2.0) -> float:
    """Mean of the training loss over a split's predictions (numpy), as Keras computes it.

    Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras' cross-entropy does. Class weights
    apply to training only, as with Keras' own validation loss.
    """
    if not len(labels):
        return 0.0
    chosen = np.clip(probabilities[np.arange(len(labels)), np.asarray(labels, np.int64)], 1e-7, 1 - 1e-7)
    losses = -np.log(chosen)
    if name == "focal":
        losses = losses * (1 - chosen) ** focal_gamma
    return float(losses.mean())
