"""The exported model: raw inputs in, same answers as the model on the Beam preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model import export, multimodal
from model.config import ModelConfig
from pipeline import features
from pipeline.inputs import rows
from pipeline.preprocess import TOKENIZER_OPS, bert_inputs
from trainer import reader
from tests.conftest import IMAGE_SIZE, SEQ_LENGTH

SHAPE = features.Shape(IMAGE_SIZE, SEQ_LENGTH)


@pytest.fixture(scope="module")
def export_paths(tiny_bert, tmp_path_factory):
    """One untrained model exported with each tokenizer's ops: (model, {ops: path})."""
    import keras

    keras.utils.set_random_seed(0)  # The storage gap depends on the weights: no luck of the test order.
    config = ModelConfig(text_encoder=tiny_bert, image_encoder="tiny", image_weights="none",
                                    projection_dims=16, image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH)
    model = multimodal.create_model(config)
    folder = tmp_path_factory.mktemp("export")
    return model, {ops: export.export(model, str(folder / ops), tiny_bert, SHAPE, tokenizer_ops=ops)
                   for ops in TOKENIZER_OPS}


@pytest.fixture(scope="module")
def exported(export_paths, tiny_bert):
    model, paths = export_paths
    return model, export.ServingModule(model, export.tokenizer_for(tiny_bert, SHAPE), IMAGE_SIZE), export.load(paths["fast"])


def raw_pairs(dataset, count=8):
    records = [rows.parse_row(n, row) for n, row in enumerate(dataset["good_rows"][:count], 1)]
    texts = [tf.constant([r.texts[i] for r in records]) for i in range(2)]
    images = [tf.constant([(dataset["images"] / r.image_files[i]).read_bytes() for r in records]) for i in range(2)]
    return records, texts, images


def test_serving_equals_model_on_preprocessing(exported, dataset):
    model, module, serve = exported
    _, (text_1, text_2), (image_1, image_2) = raw_pairs(dataset)
    served = serve(text_1=text_1, text_2=text_2, image_1=image_1, image_2=image_2)
    direct = model(module.model_inputs(text_1, text_2, image_1, image_2), training=False).numpy()
    assert np.abs(served["probabilities"].numpy() - direct).max() <= 1e-5
    labels = [features.LABELS[i] for i in direct.argmax(-1)]
    assert [label.decode() for label in served["label"].numpy()] == labels


def test_storage_gap_is_small_and_measured(exported, dataset, shards):
    """Shards hold JPEG q95 re-encodings; this measures what that changes in the outputs."""
    model, _, serve = exported
    out, _ = shards
    records, (text_1, text_2), (image_1, image_2) = raw_pairs(dataset, count=len(dataset["good_rows"]))
    served = serve(text_1=text_1, text_2=text_2, image_1=image_1, image_2=image_2)["probabilities"].numpy()
    by_ids = {r.ids: i for i, r in enumerate(records)}
    gaps = []
    for split in features.SPLITS:
        for inputs, _ in reader.make_dataset(str(out), split, SHAPE, 64, training=False, keep_ids=True):
            ids = [(a.decode(), b.decode()) for a, b in zip(inputs.pop("id_1").numpy(), inputs.pop("id_2").numpy())]
            from_shards = model(inputs, training=False).numpy()
            gaps += [np.abs(from_shards[j] - served[by_ids[key]]).max() for j, key in enumerate(ids)]
    print(f"storage gap (JPEG q95 in shards) max |Δp| = {max(gaps):.2e}, mean = {np.mean(gaps):.2e}")
    assert len(gaps) == len(records) and max(gaps) < 0.02


