"""How to train, as one frozen dataclass, and the trainer's flags from it and `ModelConfig`.

No TensorFlow here: `python -m trainer.task --help` and a bad flag answer at once. Every field
of `TrainConfig` and `ModelConfig` is one flag, named after it, with its docstring line as
help (`pipeline.cli.add_dataclass_flags`), so a flag and its setting cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses

from model.config import ModelConfig
from model.losses import LOSSES
from pipeline import cli
from pipeline.preprocess import TOKENIZER_OPS
from trainer.distribution import STRATEGIES

# `--select-by` choices (`trainer.callbacks.BestEpoch` keeps the best epoch's weights).
SELECTIONS = ("val_loss", "val_macro_f1", "last")

EMBEDDING_CACHE_SETTINGS = ("auto", "on", "off")
# Model flags whose default is the shards' own (metadata.json), read once the data is found;
# shards from before a setting was recorded get the model's own default.
FROM_SHARDS = ("image_size", "seq_length", "text_pairing", "text_pooling")
SCALING_HELP = """\
On a machine with several GPUs, --strategy auto picks MirroredStrategy over all of them, and
on a Vertex AI job with several workers (TF_CONFIG) MultiWorkerMirroredStrategy; add
--mixed-precision on GPUs. --batch-size stays the global batch, split across all replicas,
and --learning-rate is left as given: if you raise the batch with the replica count, choose
the learning rate yourself.
"""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: Adam, batch 32 (the published baseline's), with a recipe chosen from
    cross-validated measurements on small imbalanced data (docs/training.md): class-weighted
    cross-entropy, 50 epochs, the epoch with the lowest validation loss kept.

    Attributes:
      data_dir: The `--out` folder of `make shards` (local or gs://).
      job_dir: Where config, metrics, logs, checkpoints and the model go (default: out/job, or on Vertex AI the base output directory).
      epochs: Passes over the training split.
      batch_size: Global batch size, divided across replicas.
      learning_rate: Adam's learning rate.
      loss: `ce`, `weighted-ce` (class weights from metadata.json) or `focal`.
      focal_gamma: Focusing parameter of the focal loss.
      select_by: Which epoch's weights are evaluated and exported: the best by `val_macro_f1` or `val_loss` on the validation split, or the `last`.
      backup_every_steps: Preemption backup interval in steps; 0 backs up once per epoch.
      strategy: `auto`, `default`, `mirrored` or `multiworker`.
      mixed_precision: Compute in float16 with float32 weights and softmax (GPUs).
      seed: Seed for shuffling and initialisation.
      embedding_cache: `auto` (on when every encoder the model uses is frozen), `on` or `off`: run the frozen encoders once and train the head on their stored outputs.
      embedding_cache_dir: Where the cache lives (default: the job dir's embedding_cache/); runs with the same shards and encoders share it.
      serving_tokenizer: The export's tokenizer ops: `fast` (TF Text's fast BERT ops, as the shards job) or `classic` (the same tokens through older ops, for model servers without the fast ones; see docs/scoring-and-serving.md).
    """

    data_dir: str = "data/shards"
    job_dir: str = ""
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 1e-3
    loss: str = "weighted-ce"
    focal_gamma: float = 2.0
    select_by: str = "val_loss"
    backup_every_steps: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False
    seed: int = 0
    embedding_cache: str = "auto"
    embedding_cache_dir: str = ""
    serving_tokenizer: str = "fast"

    def check(self) -> None:
        choices = (("loss", LOSSES), ("strategy", STRATEGIES), ("embedding_cache", EMBEDDING_CACHE_SETTINGS),
                   ("serving_tokenizer", TOKENIZER_OPS), ("select_by", SELECTIONS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, name)!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("--epochs and --batch-size must be at least 1")
        if self.backup_every_steps < 0:
            raise ValueError("--backup-every-steps must be 0 (once per epoch) or more")


def define_flags() -> argparse.ArgumentParser:
    parser = cli.Parser(prog="python -m trainer.task", description="Train, evaluate and export the entailment model "
                        "from Beam shards.", epilog=SCALING_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_dataclass_flags(parser, TrainConfig)
    cli.add_dataclass_flags(parser, ModelConfig, {name: "the shards' metadata.json" for name in FROM_SHARDS})
    return parser


def parse_configs(argv: list[str] | None = None) -> tuple[TrainConfig, ModelConfig]:
    """The two configs from the command line; `UsageError` for a bad flag or value.

    The settings in `FROM_SHARDS` stay None until the trainer reads them from metadata.json.
    """
    return configs_from_args(define_flags().parse_args(argv))


def configs_from_args(args: argparse.Namespace) -> tuple[TrainConfig, ModelConfig]:
    """The two configs from parsed flags (`define_flags`, or a parser that extends it); checked."""
    train, model = cli.dataclass_from_args(TrainConfig, args), cli.dataclass_from_args(ModelConfig, args)
    try:
        train.check()
        model.check()
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    return train, model


def with_shard_defaults(model: ModelConfig, metadata: dict) -> ModelConfig:
    """`model` with the settings the user left to the shards taken from their metadata.json
    (cross-attention pools the attended tokens itself, so it keeps `cls`), checked again."""
    defaults = {field.name: field.default for field in dataclasses.fields(ModelConfig)}
    if model.fusion == "cross-attention":
        metadata = {**metadata, "text_pooling": "cls"}
    model = dataclasses.replace(model, **{name: metadata.get(name, defaults[name])
                                          for name in FROM_SHARDS if getattr(model, name) is None})
    model.check()
    return model
