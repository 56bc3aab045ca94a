"""Text-pair packing: the BERT inputs the Beam job writes and serving computes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipeline.preprocess import bert_inputs

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "bridge", "is", "open", "closed", "##s", "!"]


def test_pair_packing_layout():
    tokenizer = bert_inputs.PairTokenizer(VOCAB, lowercase=True, seq_length=12)
    out = {k: v.numpy()[0].tolist() for k, v in tokenizer(tf.constant(["The bridge is OPEN!"]), tf.constant(["bridges closed"])).items()}
    ids = {token: index for index, token in enumerate(VOCAB)}
    expected = [ids[t] for t in ["[CLS]", "the", "bridge", "is", "open", "!", "[SEP]", "bridge", "##s", "closed", "[SEP]"]]
    assert out["input_word_ids"] == expected + [0]
    assert out["input_type_ids"] == [0] * 7 + [1] * 4 + [0]
    assert out["input_mask"] == [1] * 11 + [0]


def test_separate_pairing_packs_each_text_alone_and_counts_the_longer():
    tokenizer = bert_inputs.PairTokenizer(VOCAB, lowercase=True, seq_length=6, pairing="separate")
    joint = bert_inputs.PairTokenizer(VOCAB, lowercase=True, seq_length=6)
    out, lengths = tokenizer.pack_counted(tf.constant(["The bridge is OPEN!", "open"]), tf.constant(["bridges", "is closed"]))
    ids = {token: index for index, token in enumerate(VOCAB)}
    words = lambda *tokens: [ids[t] for t in tokens]  # noqa: E731
    assert sorted(out) == ["text_1_input_mask", "text_1_input_word_ids", "text_2_input_mask", "text_2_input_word_ids"]
    # Each text is `[CLS] text [SEP]`, cut at its end to the sequence length, then padded.
    assert out["text_1_input_word_ids"].numpy().tolist() == [words("[CLS]", "the", "bridge", "is", "open", "[SEP]"),
                                                            words("[CLS]", "open", "[SEP]") + [0, 0, 0]]
    assert out["text_2_input_word_ids"].numpy().tolist()[0] == words("[CLS]", "bridge", "##s", "[SEP]") + [0, 0]
    assert out["text_1_input_mask"].numpy().tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert lengths.numpy().tolist() == [7, 4]  # The longer text with [CLS] and [SEP]: 5 + 2, then 2 + 2.
    # Alone, a text gets the tokens the joint packing gives it as the first segment (when nothing is cut).
    alone = joint(tf.constant(["open"]), tf.constant(["is closed"]))["input_word_ids"].numpy()[0].tolist()
    assert alone[:3] == out["text_1_input_word_ids"].numpy().tolist()[1][:3]
    with pytest.raises(ValueError, match="text pairing"):
        bert_inputs.PairTokenizer(VOCAB, lowercase=True, seq_length=6, pairing="both")


def test_truncation_keeps_both_texts():
    tokenizer = bert_inputs.PairTokenizer(VOCAB, lowercase=True, seq_length=9)
    out = tokenizer(tf.constant(["the bridge is open " * 10]), tf.constant(["closed"]))
    word_ids = out["input_word_ids"].numpy()[0].tolist()
    assert len(word_ids) == 9 and word_ids.count(VOCAB.index("[SEP]")) == 2
    assert VOCAB.index("closed") in word_ids


def test_casing_changes_fingerprint_and_tokens():
    cased = bert_inputs.PairTokenizer(VOCAB, lowercase=False, seq_length=8)
    uncased = bert_inputs.PairTokenizer(VOCAB, lowercase=True, seq_length=8)
    assert cased.fingerprint != uncased.fingerprint
    text = tf.constant(["OPEN"])
    assert cased(text, text)["input_word_ids"].numpy()[0, 1] == VOCAB.index("[UNK]")
    assert uncased(text, text)["input_word_ids"].numpy()[0, 1] == VOCAB.index("open")


def test_missing_special_tokens_are_a_clear_error(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(ValueError, match="special tokens"):
        bert_inputs.read_vocab(str(path))


def test_hub_preprocessing_model_packs_like_the_local_vocabulary(hub_preprocessor, dataset, tmp_path):
    """`--preprocess-handle` (the default source) and `--vocab` give the same BERT inputs."""
    from model import local_encoders
    from tests.conftest import SEQ_LENGTH

    rows = dataset["good_rows"] + dataset["bad_rows"]
    first = [row["text_1"] for row in rows] + ["the bridge is open " * 20]
    second = [row["text_2"] for row in rows] + ["Ünïcödé CAFÉ — closed 정말 هذا 😮"]
    hub = bert_inputs.HubPairTokenizer(hub_preprocessor, SEQ_LENGTH)
    local = bert_inputs.PairTokenizer(bert_inputs.read_vocab(str(dataset["vocab"])), True, SEQ_LENGTH)
    assert hub.lowercase and hub.fingerprint == local.fingerprint
    from_hub, from_vocab = hub(tf.constant(first), tf.constant(second)), local(tf.constant(first), tf.constant(second))
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        np.testing.assert_array_equal(from_hub[key].numpy(), from_vocab[key].numpy())
    assert from_hub["input_mask"].numpy()[-1].all()  # The long pair was truncated, not dropped.

    separate_hub = bert_inputs.HubPairTokenizer(hub_preprocessor, SEQ_LENGTH, pairing="separate")
    separate_local = bert_inputs.PairTokenizer(local_vocab := bert_inputs.read_vocab(str(dataset["vocab"])), True, SEQ_LENGTH,
                                               pairing="separate")
    from_hub, from_vocab = (tokenizer.pack_counted(tf.constant(first), tf.constant(second))
                            for tokenizer in (separate_hub, separate_local))
    assert sorted(from_hub[0]) == sorted(from_vocab[0]) and local_vocab
    for key in from_vocab[0]:
        np.testing.assert_array_equal(from_hub[0][key].numpy(), from_vocab[0][key].numpy())
    np.testing.assert_array_equal(from_hub[1].numpy(), from_vocab[1].numpy())

    cased = local_encoders.build_bert_preprocessor(str(dataset["vocab"]), str(tmp_path / "cased"), False, (9,))
    cased_tokenizer = bert_inputs.HubPairTokenizer(cased, 9)
    assert not cased_tokenizer.lowercase and cased_tokenizer.fingerprint != local.fingerprint


def test_round_robin_trim_equals_tf_texts_trimmer():
    """The core-op truncation (servable anywhere) cuts exactly where TF Text's RoundRobinTrimmer does."""
    import tensorflow_text as text

    rng = np.random.default_rng(0)
    trim = tf.function(bert_inputs.round_robin_trim, reduce_retracing=True)
    for budget in (1, 2, 3, 8, 21, 125):
        lengths = rng.integers(0, 2 * budget + 3, size=(2, 40))
        segments = [tf.RaggedTensor.from_row_lengths(tf.range(n.sum(), dtype=tf.int64) + 1000 * i, n)
                    for i, n in enumerate(lengths)]
        expected = text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        for got, want in zip(trim(segments, budget), expected):
            assert got.to_list() == want.to_list()
