"""The embedding cache: the head on stored encoder outputs is the model on raw inputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from model import export, multimodal
from model.config import ModelConfig
from pipeline import features
from trainer import embedding_cache, reader
from tests.conftest import IMAGE_SIZE, SEQ_LENGTH

SHAPE = features.Shape(IMAGE_SIZE, SEQ_LENGTH)


def model_config(tiny_bert, **changes):
    settings = dict(text_encoder=tiny_bert, image_encoder="tiny", image_weights="none", projection_dims=16,
                    image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH)
    return ModelConfig(**{**settings, **changes})


def build(shards, config, root, capsys=None):
    import keras

    out, metadata = shards
    keras.utils.set_random_seed(0)
    model = multimodal.create_model(config)
    cache = embedding_cache.EmbeddingCache(tf.distribute.get_strategy(), multimodal.encoders_of(model), str(out),
                                           metadata, config, str(root), global_batch=8)
    cache.ensure()
    return model, cache


def raw_examples(out, split, shape=SHAPE):
    """The split's stored examples as on disk: ids, texts, JPEG bytes, and the parsed model inputs."""
    files = features.shard_files(str(out), split)
    for serialized in tf.data.TFRecordDataset(files, compression_type=features.COMPRESSION):
        raw = tf.io.parse_single_example(serialized, features.example_spec(shape))
        inputs, label = reader.to_model_inputs(features.parse(serialized, shape), shape)
        yield raw, {key: value[tf.newaxis] for key, value in inputs.items()}, int(label)


@pytest.mark.parametrize("fusion, pairing, head", [("concat", "joint", "projection"), ("cross-attention", "joint", "projection"),
                                                   ("concat", "separate", "projection"), ("concat", "separate", "linear")])
def test_head_on_the_cache_equals_the_model_and_the_export(request, tiny_bert, tmp_path, fusion, pairing, head):
    """For both text pairings: with `separate` both texts go through the encoder in one pass."""
    shards = request.getfixturevalue("separate_shards" if pairing == "separate" else "shards")
    out, metadata = shards
    config = model_config(tiny_bert, fusion=fusion, text_pairing=pairing, head=head)
    model, cache = build(shards, config, tmp_path / "cache")
    head = multimodal.head_of(model)
    cached = {}
    for stored, label, ids in cache.examples("test", keep_ids=True).batch(64):
        probabilities = head(stored, training=False).numpy()
        for row, pair in enumerate(ids.numpy()):
            cached[tuple(pair)] = (int(label[row]), probabilities[row])
    assert len(cached) == metadata["counts"]["test"]["total"]
    serve = export.load(export.export(model, str(tmp_path / "serving"), tiny_bert, config.shape))
    gaps, served_gaps = [], []
    for raw, inputs, label in raw_examples(out, "test", config.shape):
        key = tuple(int(raw[k].numpy()) for k in features.ID_KEYS)
        cached_label, cached_probabilities = cached[key]
        assert cached_label == label
        gaps.append(np.abs(model(inputs, training=False).numpy()[0] - cached_probabilities).max())
        # The serving signature on the stored texts and JPEG bytes: the same numbers again.
        served = serve(**{k: raw[k][tf.newaxis] for k in features.RAW_KEYS})["probabilities"].numpy()[0]
        served_gaps.append(np.abs(served - cached_probabilities).max())
    assert max(gaps) <= 1e-5 and max(served_gaps) <= 1e-5, (max(gaps), max(served_gaps))


def test_cached_examples_stay_aligned_through_shuffle_and_batching(shards, tiny_bert, tmp_path):
    out, _ = shards
    config = model_config(tiny_bert)
    model, cache = build(shards, config, tmp_path / "cache")
    truth = {}
    for inputs, label in reader.make_dataset(str(out), "train", SHAPE, 64, training=False, keep_ids=True):
        ids = np.stack([tf.strings.to_number(inputs.pop(k), tf.int64).numpy() for k in features.ID_KEYS], axis=1)
        encoded = multimodal.encoders_of(model)(inputs, training=False)
        for row, pair in enumerate(ids):
            truth[tuple(pair)] = (int(label[row]), {k: v.numpy()[row] for k, v in encoded.items()})
    seen = []
    for stored, labels, ids in cache.dataset("train", 8, training=True, seed=3, keep_ids=True):
        for row, pair in enumerate(ids.numpy()):
            label, encoded = truth[tuple(pair)]
            assert int(labels[row]) == label
            for key, value in encoded.items():
                assert np.abs(stored[key].numpy()[row] - value).max() <= 1e-6, key
            seen.append(tuple(pair))
    assert len(seen) == len(set(seen)) == len(truth) // 8 * 8  # Training drops only the last partial batch.
    order = [tuple(p) for _, _, ids in cache.dataset("train", 8, training=True, seed=3, keep_ids=True) for p in ids.numpy()]
    assert order == seen and order != sorted(order)  # Shuffled, and reproducibly so.


def test_the_key_reuses_rebuilds_and_never_reads_a_partial_cache(shards, tiny_bert, tmp_path, capsys):
    root = tmp_path / "cache"
    config = model_config(tiny_bert)
    _, cache = build(shards, config, root)
    assert "running the frozen encoders" in capsys.readouterr().out
    assert sorted(os.listdir(cache.folder))[0] == embedding_cache.COMPLETE_FILE
    _, again = build(shards, config, root)
    assert again.key == cache.key and "reusing" in capsys.readouterr().out
    # Head settings do not key the cache; encoder settings and weights do.
    assert build(shards, model_config(tiny_bert, projection_dims=8), root)[1].key == cache.key
    capsys.readouterr()
    _, mean = build(shards, model_config(tiny_bert, text_pooling="mean"), root)
    assert mean.key != cache.key and "running the frozen encoders" in capsys.readouterr().out
    assert os.listdir(root) == [mean.key]  # The stale cache is gone.
    model = multimodal.create_model(config)
    encoder = multimodal.encoders_of(model).get_layer("text_encoder")
    encoder.weights[0].assign(encoder.weights[0] + 1.0)
    assert embedding_cache.cache_key(shards[1], config, multimodal.encoders_of(model)) != cache.key
    # Killed before complete.json: the folder is rebuilt, not read.
    os.remove(os.path.join(mean.folder, embedding_cache.COMPLETE_FILE))
    with open(os.path.join(mean.folder, "train-00000-of-00002.tfrecord"), "wb") as handle:
        handle.write(b"half a record")
    build(shards, model_config(tiny_bert, text_pooling="mean"), root)
    assert "running the frozen encoders" in capsys.readouterr().out
    assert json.loads(open(os.path.join(mean.folder, embedding_cache.COMPLETE_FILE)).read())["key"] == mean.key


def test_auto_caches_only_frozen_encoders(tiny_bert, capsys):
    frozen = model_config(tiny_bert)
    assert embedding_cache.enabled("auto", frozen) and embedding_cache.enabled("on", frozen)
    assert not embedding_cache.enabled("off", frozen)
    tuned = model_config(tiny_bert, train_text_encoder=True)
    assert not embedding_cache.enabled("auto", tuned)
    assert "embedding cache: off (--train-text-encoder" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--embedding-cache on needs frozen encoders"):
        embedding_cache.enabled("on", tuned)
    # A trainable encoder the mode does not use does not matter.
    assert embedding_cache.enabled("auto", model_config(tiny_bert, mode="text", train_image_encoder=True))
