"""Small encoders built locally in the formats the trainer loads, for tests and the offline demo.

`python -m model.local_encoders --vocab data/demo/vocab.txt --out data/encoders` writes
`tiny_bert/`, a TF Hub-format BERT SavedModel: a random-initialised transformer encoder with
the same interface as `tensorflow/small_bert/...` on TF Hub, i.e. called as
`encoder(dict(input_word_ids=, input_mask=, input_type_ids=), training=...)` and returning
`pooled_output` [B, H] and `sequence_output` [B, L, H]; with `vocab_file` (an asset) and
`do_lower_case` attributes, as Hub BERT models carry. With `--preprocessor` it also writes
`bert_preprocess/`, a stand-in for `tensorflow/bert_en_uncased_preprocess/3`: `tokenize`
(strings [B] → ragged word pieces [B, (words), (pieces)]) and `bert_pack_inputs(segments,
seq_length=...)`, with the vocabulary in `assets/vocab.txt`, which is what the Beam job's
`--preprocess-handle` path uses. TF Hub and Kaggle downloads are not possible here; the
loading code is the same for a real handle.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from pipeline.bert_inputs import pack_segments, packing_ids, read_vocab  # noqa: E402


class TinyBert(tf.Module):
    """A post-norm BERT encoder in plain TF ops (no Keras), so its SavedModel is Keras-free."""

    # Saved as plain attributes, as TF Hub's reusable SavedModels do (tf.Module computes them).
    variables = None
    trainable_variables = None

    def __init__(self, vocab_file: str, do_lower_case: bool, hidden: int = 32, layers: int = 2,
                 heads: int = 2, max_length: int = 512, dropout: float = 0.1, seed: int = 0):
        super().__init__(name="tiny_bert")
        if hidden % heads:
            raise ValueError("hidden must be divisible by heads")
        with tf.io.gfile.GFile(vocab_file) as handle:
            vocab_size = sum(1 for _ in handle)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(do_lower_case, trainable=False, name="do_lower_case")
        self._hidden, self._heads, self._dropout = hidden, heads, dropout
        init = tf.random.stateless_truncated_normal
        counter = iter(range(10_000))

        def weight(shape, name):
            return tf.Variable(init(shape, seed=[seed, next(counter)], stddev=0.02), name=name)

        def zeros(shape, name):
            return tf.Variable(tf.zeros(shape), name=name)

        def ones(shape, name):
            return tf.Variable(tf.ones(shape), name=name)

        self.word_embeddings = weight([vocab_size, hidden], "word_embeddings")
        self.position_embeddings = weight([max_length, hidden], "position_embeddings")
        self.type_embeddings = weight([2, hidden], "type_embeddings")
        self.embedding_norm = (ones([hidden], "embedding_norm_gamma"), zeros([hidden], "embedding_norm_beta"))
        self.blocks = []
        for index in range(layers):
            prefix = f"layer_{index}_"
            self.blocks.append({
                "qkv": weight([hidden, 3 * hidden], prefix + "qkv"),
                "qkv_bias": zeros([3 * hidden], prefix + "qkv_bias"),
                "attention_out": weight([hidden, hidden], prefix + "attention_out"),
                "attention_out_bias": zeros([hidden], prefix + "attention_out_bias"),
                "attention_norm_gamma": ones([hidden], prefix + "attention_norm_gamma"),
                "attention_norm_beta": zeros([hidden], prefix + "attention_norm_beta"),
                "ffn_in": weight([hidden, 4 * hidden], prefix + "ffn_in"),
                "ffn_in_bias": zeros([4 * hidden], prefix + "ffn_in_bias"),
                "ffn_out": weight([4 * hidden, hidden], prefix + "ffn_out"),
                "ffn_out_bias": zeros([hidden], prefix + "ffn_out_bias"),
                "ffn_norm_gamma": ones([hidden], prefix + "ffn_norm_gamma"),
                "ffn_norm_beta": zeros([hidden], prefix + "ffn_norm_beta"),
            })
        self.pooler = weight([hidden, hidden], "pooler")
        self.pooler_bias = zeros([hidden], "pooler_bias")
        weights = [self.word_embeddings, self.position_embeddings, self.type_embeddings, *self.embedding_norm]
        for block in self.blocks:
            weights += list(block.values())
        weights += [self.pooler, self.pooler_bias]
        self.trainable_variables = list(weights)
        self.variables = list(weights) + [self.do_lower_case]

    @staticmethod
    def _norm(x, gamma, beta):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + 1e-12) * gamma + beta

    def _drop(self, x, training):
        return tf.nn.dropout(x, rate=self._dropout) if training else x

    def _encode(self, inputs, training: bool):
        word_ids = tf.cast(inputs["input_word_ids"], tf.int32)
        mask = tf.cast(inputs["input_mask"], tf.float32)
        type_ids = tf.cast(inputs["input_type_ids"], tf.int32)
        length = tf.shape(word_ids)[1]
        x = (tf.gather(self.word_embeddings, word_ids) + tf.gather(self.type_embeddings, type_ids)
             + self.position_embeddings[tf.newaxis, :length])
        x = self._drop(self._norm(x, *self.embedding_norm), training)
        batch, size = tf.shape(x)[0], self._hidden // self._heads
        attention_bias = (1.0 - mask[:, tf.newaxis, tf.newaxis, :]) * -10000.0
        for block in self.blocks:
            qkv = tf.einsum("bld,de->ble", x, block["qkv"]) + block["qkv_bias"]
            qkv = tf.reshape(qkv, [batch, length, 3, self._heads, size])
            q, k, v = (tf.transpose(qkv[:, :, i], [0, 2, 1, 3]) for i in range(3))
            scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(size) + attention_bias
            context = tf.matmul(self._drop(tf.nn.softmax(scores), training), v)
            context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, length, self._hidden])
            attended = tf.einsum("bld,de->ble", context, block["attention_out"]) + block["attention_out_bias"]
            x = self._norm(x + self._drop(attended, training), block["attention_norm_gamma"], block["attention_norm_beta"])
            hidden = tf.nn.gelu(tf.einsum("bld,de->ble", x, block["ffn_in"]) + block["ffn_in_bias"])
            out = tf.einsum("ble,ed->bld", hidden, block["ffn_out"]) + block["ffn_out_bias"]
            x = self._norm(x + self._drop(out, training), block["ffn_norm_gamma"], block["ffn_norm_beta"])
        pooled = tf.tanh(tf.matmul(x[:, 0], self.pooler) + self.pooler_bias)
        return {"pooled_output": pooled, "sequence_output": x}

    @tf.function
    def __call__(self, inputs, training=False):
        if training:
            return self._encode(inputs, True)
        return self._encode(inputs, False)


class PieceCounter(tf.Module):
    """A fixed text encoder in the TF Hub BERT format: per segment, how often each word piece occurs.

    `pooled_output` [B, 2V] holds the counts of the first segment's pieces, then the second's
    (V = vocabulary size; [CLS], [SEP] and padding count too, harmlessly); `sequence_output`
    [B, L, 2V] the one-hot piece of each position, in its segment's half. It has no weights:
    whatever compares the two tweets is learnt by the model's own head, smoothly, so a test of
    fusion does not hang on a from-scratch transformer learning to attend across segments.
    """

    variables = None
    trainable_variables = None

    def __init__(self, vocab_file: str, do_lower_case: bool):
        super().__init__(name="piece_counter")
        with tf.io.gfile.GFile(vocab_file) as handle:
            self._vocab_size = sum(1 for _ in handle)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(do_lower_case, trainable=False, name="do_lower_case")
        self.trainable_variables = []
        self.variables = [self.do_lower_case]

    @tf.function
    def __call__(self, inputs, training=False):
        del training  # Nothing differs between training and inference.
        pieces = tf.one_hot(tf.cast(inputs["input_word_ids"], tf.int32), self._vocab_size)
        mask = tf.cast(inputs["input_mask"], tf.float32)[..., tf.newaxis]
        second = tf.cast(inputs["input_type_ids"], tf.float32)[..., tf.newaxis]
        sequence = tf.concat([pieces * (1.0 - second), pieces * second], axis=-1) * mask
        return {"pooled_output": tf.reduce_sum(sequence, axis=1), "sequence_output": sequence}


class BertPreprocessor(tf.Module):
    """TF Hub's BERT preprocessing interface over a local vocabulary (`text.BertTokenizer`).

    A restored `bert_pack_inputs` accepts only the `seq_length` values it was traced for, so
    `build_bert_preprocessor` traces the ones asked for.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool):
        super().__init__(name="bert_preprocess")
        import tensorflow_text as text

        self._packing_ids = packing_ids(read_vocab(vocab_file))
        # From a file path, TF Text builds the lookup table; saving copies the file to assets/.
        self._tokenizer = text.BertTokenizer(vocab_file, lower_case=do_lower_case, token_out_type=tf.int32)
        self.tokenize = tf.function(self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
        self.bert_pack_inputs = tf.function(self._pack, autograph=False)

    def _tokenize(self, strings):
        return self._tokenizer.tokenize(strings)

    def _pack(self, segments, seq_length):
        flat = [segment.merge_dims(-2, -1) for segment in segments]
        return pack_segments(flat, seq_length, self._packing_ids)


def build_bert_preprocessor(vocab_file: str, out_dir: str, do_lower_case: bool = True,
                            seq_lengths: tuple[int, ...] = (128,)) -> str:
    """Writes the Hub-format preprocessing SavedModel to out_dir; returns out_dir."""
    module = BertPreprocessor(vocab_file, do_lower_case)
    pieces = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)
    for seq_length in seq_lengths:
        module.bert_pack_inputs.get_concrete_function([pieces, pieces], seq_length=seq_length)
    tf.saved_model.save(module, out_dir)
    return out_dir


