"""On synthetic data, where labels need both modalities, the multimodal model must beat both
single-modality ablations (and the majority baseline).

The claim is about the model's fusion, so the test takes the luck out of everything else:

- The text encoder is `local_encoders.PieceCounter`, a fixed TF Hub-format encoder that counts
  each tweet's word pieces. A small BERT trained from scratch "takes off" (learns to compare
  the two tweets) at a random epoch: at 40 epochs one run scored 0.48 macro-F1 and the next
  0.75, and the old test failed about one run in ten. With the counts, the model's own head
  learns the comparison smoothly: over 4 seeds, after 20 epochs, multimodal scored 0.66-0.74,
  text-only 0.51-0.52, image-only 0.44-0.48 (majority baseline 0.22); after 30 epochs
  0.70-0.76, 0.52-0.55 and 0.41-0.47, no wider a margin for half as much time again.
- Training is deterministic: seeded weights, a seeded reader that keeps its order, and TF's op
  determinism, so a run gives the same scores every time on the same machine.
- The test split is a quarter of the pairs (500), so the scores carry little sampling noise.

One seed per model (the worst of the 4 seeds above, seed 0 with a margin of 0.14 over
text-only, still clears the margins asserted below), 32 px images: about 40 s on 2 cores. (Frozen encoders with only the heads trained, as the
demo does, were tried to make it faster: over 4 seeds multimodal scored 0.60-0.71 against
text-only's 0.53-0.56, too close a margin to test, and the heads' epochs saved little.)
"""

from __future__ import annotations

import keras
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from model import local_encoders, multimodal
from model.config import MODES, ModelConfig
from pipeline import features, metrics
from pipeline.shards import command as run
from pipeline.synthetic import pairs as synthetic
from trainer import reader, split_eval

IMAGE_SIZE, SEQ_LENGTH, EPOCHS = 32, 24, 20
SEEDS = (0,)


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnable")
    # Balanced-ish classes give the minority rules enough examples to be learnt in seconds.
    synthetic.generate(str(root / "data"), 2000, seed=11, ratios=(1, 1, 2), min_side=IMAGE_SIZE, max_side=2 * IMAGE_SIZE)
    run.run([
        "--csv", str(root / "data" / "tweets.csv"), "--images", str(root / "data" / "images"),
        "--vocab", str(root / "data" / "vocab.txt"), "--out", str(root / "shards"),
        "--image-size", str(IMAGE_SIZE), "--seq-length", str(SEQ_LENGTH), "--test-fraction", "0.25",
    ])
    counter = local_encoders.build_piece_counter(str(root / "data" / "vocab.txt"), str(root / "counter"))
    return str(root / "shards"), counter


@pytest.fixture
def op_determinism():
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:  # Process-wide: the tests after this one run as usual. TF has no public switch back.
        tf_config.disable_op_determinism()


def test_multimodal_beats_text_only_and_image_only(learnable, op_determinism):
    shards, counter = learnable
    shape = features.Shape(IMAGE_SIZE, SEQ_LENGTH)
    counts = features.read_metadata(shards)["counts"]
    steps, test_examples = counts["train"]["total"] // 32, counts["test"]["total"]
    scores = {}
    for mode in MODES:
        runs = []
        for seed in SEEDS:
            keras.utils.set_random_seed(seed)
            model = multimodal.create_model(ModelConfig(
                text_encoder=counter, image_encoder="tiny", image_weights="none", projection_dims=64,
                image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH, mode=mode, train_image_encoder=True,
            ))
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
            train = reader.make_dataset(shards, "train", shape, 32, training=True, seed=seed).repeat()
            model.fit(train, steps_per_epoch=steps, epochs=EPOCHS, verbose=0)
            predictor = split_eval.SplitPredictor(tf.distribute.get_strategy(), lambda: reader.ShardSource(shards, shape).examples("test"), test_examples, 64)
            labels, probabilities = predictor.predict(model)
            report = metrics.classification_report(labels, probabilities.argmax(axis=-1))
            runs.append(report["macro_f1"])
        scores[mode] = sum(runs) / len(runs)
        majority = report["majority_baseline"]["macro_f1"]
    print("test macro-F1:", {mode: round(score, 3) for mode, score in scores.items()}, "majority:", round(majority, 3))
    # Measured margins are 0.14-0.23 and 0.44-0.52; these bounds leave room for another machine's rounding.
    assert scores["multimodal"] > max(scores["text"], scores["image"]) + 0.1, scores
    assert scores["multimodal"] > majority + 0.3, scores
