"""The tf.data reader over real Beam-written shards: alignment, shapes, metadata checks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipeline import features
from trainer import reader
from tests.conftest import GOOD_PAIRS, IMAGE_SIZE, SEQ_LENGTH

SHAPE = features.Shape(IMAGE_SIZE, SEQ_LENGTH)


def test_batches_have_model_shapes_and_dtypes(shards):
    out, metadata = shards
    dataset = reader.make_dataset(str(out), "train", SHAPE, batch_size=4, training=True, seed=1)
    inputs, labels = next(iter(dataset))
    specs = features.model_input_specs(SHAPE)
    assert set(inputs) == set(specs)
    for key, spec in specs.items():
        assert inputs[key].dtype == spec.dtype and inputs[key].shape[1:] == spec.shape
    assert labels.dtype == tf.int32 and labels.shape == (4,)


def test_labels_stay_aligned_through_shuffle_and_batching(shards):
    """Every (ids → label, tokens) in shuffled batches equals the unshuffled truth."""
    out, metadata = shards
    truth = {}
    for inputs, labels in reader.make_dataset(str(out), "train", SHAPE, 64, training=False, keep_ids=True):
        for i in range(len(labels)):
            key = (inputs["id_1"][i].numpy(), inputs["id_2"][i].numpy())
            truth[key] = (int(labels[i]), inputs["input_word_ids"][i].numpy(), inputs["image_2"][i].numpy())
    assert len(truth) == metadata["counts"]["train"]["total"]
    seen = 0
    for inputs, labels in reader.make_dataset(str(out), "train", SHAPE, 3, training=True, seed=5, keep_ids=True):
        for i in range(len(labels)):
            label, word_ids, image_2 = truth[(inputs["id_1"][i].numpy(), inputs["id_2"][i].numpy())]
            assert int(labels[i]) == label
            np.testing.assert_array_equal(inputs["input_word_ids"][i].numpy(), word_ids)
            np.testing.assert_array_equal(inputs["image_2"][i].numpy(), image_2)
            seen += 1
    assert seen == (len(truth) // 3) * 3  # Training drops only the last partial batch.


def test_a_seed_gives_the_same_batches_in_the_same_order(shards):
    out, _ = shards

    def order(seed):
        dataset = reader.make_dataset(str(out), "train", SHAPE, 4, training=True, seed=seed, keep_ids=True)
        return [tuple(inputs["id_1"].numpy()) for inputs, _ in dataset]

    first = order(3)
    assert order(3) == first and order(4) != first


def test_evaluation_reads_every_example_once(shards):
    out, metadata = shards
    total = 0
    for split in features.SPLITS:
        for _, labels in reader.make_dataset(str(out), split, SHAPE, 7, training=False):
            total += len(labels)
    assert total == GOOD_PAIRS == metadata["examples_written"]


def test_input_context_gives_each_pipeline_its_own_files(shards):
    out, _ = shards
    ids = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id)
        dataset = reader.make_dataset(str(out), "train", SHAPE, 1, training=False, input_context=context, keep_ids=True)
        ids.append({inputs["id_1"][0].numpy() for inputs, _ in dataset})
    assert ids[0] and ids[1] and not ids[0] & ids[1]


@pytest.mark.parametrize(
    "shape, fingerprint, message",
    [
        (features.Shape(IMAGE_SIZE + 1, SEQ_LENGTH), None, "image size"),
        (features.Shape(IMAGE_SIZE, SEQ_LENGTH * 2), None, "sequence length"),
        (SHAPE, "sha256:0000:uncased", "vocabulary"),
        (features.Shape(IMAGE_SIZE, SEQ_LENGTH, "separate"), None, "text pairing joint in the shards, separate in the model"),
    ],
)
def test_mismatched_shards_are_refused_clearly(shards, shape, fingerprint, message):
    _, metadata = shards
    with pytest.raises(reader.MetadataMismatch, match=message):
        reader.check_metadata(metadata, shape, fingerprint)
    reader.check_metadata(metadata, SHAPE, metadata["vocab_fingerprint"])  # The right ones pass.


def test_separate_shards_read_each_texts_inputs_and_refuse_a_joint_model(separate_shards, dataset):
    """Shards of the `separate` pairing hold each text packed alone, as the tokenizer packs it;
    the reader hands them to the model under their own keys, and a joint model is refused."""
    from pipeline.preprocess import bert_inputs

    out, metadata = separate_shards
    assert metadata["text_pairing"] == "separate" and metadata["text_pooling"] == "cls"
    assert metadata["rows_read"] == metadata["examples_written"] == GOOD_PAIRS
    shape = features.Shape(IMAGE_SIZE, SEQ_LENGTH, "separate")
    tokenizer = bert_inputs.PairTokenizer(bert_inputs.read_vocab(str(dataset["vocab"])), True, SEQ_LENGTH, pairing="separate")
    seen = 0
    for split in features.SPLITS:
        for inputs, label in reader.make_dataset(str(out), split, shape, 64, training=False, keep_ids=True):
            assert set(inputs) == set(features.IMAGE_KEYS + shape.token_keys + features.ID_KEYS)
            seen += len(label)
    assert seen == GOOD_PAIRS
    stored = tf.data.TFRecordDataset(features.shard_files(str(out), "train"), compression_type=features.COMPRESSION)
    for serialized in stored.take(8):
        example = features.parse(serialized, shape)
        expected = tokenizer(example["text_1"][tf.newaxis], example["text_2"][tf.newaxis])
        for key in shape.token_keys:
            np.testing.assert_array_equal(example[key].numpy(), expected[key].numpy()[0])
    with pytest.raises(reader.MetadataMismatch, match="text pairing separate in the shards, joint in the model"):
        reader.check_metadata(metadata, SHAPE, None)