def build_tiny_bert(vocab_file: str, out_dir: str, do_lower_case: bool = True, **sizes) -> str:
    """Writes the tiny BERT SavedModel to out_dir; returns out_dir."""
    return _save_encoder(TinyBert(vocab_file, do_lower_case, **sizes), out_dir)


def build_piece_counter(vocab_file: str, out_dir: str, do_lower_case: bool = True) -> str:
    """Writes the `PieceCounter` SavedModel to out_dir; returns out_dir."""
    return _save_encoder(PieceCounter(vocab_file, do_lower_case), out_dir)


def _save_encoder(module: tf.Module, out_dir: str) -> str:
    spec = {key: tf.TensorSpec([None, None], tf.int32) for key in ("input_word_ids", "input_mask", "input_type_ids")}
    # Trace both modes, as TF Hub's reusable SavedModels do.
    for training in (False, True):
        module.__call__.get_concrete_function(spec, training=training)
    tf.saved_model.save(module, out_dir)
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.local_encoders", description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", required=True, help="vocab.txt the shards were tokenized with")
    parser.add_argument("--out", required=True, help="folder to write tiny_bert/ into")
    parser.add_argument("--cased", action="store_true", help="mark the encoder as cased")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--preprocessor", type=int, nargs="*", metavar="SEQ_LENGTH",
                        help="also write bert_preprocess/, packing to these sequence lengths (default 128)")
    args = parser.parse_args(argv)
    path = build_tiny_bert(args.vocab, os.path.join(args.out, "tiny_bert"), not args.cased,
                           hidden=args.hidden, layers=args.layers)
    print(f"wrote {path}")
    if args.preprocessor is not None:
        path = build_bert_preprocessor(args.vocab, os.path.join(args.out, "bert_preprocess"), not args.cased,
                                       tuple(args.preprocessor) or (128,))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
