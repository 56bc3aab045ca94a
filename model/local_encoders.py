"""Small encoders built locally in the formats the trainer loads, for tests and the offline demo.

`python -m model.local_encoders --vocab data/demo/vocab.txt --out data/encoders` writes
`tiny_bert/`, a TF Hub-format BERT SavedModel: a random-initialised `model.bert_encoder.BertEncoder`
with the same interface as `tensorflow/small_bert/...` on TF Hub, i.e. called as
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

import os
import sys

from pipeline import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = cli.import_tensorflow()  # Quiet: this module is a command line too.

from model.bert_encoder import BertEncoder, BertShape, random_weights, save_encoder  # noqa: E402
from pipeline.preprocess.bert_inputs import pack_segments, packing_ids, read_vocab  # noqa: E402


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
    for seq_length in seq_lengths:  # One text, or a pair, as TF Hub's model packs either.
        for segments in ([pieces], [pieces, pieces]):
            module.bert_pack_inputs.get_concrete_function(segments, seq_length=seq_length)
    tf.saved_model.save(module, out_dir)
    return out_dir


def build_tiny_bert(vocab_file: str, out_dir: str, do_lower_case: bool = True, hidden: int = 32,
                    layers: int = 2, heads: int = 2, seed: int = 0) -> str:
    """Writes a random-initialised `BertEncoder` (feed-forward 4 × hidden) to out_dir; returns out_dir."""
    shape = BertShape(hidden=hidden, layers=layers, heads=heads, intermediate=4 * hidden)
    with tf.io.gfile.GFile(vocab_file) as handle:
        vocab_size = sum(1 for _ in handle)
    encoder = BertEncoder(vocab_file, do_lower_case, shape, random_weights(vocab_size, shape, seed), name="tiny_bert")
    return save_encoder(encoder, out_dir)


def build_piece_counter(vocab_file: str, out_dir: str, do_lower_case: bool = True) -> str:
    """Writes the `PieceCounter` SavedModel to out_dir; returns out_dir."""
    return save_encoder(PieceCounter(vocab_file, do_lower_case), out_dir)


def main(argv=None) -> int:
    parser = cli.Parser(prog="python -m model.local_encoders", description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", required=True, help="vocab.txt the shards were tokenized with")
    parser.add_argument("--out", required=True, help="folder to write tiny_bert/ into")
    parser.add_argument("--cased", action="store_true", help="mark the encoder as cased")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--preprocessor", type=int, nargs="*", metavar="SEQ_LENGTH",
                        help="also write bert_preprocess/, packing to these sequence lengths (default 128)")
    args = cli.parse(parser, argv)
    if isinstance(args, int):
        return args
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
