"""What the model is made of, as one frozen dataclass: the flags of `python -m trainer.task`.

No Keras or TensorFlow here, so the command line answers `--help` and refuses a bad flag
without starting them. Defaults reproduce the published baseline (keras.io "Multimodal
entailment"): TF Hub small BERT and ResNet50V2 with ImageNet weights, both frozen, projections
to 256 with one residual GELU block, dropout 0.1, concatenation.
"""

from __future__ import annotations

import dataclasses

from pipeline import features
from pipeline.features import TEXT_POOLINGS

MODES = ("multimodal", "text", "image")
FUSIONS = ("concat", "cross-attention")
HEADS = ("projection", "linear")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What the model is made of (defaults: the published baseline).

    Attributes:
      text_encoder: TF Hub handle URL or local TF Hub-format BERT SavedModel directory.
      image_encoder: `resnet50v2` (baseline) or `tiny` (tests and the offline demo).
      image_weights: `imagenet`, `none`, or a local weights file for the image encoder.
      text_pooling: `cls` (TF Hub BERT's pooled_output, the baseline) or `mean` (masked mean of the sequence output, for sentence-embedding checkpoints).
      text_pairing: `joint` (the pair encoded as one sequence, the baseline) or `separate` (each text encoded alone, the pair compared as [u, v, |u-v|, u*v]); must match the shards.
      train_text_encoder: Fine-tune BERT (baseline: frozen).
      train_image_encoder: Fine-tune the image encoder (baseline: frozen).
      mode: `multimodal`, or the `text` / `image` single-modality ablation.
      fusion: `concat` (baseline) or `cross-attention` between text tokens and the two images.
      head: `projection` (each modality projected with one residual GELU block, the baseline) or `linear` (a softmax straight on the encoders' features: a linear probe).
      modality_dropout: Training-time chance of blanking the vision side, and (separately) the text side, of an example.
      projection_dims: Width of each modality's projection.
      dropout_rate: Dropout inside the projection blocks.
      attention_heads: Heads of the cross-attention fusion.
      image_size: Side of the square input images (must match the shards).
      seq_length: Length of the BERT inputs (must match the shards).
    """

    text_encoder: str = "https://tfhub.dev/tensorflow/small_bert/bert_en_uncased_L-2_H-256_A-4/1"
    image_encoder: str = "resnet50v2"
    image_weights: str = "imagenet"
    text_pooling: str = "cls"
    text_pairing: str = "joint"
    train_text_encoder: bool = False
    train_image_encoder: bool = False
    mode: str = "multimodal"
    fusion: str = "concat"
    head: str = "projection"
    modality_dropout: float = 0.0
    projection_dims: int = 256
    dropout_rate: float = 0.1
    attention_heads: int = 4
    image_size: int = features.DEFAULT_IMAGE_SIZE
    seq_length: int = features.DEFAULT_SEQ_LENGTH

    @property
    def shape(self) -> features.Shape:
        return features.Shape(self.image_size, self.seq_length, self.text_pairing)

    @property
    def uses_images(self) -> bool:
        return self.mode in ("multimodal", "image")

    @property
    def uses_text(self) -> bool:
        return self.mode in ("multimodal", "text")

    def check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {MODES}, not {self.mode!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"--fusion must be one of {FUSIONS}, not {self.fusion!r}")
        # None: not chosen yet (the trainer takes the shards' own, `trainer.config.FROM_SHARDS`).
        if self.text_pooling not in (None, *TEXT_POOLINGS):
            raise ValueError(f"--text-pooling must be one of {TEXT_POOLINGS}, not {self.text_pooling!r}")
        if self.fusion == "cross-attention" and self.text_pooling not in (None, "cls"):
            raise ValueError("--text-pooling applies to --fusion concat; cross-attention pools the attended tokens itself")
        if self.fusion == "cross-attention" and self.mode != "multimodal":
            raise ValueError("--fusion cross-attention needs --mode multimodal")
        if self.text_pairing not in (None, *features.TEXT_PAIRINGS):
            raise ValueError(f"--text-pairing must be one of {features.TEXT_PAIRINGS}, not {self.text_pairing!r}")
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {HEADS}, not {self.head!r}")
        if self.fusion == "cross-attention" and (self.text_pairing == "separate" or self.head == "linear"):
            raise ValueError("--fusion cross-attention needs --text-pairing joint and --head projection")
        if not 0.0 <= self.modality_dropout < 0.5:
            raise ValueError("--modality-dropout must be in [0, 0.5)")
