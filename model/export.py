"""The exported SavedModel: raw texts and encoded image bytes in, label probabilities out.

The serving signature runs `pipeline.preprocess` (`images`, `bert_inputs`), the very functions
the Beam job ran before writing the shards, so a pair scored online is preprocessed exactly
like a training example (no training/serving skew). The tokenizer is rebuilt from the text encoder's own vocabulary
and casing, which training already checked against the shards' fingerprint.

    signature `serving_default`(text_1 [B] string, text_2 [B] string,
                                image_1 [B] string, image_2 [B] string)
      → probabilities float32 [B, 3], label string [B], valid bool [B], error string [B],
        reason string [B]

Images are encoded bytes (JPEG, PNG, GIF, BMP, WebP), exactly as read from a file. A pair the
shards job would have rejected does not fail the request: its row has `valid` false,
probabilities all 0, label "", `reason` the shards job's reason code (`empty_text`,
`bad_encoding`, `empty_image`, `image_too_large`, `undecodable_image`) and `error` naming the
input and the cause, e.g. "image_2: the image data is corrupt or truncated (the codec refused
it)". The other rows are scored as usual, and an empty request gets empty outputs.
"""

from __future__ import annotations

import functools

from pipeline import cli, features

tf = cli.import_tensorflow()  # Quiet: `python -m model.export --ops` is a command line too.
from pipeline.features import DEFAULT_MAX_PIXELS
from pipeline.preprocess import bert_inputs, images, texts


class ServingModule(tf.Module):
    """Wraps a trained Keras model with the Beam job's preprocessing."""

    def __init__(self, model, tokenizer: bert_inputs.PairTokenizer, image_size: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        super().__init__(name="multimodal_entailment_serving")
        # The layers are tracked (their variables and any resources they hold are saved), the
        # model object is not: a compiled model also tracks its optimizer, and Adam's two slots
        # per weight would triple the export of a fine-tuned model for nothing served.
        self.model_layers = list(model.layers)
        self._forward = functools.partial(model.__call__, training=False)
        self.tokenizer = tokenizer
        self._image_size = image_size
        self._max_pixels = max_pixels
        self._labels = tf.constant(features.LABELS)

    def checked_inputs(self, text_1, text_2, image_1, image_2):
        """Raw pair batch → (the model's input dict, per-input (reason, message) string tensors
        [B, 4] in the order of `features.RAW_KEYS`; "" where the input is usable)."""
        reasons, messages, valid_texts = [], [], []
        for text in (text_1, text_2):
            valid_text, status = texts.check_texts(text)
            valid_texts.append(valid_text)
            reasons.append(tf.gather(texts.STATUS_REASONS, status))
            messages.append(tf.gather(texts.STATUS_MESSAGES, status))
        inputs = dict(self.tokenizer(*valid_texts))
        for key, data in zip(features.IMAGE_KEYS, (image_1, image_2)):
            inputs[key], status = images.decode_images(data, self._image_size, self._max_pixels)
            reasons.append(tf.gather(images.STATUS_REASONS, status))
            messages.append(tf.gather(images.STATUS_MESSAGES, status))
        return inputs, (tf.stack(reasons, axis=1), tf.stack(messages, axis=1))

    def model_inputs(self, text_1, text_2, image_1, image_2) -> dict[str, tf.Tensor]:
        """Raw pair batch → the model's input dict (what the Beam job computes, before storage)."""
        return self.checked_inputs(text_1, text_2, image_1, image_2)[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=key) for key in features.RAW_KEYS])
    def serve(self, text_1, text_2, image_1, image_2):
        inputs, (reasons, messages) = self.checked_inputs(text_1, text_2, image_1, image_2)
        refused = tf.not_equal(reasons, "")
        valid = tf.logical_not(tf.reduce_any(refused, axis=1))
        # The model runs only on a non-empty batch: some kernels (oneDNN's convolution) refuse 0 rows.
        scores = tf.cond(tf.size(text_1) > 0, lambda: tf.cast(self._forward(inputs), tf.float32),
                         lambda: tf.zeros([0, len(features.LABELS)], tf.float32))
        probabilities = tf.where(valid[:, None], scores, 0.0)
        label = tf.where(valid, tf.gather(self._labels, tf.argmax(probabilities, axis=-1)), "")
        first = tf.argmax(tf.cast(refused, tf.int32), axis=1, output_type=tf.int32)
        reason = tf.where(valid, "", tf.gather(reasons, first, batch_dims=1))
        error = tf.where(valid, "", tf.strings.join([
            tf.gather(tf.constant(features.RAW_KEYS), first), ": ", tf.gather(messages, first, batch_dims=1)]))
        return {"probabilities": probabilities, "label": label, "valid": valid, "error": error, "reason": reason}


def tokenizer_for(text_encoder: str, shape: features.Shape, ops: str = "fast") -> bert_inputs.PairTokenizer:
    """The tokenizer matching the text encoder's vocabulary asset and casing, and the shards'
    sequence length and text pairing."""
    vocab, lowercase = bert_inputs.encoder_vocabulary(text_encoder)
    return bert_inputs.PairTokenizer(vocab, lowercase, shape.seq_length, ops, shape.text_pairing)


def export(model, path: str, text_encoder: str, shape: features.Shape, max_pixels: int = DEFAULT_MAX_PIXELS,
           tokenizer_ops: str = "fast") -> str:
    """Writes the serving SavedModel to `path` and returns it.

    `shape` and `max_pixels` should be the shards' (`metadata.json`), so that serving
    preprocesses as the Beam job did and refuses exactly the images it refused. `tokenizer_ops`
    picks the tokenizer's TF Text ops (`bert_inputs.PairTokenizer`): "classic" for model
    servers that lack the fast ones.
    """
    module = ServingModule(model, tokenizer_for(text_encoder, shape, tokenizer_ops), shape.image_size, max_pixels)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def ops_outside_tensorflow(path: str) -> list[str]:
    """The op types a SavedModel's graph uses that core TensorFlow does not register.

    These are what a model server must link besides TensorFlow (TF Serving, Vertex AI's
    prebuilt containers). Run it in a process that has not imported `tensorflow_text`, which
    registers its ops on import (`python -m model.export --ops PATH` does).
    """
    import sys

    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    if "tensorflow_text" in sys.modules:
        raise RuntimeError("tensorflow_text is imported: its ops would count as TensorFlow's")
    saved = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(f"{path}/saved_model.pb", "rb") as handle:
        saved.ParseFromString(handle.read())
    graph = saved.meta_graphs[0].graph_def
    nodes = list(graph.node) + [node for function in graph.library.function for node in function.node_def]
    return sorted({node.op for node in nodes} - {f.signature.name for f in graph.library.function}
                  - {op for op in {node.op for node in nodes} if op_def_registry.get(op) is not None})


def load(path: str):
    """The serving function of an exported model (needs `tensorflow_text` registered)."""
    import tensorflow_text  # noqa: F401  Registers the tokenizer's ops before loading.

    return tf.saved_model.load(path).signatures["serving_default"]


if __name__ == "__main__":
    parser = cli.Parser(prog="python -m model.export", description="Inspect an exported serving model.")
    parser.add_argument("--ops", metavar="PATH", required=True,
                        help="print the op types PATH's graph needs beyond core TensorFlow, one per line")
    args = cli.parse(parser, None)
    if isinstance(args, int):
        raise SystemExit(args)
    print("\n".join(ops_outside_tensorflow(args.ops)))
