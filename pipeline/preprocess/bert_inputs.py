"""A tweet pair's texts → BERT inputs, as TF ops: one tokenizer for the Beam job and serving.

In the `joint` pairing (the baseline's): `[CLS] text_1 [SEP] text_2 [SEP]`, segment ids 0/1,
mask, padded to the sequence length; truncation is round-robin, so a long first tweet cannot
push the second one out. In the `separate` pairing each text is packed on its own,
`[CLS] text [SEP]`, cut and padded to the sequence length (`features` names the keys). The
vocabulary and casing must be the text encoder's; `vocab_fingerprint` identifies them, and the
shards, the trainer and the export all compare it. `PairTokenizer` is a `tf.Module`, so the
exported model carries it (vocabulary included) and serving tokenizes as the job did.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Sequence

import tensorflow as tf

from pipeline import cli, features
from pipeline.preprocess import ENCODER_REPORT_FILE, TOKENIZER_OPS

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def vocab_fingerprint(vocab: Sequence[str], lowercase: bool) -> str:
    """Identifies vocabulary and casing; shards and the text encoder must carry the same one."""
    digest = hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest()[:16]
    return f"sha256:{digest}:{'uncased' if lowercase else 'cased'}"


def read_vocab(path: str) -> list[str]:
    with tf.io.gfile.GFile(path, "r") as handle:
        vocab = [line.rstrip("\n") for line in handle]
    while vocab and not vocab[-1]:
        vocab.pop()
    missing = [token for token in SPECIAL_TOKENS[:4] if token not in vocab]
    if missing:
        raise ValueError(f"vocabulary {path} lacks the BERT special tokens {missing}")
    return vocab


def encoder_vocabulary(handle: str) -> tuple[list[str], bool]:
    """The vocabulary and casing a TF Hub BERT encoder carries (its vocab_file asset, do_lower_case).

    The Beam job tokenizes with them (`--text-encoder`), and the trainer and the export check
    and rebuild the tokenizer from them, so the three cannot disagree.
    """
    import tensorflow_hub as hub

    encoder = hub.load(handle)
    return read_vocab(encoder.vocab_file.asset_path.numpy().decode("utf-8")), bool(encoder.do_lower_case.numpy())


def encoder_pooling(handle: str) -> str | None:
    """The pooling an imported encoder's checkpoint was trained for (`cls` or `mean`), from its
    `ENCODER_REPORT_FILE`; None for an encoder without one (TF Hub's own)."""
    import json

    if handle.startswith(("http://", "https://")):  # A TF Hub handle: no report.
        return None
    path = f"{handle.rstrip('/')}/{ENCODER_REPORT_FILE}"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle_file:
        pooling = json.load(handle_file).get("recommended_text_pooling")
    if pooling not in (None, *features.TEXT_POOLINGS):
        raise ValueError(f"{path} recommends the text pooling {pooling!r}, not one of {', '.join(features.TEXT_POOLINGS)}")
    return pooling


def packing_ids(vocab: Sequence[str]) -> tuple[int, int, int]:
    """The ids of [CLS], [SEP] and [PAD] in `vocab`, as `pack_segments` takes them."""
    return tuple(vocab.index(token) for token in ("[CLS]", "[SEP]", "[PAD]"))


def round_robin_trim(segments, budget: int) -> list[tf.RaggedTensor]:
    """Two token segments (ragged [B, (tokens)]) cut to `budget` tokens per row, round-robin.

    Tokens are taken one from each segment in turn, first segment first, until the budget is
    spent or a segment runs out; so the first keeps min(l1, max(ceil(L/2), L - l2)) tokens and
    the second what is left. TF Text's `RoundRobinTrimmer` does the same, but through its own
    op (TFText>RoundRobinTrim), which TF Serving builds that link TF Text older than 2.16 lack
    (tensorflow/serving#4057). These are core ops, so the packing runs on any model server.
    """
    if len(segments) != 2:
        raise ValueError(f"round_robin_trim takes a pair of segments, got {len(segments)}")
    first, second = segments
    lengths = [segment.row_lengths() for segment in segments]
    half, budget = (tf.constant(value, lengths[0].dtype) for value in ((budget + 1) // 2, budget))
    keep_first = tf.minimum(lengths[0], tf.maximum(half, budget - lengths[1]))
    keep_second = tf.minimum(lengths[1], budget - keep_first)
    return [
        tf.ragged.boolean_mask(segment, tf.ragged.range(length) < tf.expand_dims(keep, 1))
        for segment, length, keep in ((first, lengths[0], keep_first), (second, lengths[1], keep_second))
    ]


def pair_lengths(segments) -> tf.Tensor:
    """Tokens of `[CLS] a [SEP] b [SEP]` before any truncation, int64 [B]: the pair is cut when
    this exceeds the sequence length. The shards keep only what fits, so the Beam job counts
    these as it packs (metadata.json's `pair_tokens`)."""
    return tf.add_n([tf.cast(segment.row_lengths(), tf.int64) for segment in segments]) + len(segments) + 1


def pack_segments(segments, seq_length: int, ids: tuple[int, int, int]) -> dict[str, tf.Tensor]:
    """One or two token-id segments (ragged [B, (tokens)] each) → `[CLS] a [SEP] (b [SEP])` BERT inputs.

    A pair is cut round-robin (a long first segment cannot push the second out), one segment
    at its end; then segment ids 0, 1, mask, padding to `seq_length`; int32 [B, seq_length]
    each, as TF Hub's BERT preprocessing models return them. `ids` comes from `packing_ids`.
    TF Text's combine and pad functions are core ops.
    """
    import tensorflow_text as text

    cls_id, sep_id, pad_id = ids
    budget = seq_length - len(segments) - 1
    trimmed = [segments[0][:, :budget]] if len(segments) == 1 else round_robin_trim(segments, budget)
    word_ids, type_ids = text.combine_segments(trimmed, start_of_sequence_id=cls_id, end_of_segment_id=sep_id)
    word_ids, mask = text.pad_model_inputs(word_ids, max_seq_length=seq_length, pad_value=pad_id)
    type_ids, _ = text.pad_model_inputs(type_ids, max_seq_length=seq_length)
    return {
        "input_word_ids": tf.cast(word_ids, tf.int32),
        "input_mask": tf.cast(mask, tf.int32),
        "input_type_ids": tf.cast(type_ids, tf.int32),
    }


def pack_each(segments, pack_one) -> dict[str, tf.Tensor]:
    """Token-id segments (one per text) → each packed alone as `[CLS] text [SEP]` by
    `pack_one([segment])` (this module's `pack_segments`, or a Hub preprocessor's
    `bert_pack_inputs`): the `separate` pairing's inputs, int32 [B, seq_length] per key of
    `features.token_keys("separate")`."""
    inputs = {}
    for text, segment in zip(features.TEXT_KEYS, segments, strict=True):
        packed = pack_one([segment])
        inputs.update({f"{text}_{key}": tf.cast(packed[key], tf.int32) for key in features.SINGLE_TEXT_KEYS})
    return inputs


def longest_text_lengths(segments) -> tf.Tensor:
    """Tokens of the longer text as `[CLS] text [SEP]`, before any truncation, int64 [B]: in the
    `separate` pairing a pair is cut when this exceeds the sequence length."""
    return tf.reduce_max(tf.stack([tf.cast(segment.row_lengths(), tf.int64) for segment in segments]), axis=0) + 2


def pack(segments, seq_length: int, ids: tuple[int, int, int], pairing: str) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """The pair's BERT inputs in `pairing`, and each pair's length before truncation."""
    if pairing == "separate":
        return pack_each(segments, lambda one: pack_segments(one, seq_length, ids)), longest_text_lengths(segments)
    return pack_segments(segments, seq_length, ids), pair_lengths(segments)


class PairTokenizer(tf.Module):
    """(text_1, text_2) batches → BERT pair inputs, from a WordPiece vocabulary.

    Calling it with two string vectors [B] returns `input_word_ids`, `input_mask` and
    `input_type_ids`, each int32 [B, seq_length]. It is a `tf.Module`, so the exported model
    carries it (vocabulary included) and serving tokenizes exactly as the Beam job did.

    `ops="fast"` (the Beam job's, and the default export's) is TF Text's FastBertTokenizer:
    ops FastBertNormalize and FastWordpieceTokenizeWithOffsets. `ops="classic"` is its
    BertTokenizer, the same tokens through older ops (CaseFoldUTF8, NormalizeUTF8,
    RegexSplitWithOffsets, WordpieceTokenizeWithOffsets and a lookup table), for model
    servers that link a TF Text without the fast ones (tensorflow/serving#2064).
    """

    def __init__(self, vocab: Sequence[str], lowercase: bool, seq_length: int, ops: str = "fast",
                 pairing: str = "joint"):
        super().__init__(name="pair_tokenizer")
        import tensorflow_text as text  # Registers the TF Text ops; needed in every process.

        if seq_length < 5:
            raise ValueError(f"seq_length must be at least 5, got {seq_length}")
        if ops not in TOKENIZER_OPS:
            raise ValueError(f"ops must be one of {TOKENIZER_OPS}, got {ops!r}")
        features.token_keys(pairing)  # Refuses an unknown pairing.
        vocab = list(vocab)
        self.seq_length = seq_length
        self.pairing = pairing
        self.lowercase = lowercase
        self.ops = ops
        self.fingerprint = vocab_fingerprint(vocab, lowercase)
        self._packing_ids = packing_ids(vocab)
        if ops == "fast":
            self._wordpiece = text.FastBertTokenizer(
                vocab=vocab, token_out_type=tf.int64, lower_case_nfd_strip_accents=lowercase, unknown_token="[UNK]")
        else:
            # The table TF Text builds itself from a vocab.txt path, from the list instead.
            table = tf.lookup.StaticVocabularyTable(
                tf.lookup.KeyValueTensorInitializer(vocab, tf.range(len(vocab), dtype=tf.int64)), num_oov_buckets=1)
            self._wordpiece = text.BertTokenizer(table, token_out_type=tf.int64, lower_case=lowercase, unknown_token="[UNK]")

    def _tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        tokens = self._wordpiece.tokenize(texts)
        return tokens if self.ops == "fast" else tokens.merge_dims(-2, -1)  # BertTokenizer: [B, words, pieces].

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2, autograph=False)
    def __call__(self, text_1: tf.Tensor, text_2: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.pack_counted(text_1, text_2)[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2, autograph=False)
    def pack_counted(self, text_1: tf.Tensor, text_2: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """`__call__`'s BERT inputs, and each pair's length before truncation (`pack`)."""
        segments = [self._tokenize(text_1), self._tokenize(text_2)]
        return pack(segments, self.seq_length, self._packing_ids, self.pairing)


class HubPairTokenizer(tf.Module):
    """The same contract as `PairTokenizer`, backed by a TF Hub BERT preprocessing SavedModel.

    Uses the model's own `tokenize` and `bert_pack_inputs`, called directly (not through
    `hub.KerasLayer`, which Keras 3 rejects). The vocabulary fingerprint comes from the model's
    `assets/vocab.txt`, and the casing is found by tokenizing "A" and "a".
    """

    def __init__(self, handle: str, seq_length: int, pairing: str = "joint"):
        super().__init__(name="hub_pair_tokenizer")
        import tensorflow_hub as hub
        import tensorflow_text  # noqa: F401  Registers ops the preprocessing model uses.

        features.token_keys(pairing)  # Refuses an unknown pairing.
        self.seq_length = seq_length
        self.pairing = pairing
        self.handle = handle
        self._preprocessor = hub.load(handle)
        vocab_path = os.path.join(hub.resolve(handle), "assets", "vocab.txt")
        vocab = read_vocab(vocab_path)
        upper, lower = self._preprocessor.tokenize(tf.constant(["A", "a"])).flat_values.numpy()[:2]
        self.lowercase = bool(upper == lower)
        self.fingerprint = vocab_fingerprint(vocab, self.lowercase)
        # Packs one pair now, so a model that cannot pack to seq_length fails here, not in workers.
        try:
            self(tf.constant(["a"]), tf.constant(["b"]))
        except (ValueError, TypeError) as error:
            reason = cli.first_line(error) or type(error).__name__
            raise ValueError(f"{handle} cannot pack BERT inputs of length {seq_length}: {reason}") from None

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2, autograph=False)
    def __call__(self, text_1: tf.Tensor, text_2: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.pack_counted(text_1, text_2)[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)] * 2, autograph=False)
    def pack_counted(self, text_1: tf.Tensor, text_2: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """`__call__`'s BERT inputs, and each pair's length before truncation (as `pack` gives them)."""
        segments = [self._preprocessor.tokenize(text_1), self._preprocessor.tokenize(text_2)]
        # The model's tokenize gives [B, words, pieces]; a pair's length counts the pieces.
        flat = [segment.merge_dims(-2, -1) if segment.ragged_rank > 1 else segment for segment in segments]
        if self.pairing == "separate":
            pack_one = functools.partial(self._preprocessor.bert_pack_inputs, seq_length=self.seq_length)
            return pack_each(segments, pack_one), longest_text_lengths(flat)
        packed = self._preprocessor.bert_pack_inputs(segments, seq_length=self.seq_length)
        return {key: tf.cast(packed[key], tf.int32) for key in packed}, pair_lengths(flat)
