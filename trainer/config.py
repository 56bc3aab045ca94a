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

EMBEDDING_CACHE_SETTINGS = ("auto", "on", "off")
# Model flags whose default is the shards' own (metadata.json), read once the data is found.
FROM_SHARDS = ("image_size", "seq_length")
SCALING_HELP = """\
On a machine with several GPUs, --strategy auto picks MirroredStrategy over all of them, and
on a Vertex AI job with several workers (TF_CONFIG) MultiWorkerMirroredStrategy; add
--mixed-precision on GPUs. --batch-size stays the global batch, split across all replicas,
and --learning-rate is left as given: if you raise the batch with the replica count, choose
the learning rate yourself.
"""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train (defaults: the published baseline's Adam, batch 32, 10 epochs).

    Attributes:
      data_dir: The `--out` folder of `make shards` (local or gs://).
      job_dir: Where config, metrics, logs, checkpoints and the model go (default: out/job, or on Vertex AI the base output directory).
      epochs: Passes over the training split.
      batch_size: Global batch size, divided across replicas.
      learning_rate: Adam's learning rate.
      loss: `ce`, `weighted-ce` (class weights from metadata.json) or `focal`.
      focal_gamma: Focusing parameter of the focal loss.
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
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    loss: str = "ce"
    focal_gamma: float = 2.0
    backup_every_steps: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False
    seed: int = 0
    embedding_cache: str = "auto"
    embedding_cache_dir: str = ""
    serving_tokenizer: str = "fast"

    def check(self) -> None:
        choices = (("loss", LOSSES), ("strategy", STRATEGIES), ("embedding_cache", EMBEDDING_CACHE_SETTINGS),
                   ("serving_tokenizer", TOKENIZER_OPS))
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

    Image size and sequence length stay None until the trainer reads them from metadata.json.
    """
    args = define_flags().parse_args(argv)
    train, model = cli.dataclass_from_args(TrainConfig, args), cli.dataclass_from_args(ModelConfig, args)
    try:
        train.check()
        model.check()
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    return train, model


def with_shard_defaults(model: ModelConfig, metadata: dict) -> ModelConfig:
    """`model` with the settings the user left to the shards taken from their metadata.json."""
    return dataclasses.replace(model, **{name: metadata[name] for name in FROM_SHARDS if getattr(model, name) is None})
