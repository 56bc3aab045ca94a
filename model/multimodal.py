"""The entailment model: two images and a text pair → probabilities of the three labels.

Baseline (keras.io "Multimodal entailment"): one image encoder shared by both images, a BERT
text encoder on the packed pair, each projected to `projection_dims` with one residual GELU
block and dropout, vision and text projections concatenated, softmax over `features.LABELS`.
Inputs are built from `features.model_input_specs`, so the model cannot disagree with the
shards about names, dtypes or shapes.
"""

from __future__ import annotations

import dataclasses

import keras

from model import encoders
from pipeline import features


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What the model is made of (defaults: the published baseline).

    Attributes:
      text_encoder: TF Hub handle URL or local TF Hub-format BERT SavedModel directory.
      image_encoder: `resnet50v2` (baseline) or `tiny` (tests and the offline demo).
      image_weights: `imagenet`, `none`, or a local weights file for the image encoder.
      train_text_encoder: Fine-tune BERT (baseline: frozen).
      train_image_encoder: Fine-tune the image encoder (baseline: frozen).
      projection_dims: Width of each modality's projection.
      dropout_rate: Dropout inside the projection blocks.
      image_size: Side of the square input images (must match the shards).
      seq_length: Length of the BERT inputs (must match the shards).
    """

    text_encoder: str = "https://tfhub.dev/tensorflow/small_bert/bert_en_uncased_L-2_H-256_A-4/1"
    image_encoder: str = "resnet50v2"
    image_weights: str = "imagenet"
    train_text_encoder: bool = False
    train_image_encoder: bool = False
    projection_dims: int = 256
    dropout_rate: float = 0.1
    image_size: int = 128
    seq_length: int = 128

    @property
    def shape(self) -> features.Shape:
        return features.Shape(self.image_size, self.seq_length)


def project(embeddings, projection_dims: int, dropout_rate: float, name: str):
    """Dense projection plus one residual GELU block with dropout and layer norm."""
    projected = keras.layers.Dense(projection_dims, name=f"{name}_projection")(embeddings)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu")(projected)
    x = keras.layers.Dense(projection_dims, name=f"{name}_dense")(x)
    x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    x = keras.layers.Add(name=f"{name}_residual")([projected, x])
    return keras.layers.LayerNormalization(name=f"{name}_norm")(x)


def create_model(config: ModelConfig) -> keras.Model:
    specs = features.model_input_specs(config.shape)
    inputs = {key: keras.Input(spec.shape, dtype=spec.dtype.name, name=key) for key, spec in specs.items()}
    image_encoder = encoders.image_encoder(
        config.image_encoder, config.image_size, config.image_weights, config.train_image_encoder
    )
    vision = keras.layers.Concatenate(name="both_images")(
        [image_encoder(keras.ops.cast(inputs[key], "float32")) for key in features.IMAGE_KEYS]
    )
    vision = project(vision, config.projection_dims, config.dropout_rate, "vision")
    text_encoder = encoders.HubTextEncoder(config.text_encoder, trainable=config.train_text_encoder, name="text_encoder")
    text = text_encoder({key: inputs[key] for key in features.TOKEN_KEYS})
    text = project(text, config.projection_dims, config.dropout_rate, "text")
    fused = keras.layers.Concatenate(name="fusion")([vision, text])
    outputs = keras.layers.Dense(len(features.LABELS), activation="softmax", dtype="float32", name="probabilities")(fused)
    return keras.Model(inputs, outputs, name="multimodal_entailment")