def test_a_bad_image_fails_its_row_and_not_the_request(exported, dataset):
    """Each kind of bad image gets valid=False and a reason; its batch-mates are scored unchanged."""
    _, _, serve = exported
    _, (text_1, text_2), (image_1, image_2) = raw_pairs(dataset, 4)
    alone = serve(text_1=text_1, text_2=text_2, image_1=image_1, image_2=image_2)
    first, second = image_1.numpy(), image_2.numpy()
    bad_1 = [first[0], b"not an image", first[2], first[3]]
    bad_2 = [second[0], second[1], second[2][: len(second[2]) * 2 // 3], second[3]]  # Cut after its header: the codec fails.
    mixed = serve(text_1=text_1, text_2=text_2, image_1=tf.constant(bad_1), image_2=tf.constant(bad_2))
    assert mixed["valid"].numpy().tolist() == [True, False, False, True]
    errors = [e.decode() for e in mixed["error"].numpy()]
    assert errors[0] == errors[3] == ""
    assert errors[1].startswith("image_1: not a JPEG") and errors[2].startswith("image_2: the image data is corrupt")
    assert [label.decode() for label in mixed["label"].numpy()][1:3] == ["", ""]
    assert not mixed["probabilities"].numpy()[1:3].any()
    for row in (0, 3):
        assert mixed["label"].numpy()[row] == alone["label"].numpy()[row]
        assert np.abs(mixed["probabilities"].numpy()[row] - alone["probabilities"].numpy()[row]).max() <= 1e-6


# What each reason the shards job rejects a row for becomes in the serving signature, which
# takes two texts and two images' bytes: those of the inputs themselves are refused row by
# row; those of the CSV file (its bytes, cells, ids, label, image URLs, duplicates) have no
# counterpart in a request.
SIGNATURE_REASONS = {"bad_encoding": "bad_encoding", "empty_text": "empty_text", "missing_image": "empty_image",
                     "empty_image": "empty_image", "image_too_large": "image_too_large",
                     "undecodable_image": "undecodable_image"}
CSV_ONLY_REASONS = {"bad_cell_count", "malformed_csv", "record_too_large", "bad_header", "bad_id", "unknown_label",
                    "bad_image_url", "path_traversal", "duplicate_pair"}


def test_every_reject_reason_of_the_job_is_refused_alike_or_has_no_counterpart(exported, dataset):
    from tests.conftest import png_bomb_bytes

    assert set(SIGNATURE_REASONS) | CSV_ONLY_REASONS == set(rows.REASONS)  # A new reason needs a decision here.
    _, _, serve = exported
    _, (text_1, text_2), (image_1, image_2) = raw_pairs(dataset, 1)
    good_text, good_image = text_1.numpy()[0], image_1.numpy()[0]
    # One row per reason: (text_1, text_2, image_1, image_2) with that one fault.
    cases = {
        "bad_encoding": (b"caf\xe9 is open", good_text, good_image, good_image),
        "empty_text": (good_text, " \u3000\n".encode(), good_image, good_image),
        "missing_image": (good_text, good_text, good_image, b""),
        "empty_image": (good_text, good_text, b"", good_image),
        "image_too_large": (good_text, good_text, png_bomb_bytes(), good_image),
        "undecodable_image": (good_text, good_text, good_image, b"<html>not an image</html>"),
    }
    rows_in = list(cases.values()) + [(good_text, good_text, good_image, good_image)]
    out = serve(**{key: tf.constant([row[i] for row in rows_in]) for i, key in enumerate(features.RAW_KEYS)})
    assert out["valid"].numpy().tolist() == [False] * len(cases) + [True]
    reasons = [reason.decode() for reason in out["reason"].numpy()]
    assert reasons == [SIGNATURE_REASONS[name] for name in cases] + [""]
    errors = [error.decode() for error in out["error"].numpy()]
    assert errors[0].startswith("text_1: ") and errors[1].startswith("text_2: ") and errors[2].startswith("image_2: ")
    # The same rules as the job's row checks.
    assert isinstance(rows.parse_row(1, {"id_1": "1", "id_2": "2", "text_1": "a", "text_2": " \u3000\n",
                                         "image_1": "http://x/1.jpg", "image_2": "http://x/2.jpg", "label": "Implies"}),
                      rows.Rejection)


def test_an_empty_request_gets_empty_outputs(exported):
    _, _, serve = exported
    empty = tf.constant([], tf.string)
    out = serve(**{key: empty for key in features.RAW_KEYS})
    shapes = {key: (value.dtype, value.shape.as_list()) for key, value in out.items()}
    assert shapes == {"probabilities": (tf.float32, [0, 3]), "label": (tf.string, [0]), "valid": (tf.bool, [0]),
                      "error": (tf.string, [0]), "reason": (tf.string, [0])}


def test_export_of_a_trained_model_carries_no_optimizer_state_and_honours_max_pixels(tiny_bert, dataset, tmp_path):
    import keras

    config = ModelConfig(text_encoder=tiny_bert, image_encoder="tiny", image_weights="none",
                                    projection_dims=16, image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH,
                                    train_text_encoder=True)
    model = multimodal.create_model(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    records, (text_1, text_2), (image_1, image_2) = raw_pairs(dataset, 4)
    module = export.ServingModule(model, export.tokenizer_for(tiny_bert, SHAPE), IMAGE_SIZE)
    inputs = module.model_inputs(text_1, text_2, image_1, image_2)
    model.fit(inputs, np.arange(len(records)) % len(features.LABELS), epochs=1, verbose=0)
    assert model.optimizer.variables  # Adam's slots exist and must stay out of the export.

    width, height = 64, 48  # The size of the JPEG below.
    path = export.export(model, str(tmp_path / "serving"), tiny_bert, SHAPE,
                         max_pixels=width * height - 1)
    saved = {name: int(np.prod(shape)) for name, shape in
             tf.train.list_variables(str(tmp_path / "serving" / "variables" / "variables")) if name.endswith("VARIABLE_VALUE")}
    assert not [name for name in saved if "optimizer" in name.lower()]
    # The model's weights and the encoder's do_lower_case flag, nothing else (Adam would add 2×).
    assert sum(saved.values()) == sum(int(np.prod(w.shape)) for w in model.weights) + 1

    from tests.conftest import jpeg_bytes

    serve = export.load(path)
    text = tf.constant(["a"])
    over = serve(text_1=text, text_2=text, image_1=tf.constant([jpeg_bytes(width, height)]), image_2=image_1[:1])
    assert not over["valid"].numpy()[0]  # One pixel over the shards' limit.
    assert over["error"].numpy()[0].decode() == "image_1: header announces more pixels than allowed"
    assert serve(text_1=text, text_2=text, image_1=image_1[:1], image_2=image_1[:1])["probabilities"].shape == (1, 3)


def test_export_serves_with_the_models_text_pooling(tiny_bert, dataset, tmp_path):
    """Serving a mean-pooled model equals the model; the same weights pooled by [CLS] differ."""
    import keras

    def model(pooling):
        keras.utils.set_random_seed(1)
        return multimodal.create_model(ModelConfig(
            text_encoder=tiny_bert, image_encoder="tiny", image_weights="none", projection_dims=16,
            image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH, text_pooling=pooling, mode="text"))

    mean, cls = model("mean"), model("cls")
    cls.set_weights(mean.get_weights())
    serve = export.load(export.export(mean, str(tmp_path / "serving"), tiny_bert, SHAPE))
    _, (text_1, text_2), (image_1, image_2) = raw_pairs(dataset)
    served = serve(text_1=text_1, text_2=text_2, image_1=image_1, image_2=image_2)["probabilities"].numpy()
    inputs = export.ServingModule(mean, export.tokenizer_for(tiny_bert, SHAPE), IMAGE_SIZE).model_inputs(
        text_1, text_2, image_1, image_2)
    assert np.abs(served - mean(inputs, training=False).numpy()).max() <= 1e-5
    assert np.abs(served - cls(inputs, training=False).numpy()).max() > 1e-4


# The TF Text ops each export needs: what a model server must link besides TensorFlow. The
# fast tokenizer is TF Text's FastBertTokenizer, the classic one its BertTokenizer; truncation
# (`bert_inputs.round_robin_trim`), packing and padding are core ops.
TF_TEXT_OPS = {
    "fast": ["FastBertNormalize", "FastWordpieceTokenizeWithOffsets"],
    "classic": ["CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"],
}
# Texts where two tokenizers could part: accents, case, CJK, RTL, emoji, control and
# zero-width characters, punctuation runs, unknown words, and pairs long enough to be cut.
HARD_TEXTS = [
    "Ünïcödé CAFÉ — closed 정말 هذا 😮", "naïve façade résumé ÅNGSTRÖM", "東京タワー は 閉鎖 された",
    "tab\there\nnewline\r\x00nul \u200bzero\u200dwidth", "!!!???...,,, (a) [b] {c} #tag @user $5 50%",
    "https://t.co/AbCdEf1234 www.example.com/x?y=z", "", "   ", "xyzzyplugh qwertyuiop",
    "the bridge is open " * 30, "Straße ǅ ﬁ Ⅸ ①", "Ελληνικά Кириллица עברית हिन्दी",
]


@pytest.mark.parametrize("ops", ["fast", "classic"])
def test_export_needs_only_the_listed_tf_text_ops(export_paths, ops):
    import subprocess
    import sys

    path = export_paths[1][ops]
    result = subprocess.run([sys.executable, "-m", "model.export", "--ops", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == TF_TEXT_OPS[ops]


def test_classic_tokenizer_export_equals_the_default(exported, export_paths, dataset):
    """The classic-ops export gives the default export's tokens and probabilities."""
    vocab = bert_inputs.read_vocab(str(dataset["vocab"]))
    texts = [r["text_1"] for r in dataset["good_rows"]] + [r["text_2"] for r in dataset["good_rows"]] + HARD_TEXTS
    firsts, seconds = tf.constant(texts), tf.constant(texts[::-1])
    for lowercase in (True, False):
        fast = bert_inputs.PairTokenizer(vocab, lowercase, SEQ_LENGTH)(firsts, seconds)
        classic = bert_inputs.PairTokenizer(vocab, lowercase, SEQ_LENGTH, ops="classic")(firsts, seconds)
        for key in fast:
            np.testing.assert_array_equal(fast[key].numpy(), classic[key].numpy())
    assert fast["input_mask"].numpy().all(axis=1).any()  # Some pairs were cut to the length.

    _, _, serve = exported
    classic_serve = export.load(export_paths[1]["classic"])
    _, _, (image_1, image_2) = raw_pairs(dataset, count=len(HARD_TEXTS))
    pair = dict(text_1=tf.constant(HARD_TEXTS), text_2=tf.constant(HARD_TEXTS[::-1]), image_1=image_1, image_2=image_2)
    default, classic = serve(**pair), classic_serve(**pair)
    assert np.abs(default["probabilities"].numpy() - classic["probabilities"].numpy()).max() <= 1e-5
    assert default["label"].numpy().tolist() == classic["label"].numpy().tolist()
