"""Run as a script (logical devices must be set before TensorFlow starts): trains the same model
for two steps on one CPU and under MirroredStrategy over two logical CPUs, same global batch,
the way the trainer prepares it, then scores the test split through each strategy and builds
the embedding cache through each; prints the largest weight, probability and cached-output
differences as JSON."""

import json
import sys
import tempfile

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from model import multimodal  # noqa: E402
from model.config import ModelConfig  # noqa: E402
from pipeline import features  # noqa: E402
from trainer import distribution, embedding_cache, reader, split_eval  # noqa: E402

shards, tiny_bert, image_size, seq_length = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = ModelConfig(text_encoder=tiny_bert, image_encoder="tiny", image_weights="none", projection_dims=16,
                                dropout_rate=0.0, image_size=image_size, seq_length=seq_length)
shape = features.Shape(image_size, seq_length)
data = reader.make_dataset(shards, "train", shape, 8, training=False).take(2)


def train(strategy, initial_weights=None):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = multimodal.create_model(config)
        if initial_weights is not None:
            model.set_weights(initial_weights)
        start = model.get_weights()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    distribution.prepare_for_fit(model, strategy, data.element_spec)
    model.fit(data, epochs=1, verbose=0)
    examples = features.read_metadata(shards)["counts"]["test"]["total"]
    scored = split_eval.SplitPredictor(strategy, lambda: reader.ShardSource(shards, shape).examples("test"), examples, 4).predict(model)
    with tempfile.TemporaryDirectory() as root:
        cache = embedding_cache.EmbeddingCache(strategy, multimodal.encoders_of(model), shards,
                                               features.read_metadata(shards), config, root, 4)
        cache.ensure()
        cached = {tuple(ids.numpy()): outputs for outputs, _, ids in cache.examples("train", keep_ids=True)}
    return start, model.get_weights(), strategy.num_replicas_in_sync, scored, cached


start, single, replicas_single, (labels_single, scores_single), cached_single = train(tf.distribute.get_strategy())
_, mirrored, replicas, (labels, scores), cached = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), start)
print(json.dumps({
    "replicas": [replicas_single, replicas],
    "max_update": max(float(abs(a - b).max()) for a, b in zip(start, single)),
    "max_difference": max(float(abs(a - b).max()) for a, b in zip(single, mirrored)),
    "scored": [len(labels_single), len(labels)],
    "same_labels": labels_single.tolist() == labels.tolist(),
    "max_score_difference": float(abs(scores_single - scores).max()),
    "cached": [len(cached_single), len(cached)],
    "same_cached_pairs": sorted(cached_single) == sorted(cached),
    "max_cached_difference": max(float(abs(cached_single[key][name] - cached[key][name]).numpy().max())
                                 for key in cached_single for name in cached_single[key]),
}))
