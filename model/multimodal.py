"""The entailment model: two images and a text pair → probabilities of the three labels.

Baseline (keras.io "Multimodal entailment"): one image encoder shared by both images, a BERT
text encoder on the packed pair, each projected to `projection_dims` with one residual GELU
block and dropout, vision and text projections concatenated, softmax over `features.LABELS`.
Options: text-only / image-only ablations (`mode`), each text encoded alone (`text_pairing`),
cross-attention fusion, modality dropout, a linear head (`head`).
Inputs are built from `features.model_input_specs`, so the model cannot disagree with the
shards about names, dtypes or shapes.
"""

from __future__ import annotations

import keras

from model import encoders
from model.config import ModelConfig
from pipeline import features


def project(embeddings, projection_dims: int, dropout_rate: float, name: str):
    """Dense projection plus one residual GELU block with dropout and layer norm."""
    projected = keras.layers.Dense(projection_dims, name=f"{name}_projection")(embeddings)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu")(projected)
    x = keras.layers.Dense(projection_dims, name=f"{name}_dense")(x)
    x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    x = keras.layers.Add(name=f"{name}_residual")([projected, x])
    return keras.layers.LayerNormalization(name=f"{name}_norm")(x)


@keras.saving.register_keras_serializable(package="multimodal_entailment")
class ModalityDropout(keras.layers.Layer):
    """In training, blanks one modality of an example: vision with chance `rate`, else text
    with chance `rate` (never both), so the model cannot lean on one side alone."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        vision, text = inputs
        if not training or self.rate == 0:
            return vision, text
        draw = keras.random.uniform((keras.ops.shape(vision)[0], 1), seed=self.seed_generator)
        keep_vision = keras.ops.cast(draw >= self.rate, vision.dtype)
        keep_text = keras.ops.cast((draw < self.rate) | (draw >= 2 * self.rate), text.dtype)
        return vision * keep_vision, text * keep_text

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def _cross_attention(image_features, text_sequence, input_mask, config: ModelConfig):
    """Text tokens attend to the two images and the images attend to the text tokens."""
    dims, heads = config.projection_dims, config.attention_heads
    image_tokens = keras.layers.Dense(dims, name="image_tokens")(keras.ops.stack(image_features, axis=1))  # [B, 2, D]
    text_tokens = keras.layers.Dense(dims, name="text_tokens")(text_sequence)  # [B, L, D]
    mask = keras.ops.cast(input_mask, "bool")
    text_attends = keras.layers.MultiHeadAttention(heads, dims // heads, name="text_to_images")(
        text_tokens, image_tokens
    )
    text_tokens = keras.layers.LayerNormalization(name="text_attended_norm")(text_tokens + text_attends)
    text_pooled = encoders.masked_mean(text_tokens, input_mask)
    image_mask = keras.ops.repeat(keras.ops.expand_dims(mask, 1), 2, axis=1)  # [B, 2, L]
    images_attend = keras.layers.MultiHeadAttention(heads, dims // heads, name="images_to_text")(
        image_tokens, text_tokens, attention_mask=image_mask
    )
    image_tokens = keras.layers.LayerNormalization(name="images_attended_norm")(image_tokens + images_attend)
    vision = keras.layers.Flatten(name="images_in_order")(image_tokens)  # Keeps image_1 and image_2 apart.
    return project(vision, dims, config.dropout_rate, "vision"), project(text_pooled, dims, config.dropout_rate, "text")


def create_encoders(config: ModelConfig) -> keras.Model:
    """Model inputs → the encoders' outputs, the head's inputs (`HEAD_KEYS` that the mode uses).

    `image_1_features` and `image_2_features` come from one image encoder shared by both
    images; `text_features` is the pooled text vector of the pair (`joint`), or
    `text_1_features` and `text_2_features` those of each text (`separate`); for
    cross-attention fusion, `text_sequence` with the `input_mask` that says which of its
    positions are real tokens.
    """
    config.check()
    specs = features.model_input_specs(config.shape)
    inputs = {key: keras.Input(spec.shape, dtype=spec.dtype.name, name=key) for key, spec in specs.items()}
    outputs = {}
    if config.uses_images:
        image_encoder = encoders.image_encoder(
            config.image_encoder, config.image_size, config.image_weights, config.train_image_encoder
        )
        for key in features.IMAGE_KEYS:
            outputs[f"{key}_features"] = image_encoder(keras.ops.cast(inputs[key], "float32"))
    if config.uses_text:
        text_encoder = encoders.HubTextEncoder(
            config.text_encoder, trainable=config.train_text_encoder, pooling=config.text_pooling,
            return_sequence=config.fusion == "cross-attention", name="text_encoder",
        )
        if config.text_pairing == "separate":
            each = encoders.EachText(text_encoder, name="each_text")({key: inputs[key] for key in config.shape.token_keys})
            outputs["text_1_features"], outputs["text_2_features"] = each
        elif config.fusion == "cross-attention":
            _, outputs["text_sequence"] = text_encoder({key: inputs[key] for key in features.TOKEN_KEYS})
            outputs["input_mask"] = keras.ops.cast(inputs["input_mask"], "float32")
        else:
            outputs["text_features"] = text_encoder({key: inputs[key] for key in features.TOKEN_KEYS})
    # Ablations keep every input (unused ones included), so the same reader and export serve them.
    return keras.Model(inputs, {key: keras.ops.cast(value, "float32") for key, value in outputs.items()}, name="encoders")


def text_pair_features(inputs: dict):
    """The text side of the head's input: the pair's pooled vector (`joint`), or for `separate`
    the two texts' vectors compared, [u, v, |u - v|, u * v] (as sentence-pair classifiers on
    sentence embeddings do)."""
    if "text_features" in inputs:
        return inputs["text_features"]
    u, v = inputs["text_1_features"], inputs["text_2_features"]
    return keras.layers.Concatenate(name="text_pair")([u, v, keras.ops.abs(u - v), u * v])


def create_head(config: ModelConfig, feature_shapes: dict[str, tuple]) -> keras.Model:
    """The encoders' outputs → label probabilities: projections (or none, for `--head linear`),
    fusion, classifier.

    Everything after the encoders is here, modality dropout included, so training the head on
    stored encoder outputs (`trainer/embedding_cache.py`) is training the whole model with
    frozen encoders.
    """
    inputs = {key: keras.Input(shape, dtype="float32", name=key) for key, shape in feature_shapes.items()}
    image_features = [inputs[f"{key}_features"] for key in features.IMAGE_KEYS] if config.uses_images else []
    if config.fusion == "cross-attention":
        vision, text = _cross_attention(image_features, inputs["text_sequence"], inputs["input_mask"], config)
    else:
        vision = keras.layers.Concatenate(name="both_images")(image_features) if image_features else None
        text = text_pair_features(inputs) if config.uses_text else None
        if config.head == "projection":
            vision = None if vision is None else project(vision, config.projection_dims, config.dropout_rate, "vision")
            text = None if text is None else project(text, config.projection_dims, config.dropout_rate, "text")
    if vision is not None and text is not None:
        if config.modality_dropout:
            vision, text = ModalityDropout(config.modality_dropout, name="modality_dropout")([vision, text])
        fused = keras.layers.Concatenate(name="fusion")([vision, text])
    else:
        fused = vision if vision is not None else text
    outputs = keras.layers.Dense(len(features.LABELS), activation="softmax", dtype="float32", name="probabilities")(fused)
    return keras.Model(inputs, outputs, name="head")


def create_model(config: ModelConfig) -> keras.Model:
    """The whole model: model inputs → `encoders` → `head` → probabilities [B, 3]."""
    encoder_part = create_encoders(config)
    head = create_head(config, {key: tuple(tensor.shape[1:]) for key, tensor in encoder_part.output.items()})
    inputs = {key: keras.Input(tensor.shape[1:], dtype=tensor.dtype, name=key) for key, tensor in encoder_part.input.items()}
    return keras.Model(inputs, head(encoder_part(inputs)), name=f"entailment_{config.mode}_{config.fusion}")


def encoders_of(model: keras.Model) -> keras.Model:
    return model.get_layer("encoders")


def head_of(model: keras.Model) -> keras.Model:
    return model.get_layer("head")
