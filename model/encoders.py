"""Text and image encoders as Keras 3 layers.

`HubTextEncoder` loads a TF Hub BERT encoder (handle URL, `gs://` path or local SavedModel
directory) with `hub.load` and calls it directly. `hub.KerasLayer` is a tf-keras (Keras 2)
object that Keras 3 models reject, so this layer instead registers each restored variable as a
Keras variable wrapping the very same `tf.Variable`: the optimizer updates the SavedModel's own
weights when the encoder is trainable, and `training` reaches the encoder's dropout.

`pooling` picks the text vector: `cls` is TF Hub BERT's `pooled_output`, tanh(dense([CLS])),
which the baseline uses; `mean` is the mean of `sequence_output` over the real tokens (mask 1),
the embedding that sentence-embedding checkpoints such as all-MiniLM-L6-v2 were trained for
(their pooled_output is about orthogonal to it).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from model.config import TEXT_POOLINGS
from pipeline import features
from pipeline.preprocess.bert_inputs import encoder_vocabulary, vocab_fingerprint


def vocab_fingerprint_of_encoder(handle: str) -> str:
    """Fingerprint of the encoder's own vocabulary and casing (what the shards must carry)."""
    return vocab_fingerprint(*encoder_vocabulary(handle))


def masked_mean(sequence, mask):
    """Mean over the positions where mask is 1: [B, L, H], [B, L] → [B, H] (0 for an empty mask)."""
    weights = keras.ops.expand_dims(keras.ops.cast(mask, sequence.dtype), -1)
    return keras.ops.sum(sequence * weights, axis=1) / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)


class HubTextEncoder(keras.layers.Layer):
    """BERT pair inputs → pooled text vector [B, H] (and, with `return_sequence`, the sequence
    output [B, L, H]) from a TF Hub-format encoder SavedModel; `pooling` is `cls` or `mean`."""

    def __init__(self, handle: str, trainable: bool = False, return_sequence: bool = False,
                 pooling: str = "cls", **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        import tensorflow_hub as hub

        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"text pooling must be one of {TEXT_POOLINGS}, not {pooling!r}")
        self.handle = handle
        self.return_sequence = return_sequence
        self.pooling = pooling
        self._encoder = hub.load(handle)
        for variable in self._encoder.variables:
            if variable.dtype == tf.bool:
                continue  # do_lower_case is a flag, not a weight.
            self._track_variable(
                keras.Variable(
                    initializer=variable,
                    trainable=variable.trainable,
                    dtype=variable.dtype,
                    shape=variable.shape,
                    name=variable.name.split(":")[0].replace("/", "_"),
                )
            )
        self.built = True

    def call(self, inputs, training=False):
        outputs = self._encoder(
            {key: tf.cast(inputs[key], tf.int32) for key in features.TOKEN_KEYS},
            # A frozen encoder runs in inference mode (no dropout), as hub.KerasLayer does; the
            # SavedModel holds one traced function per mode.
            training=bool(training) and self.trainable,
        )
        if self.pooling == "mean":
            pooled = masked_mean(outputs["sequence_output"], inputs["input_mask"])
        else:
            pooled = outputs["pooled_output"]
        if self.return_sequence:
            return pooled, outputs["sequence_output"]
        return pooled

    def compute_output_spec(self, inputs, training=False):
        # Read the width from the traced functions rather than running the encoder: a probe
        # call would fail in a distribution strategy's cross-replica context.
        widths = {f.structured_outputs["pooled_output"].shape[-1] for f in self._encoder.__call__.concrete_functions}
        if len(widths) != 1 or None in widths:
            raise ValueError(f"cannot tell the pooled_output width of {self.handle}: {widths}")
        batch, length = inputs["input_word_ids"].shape[:2]
        width = widths.pop()
        pooled = keras.KerasTensor((batch, width), dtype="float32")
        if self.return_sequence:
            return pooled, keras.KerasTensor((batch, length, width), dtype="float32")
        return pooled

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "return_sequence": self.return_sequence,
                "pooling": self.pooling}


class EachText(keras.layers.Layer):
    """Both texts of a `separate` pair through one text encoder, in one call: the two batches
    are stacked, encoded together (one pass over the encoder's weights, as the embedding cache
    wants it) and split back into the two pooled vectors [B, H] each."""

    def __init__(self, encoder: HubTextEncoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def call(self, inputs, training=False):
        stacked = {key: tf.concat([inputs[f"{text}_{key}"] for text in features.TEXT_KEYS], 0)
                   for key in features.SINGLE_TEXT_KEYS}
        stacked["input_type_ids"] = stacked["input_mask"] * 0  # One segment: all 0.
        pooled = self.encoder(stacked, training=training)
        return tuple(tf.split(pooled, 2, axis=0))

    def compute_output_spec(self, inputs, training=False):
        spec = self.encoder.compute_output_spec({key: inputs[f"text_1_{key}"] for key in features.SINGLE_TEXT_KEYS})
        return spec, spec


def image_encoder(name: str, image_size: int, weights: str, trainable: bool) -> keras.Model:
    """uint8-range RGB [S, S, 3] → pooled features, with the backbone's own preprocessing.

    `name` is `resnet50v2` (the baseline) or `tiny` (a small CNN for tests and the offline demo).
    `weights`: `imagenet` (downloaded by Keras), `none`, or a local `.weights.h5`/`.h5` file, so
    air-gapped clusters can load ImageNet weights copied in beforehand.
    """
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    if name == "resnet50v2":
        x = keras.applications.resnet_v2.preprocess_input(inputs)  # 0..255 → -1..1.
        backbone = keras.applications.ResNet50V2(
            include_top=False,
            weights="imagenet" if weights == "imagenet" else None,
            input_shape=(image_size, image_size, 3),
            pooling="avg",
        )
        if weights not in ("imagenet", "none"):
            if not tf.io.gfile.exists(weights):
                raise FileNotFoundError(f"--image-weights {weights} does not exist")
            backbone.load_weights(weights)
        backbone.trainable = trainable
        outputs = backbone(x, training=False if not trainable else None)
    elif name == "tiny":
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
        for filters in (16, 32, 64):
            x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        outputs = keras.layers.GlobalAveragePooling2D()(x)
    else:
        raise ValueError(f"unknown image encoder {name!r}; use resnet50v2 or tiny")
    model = keras.Model(inputs, outputs, name=f"image_encoder_{name}")
    model.trainable = trainable
    return model
