"""The Keras 3 model around a TF Hub-format encoder: it builds, trains and fine-tunes for real."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model import encoders, multimodal
from model.config import ModelConfig
from pipeline import features
from trainer import reader
from tests.conftest import IMAGE_SIZE, SEQ_LENGTH


def config(tiny_bert, **changes):
    return ModelConfig(
        text_encoder=tiny_bert, image_encoder="tiny", image_weights="none",
        projection_dims=16, image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH, **changes,
    )


def encoder_weights(model):
    return [v.numpy().copy() for v in multimodal.encoders_of(model).get_layer("text_encoder").weights]


@pytest.mark.parametrize("fine_tune", [False, True])
def test_text_encoder_weights_change_only_when_fine_tuned(tiny_bert, shards, fine_tune):
    out, _ = shards
    model = multimodal.create_model(config(tiny_bert, train_text_encoder=fine_tune))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = encoder_weights(model)
    dataset = reader.make_dataset(str(out), "train", features.Shape(IMAGE_SIZE, SEQ_LENGTH), 8, training=True, seed=0)
    model.fit(dataset.take(2), epochs=1, verbose=0)
    after = encoder_weights(model)
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    if fine_tune:
        assert sum(changed) >= len(changed) - 1  # Every weight moves (allowing one untouched, e.g. an unused embedding row table).
    else:
        assert not any(changed)
    trainable_names = {w.path for w in model.trainable_weights}
    encoder_names = {w.path for w in multimodal.encoders_of(model).get_layer("text_encoder").weights}
    assert bool(trainable_names & encoder_names) == fine_tune


def test_encoder_vocabulary_fingerprint_matches_the_shards(tiny_bert, shards):
    _, metadata = shards
    assert encoders.vocab_fingerprint_of_encoder(tiny_bert) == metadata["vocab_fingerprint"]


def test_second_image_really_reaches_the_model(tiny_bert, shards):
    """Feeding image_1 twice must change the output (the Keras 3 port's bug)."""
    out, _ = shards
    model = multimodal.create_model(config(tiny_bert))
    inputs, _ = next(iter(reader.make_dataset(str(out), "train", features.Shape(IMAGE_SIZE, SEQ_LENGTH), 8, training=False)))
    swapped = dict(inputs, image_2=inputs["image_1"])
    assert np.abs(model(inputs).numpy() - model(swapped).numpy()).max() > 1e-6


def batch(shards, size=8):
    out, _ = shards
    return next(iter(reader.make_dataset(str(out), "train", features.Shape(IMAGE_SIZE, SEQ_LENGTH), size, training=False)))


@pytest.mark.parametrize("mode, ignored", [("text", ("image_1", "image_2")), ("image", ("input_word_ids",))])
def test_single_modality_ablations_ignore_the_other_modality(tiny_bert, shards, mode, ignored):
    inputs, _ = batch(shards)
    model = multimodal.create_model(config(tiny_bert, mode=mode))
    changed = dict(inputs, **{key: tf.reverse(inputs[key], [0]) for key in ignored})
    np.testing.assert_allclose(model(inputs).numpy(), model(changed).numpy(), atol=1e-6)


def test_cross_attention_fusion_keeps_the_two_images_apart(tiny_bert, shards):
    inputs, labels = batch(shards)
    model = multimodal.create_model(config(tiny_bert, fusion="cross-attention"))
    swapped = dict(inputs, image_1=inputs["image_2"], image_2=inputs["image_1"])
    assert np.abs(model(inputs).numpy() - model(swapped).numpy()).max() > 1e-6
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert np.isfinite(model.train_on_batch(inputs, labels))


def test_modality_dropout_blanks_one_side_in_training_only():
    layer = multimodal.ModalityDropout(0.3, seed=1)
    vision, text = tf.ones([4000, 2]), tf.ones([4000, 3])
    kept_vision, kept_text = (x.numpy()[:, 0] for x in layer([vision, text], training=True))
    assert not np.any((kept_vision == 0) & (kept_text == 0))  # Never both.
    assert abs((kept_vision == 0).mean() - 0.3) < 0.03 and abs((kept_text == 0).mean() - 0.3) < 0.03
    same_vision, same_text = layer([vision, text], training=False)
    assert np.all(same_vision.numpy() == 1) and np.all(same_text.numpy() == 1)


def test_bad_model_options_are_refused():
    with pytest.raises(ValueError, match="cross-attention needs"):
        ModelConfig(mode="text", fusion="cross-attention").check()
    with pytest.raises(ValueError, match="--mode"):
        ModelConfig(mode="audio").check()


def test_resnet50v2_loads_a_local_weights_file(tmp_path):
    """Air-gapped clusters: ImageNet weights copied in as a file load without any download."""
    source = encoders.image_encoder("resnet50v2", IMAGE_SIZE, "none", trainable=False)
    backbone = source.get_layer("resnet50v2")
    for variable in backbone.weights[:3]:
        variable.assign(variable + 0.5)  # Make the file's weights distinguishable from a fresh init.
    path = tmp_path / "resnet50v2.weights.h5"
    backbone.save_weights(str(path))
    loaded = encoders.image_encoder("resnet50v2", IMAGE_SIZE, str(path), trainable=False)
    for expected, actual in zip(backbone.weights, loaded.get_layer("resnet50v2").weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        encoders.image_encoder("resnet50v2", IMAGE_SIZE, str(tmp_path / "missing.h5"), trainable=False)


def test_mean_pooling_averages_only_real_tokens(tiny_bert, shards):
    inputs, _ = batch(shards)
    mask = inputs["input_mask"].numpy()
    assert (mask == 0).any() and (mask == 1).any()
    layer = encoders.HubTextEncoder(tiny_bert, pooling="mean", return_sequence=True)
    pooled, sequence = (t.numpy() for t in layer(inputs))
    expected = (sequence * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    assert np.abs(pooled - expected).max() <= 1e-6
    # Other word ids at the padded positions change what the encoder computes there, not the mean.
    noisy = dict(inputs, input_word_ids=tf.where(mask == 0, 7, inputs["input_word_ids"]))
    noisy_pooled, noisy_sequence = (t.numpy() for t in layer(noisy))
    assert np.abs(noisy_sequence - sequence)[mask == 0].max() > 1e-3
    assert np.abs(noisy_pooled - pooled).max() <= 1e-6
    cls = encoders.HubTextEncoder(tiny_bert, pooling="cls")(inputs).numpy()
    assert np.abs(cls - pooled).max() > 1e-3


def test_text_pooling_is_checked():
    with pytest.raises(ValueError, match="--text-pooling must be one of"):
        ModelConfig(text_pooling="max").check()
    with pytest.raises(ValueError, match="applies to --fusion concat"):
        ModelConfig(text_pooling="mean", fusion="cross-attention").check()
