"""The training losses by name, for Keras (`for_training`) and over stored predictions (`mean_loss`).

`ce` is cross-entropy; `weighted-ce` is the same loss with per-class weights from the shards'
metadata.json (balanced: n / (classes · n_c)); `focal` is the focal loss, which down-weights the
examples the model already gets right, one answer to a set that is 84% NoEntailment.

The validation loss (`mean_loss`) leaves the class weights out, as Keras' own does for
`class_weight`. A class-balanced validation loss (each class's mean cross-entropy, averaged)
was tried as `--select-by val_loss`'s measure: it is lowest within the first few epochs, before
the head has learnt the majority class well, and the epochs it kept scored lower on the folds'
test pairs than those the plain mean kept.

The class weights are inside the loss rather than Keras' `fit(class_weight=...)`, which maps
the dataset to add sample weights and so fails on the distributed dataset that
MultiWorkerMirroredStrategy training reads (`DistributedDatasetsFromFunction` has no `map`).
Per example the two are the same: the example's cross-entropy times its class's weight,
averaged over the batch.
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


def weighted_cross_entropy(weights: list[float]):
    """Sparse categorical cross-entropy with each example weighted by its label's weight."""
    import keras

    def loss(labels, probabilities):
        labels = keras.ops.cast(keras.ops.reshape(labels, [-1]), "int32")
        entropy = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        return entropy * keras.ops.take(keras.ops.convert_to_tensor(weights, "float32"), labels)

    return loss


def for_training(name: str, focal_gamma: float = 2.0, class_weights: dict[str, float] | None = None, labels=()):
    """What `model.compile(loss=...)` takes for the loss `name`; `weighted-ce` needs the
    balanced `class_weights` by label name (as metadata.json holds them) and the `labels` in
    index order."""
    if name not in LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, not {name!r}")
    if name == "focal":
        return focal_loss(focal_gamma)
    if name == "weighted-ce":
        return weighted_cross_entropy([class_weights[label] for label in labels])
    return "sparse_categorical_crossentropy"


def mean_loss(labels: np.ndarray, probabilities: np.ndarray, name: str, focal_gamma: float = 2.0) -> float:
    """Mean of the training loss over a split's predictions (numpy), as Keras computes it,
    without class weights (the module docstring says why).

    Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras' cross-entropy does.
    """
    if not len(labels):
        return 0.0
    chosen = np.clip(probabilities[np.arange(len(labels)), np.asarray(labels, np.int64)], 1e-7, 1 - 1e-7)
    losses = -np.log(chosen)
    if name == "focal":
        losses = losses * (1 - chosen) ** focal_gamma
    return float(losses.mean())
