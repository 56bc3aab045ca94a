"""One pass of the model over a whole split, through the strategy, with every example counted once.

Keras' `evaluate` under a strategy gives loss and accuracy but not the predictions that
macro-F1 and the confusion matrix need, and `predict` drops the labels. This pass returns
both: every replica of every worker scores its part of the split in compiled steps, and
`strategy.gather` hands every worker all the labels and probabilities. So all workers
compute the same metrics (nothing differs between the chief and the others), and a
MirroredStrategy machine uses all its GPUs, not one.

Under a multi-worker strategy every worker must run the same number of steps, or the
collectives wait forever. The split is therefore padded to a whole number of global
batches with blank examples labelled -1, dealt out element by element to the input
pipelines, and the blanks are dropped after the gather.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

PADDING_LABEL = -1


def padded(dataset: tf.data.Dataset, examples: int, total: int) -> tf.data.Dataset:
    """(inputs, label, ...) examples followed by blanks (label -1) up to `total`."""
    blank = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), dataset.element_spec)
    blank = (blank[0], tf.constant(PADDING_LABEL, dataset.element_spec[1].dtype), *blank[2:])
    return dataset.concatenate(tf.data.Dataset.from_tensors(tuple(blank)).repeat(total - examples))


def distribute_padded(strategy, examples_fn, examples: int, global_batch: int):
    """(distributed dataset, steps): `examples_fn()`'s examples in whole global batches, dealt
    out element by element to the input pipelines, so every worker runs `steps` steps."""
    steps = math.ceil(max(examples, 1) / global_batch)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        dataset = padded(examples_fn(), examples, steps * global_batch)
        dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True).prefetch(2)

    return strategy.distribute_datasets_from_function(dataset_fn), steps


class SplitPredictor:
    """`predict(model)` → (labels, probabilities [N, 3]) over the split, on every worker alike.

    `examples_fn()` returns the split's unbatched (inputs, label) examples: the shards'
    (`reader.ShardSource.examples`), or the embedding cache's for the head alone.
    """

    def __init__(self, strategy, examples_fn, examples: int, global_batch: int):
        self._strategy = strategy
        self._dataset, self._steps = distribute_padded(strategy, examples_fn, examples, global_batch)
        self._step = None

    def predict(self, model) -> tuple[np.ndarray, np.ndarray]:
        if self._step is None:

            @tf.function
            def step(iterator):
                inputs, labels = next(iterator)
                probabilities = self._strategy.run(lambda batch: tf.cast(model(batch, training=False), tf.float32),
                                                   args=(inputs,))
                return self._strategy.gather(labels, axis=0), self._strategy.gather(probabilities, axis=0)

            self._step = step
        iterator = iter(self._dataset)
        labels, probabilities = [], []
        for _ in range(self._steps):
            batch_labels, batch_probabilities = self._step(iterator)
            labels.append(batch_labels.numpy())
            probabilities.append(batch_probabilities.numpy())
        labels, probabilities = np.concatenate(labels), np.concatenate(probabilities)
        keep = labels != PADDING_LABEL
        return labels[keep], probabilities[keep]
