"""The shards job's flags and what its workers are told, as one frozen dataclass (no TF, no Beam).

The launcher builds one `JobSettings` from the command line (one flag per field) and pickles
it into every DoFn, so it holds only small values: the vocabulary's tokens, never a loaded
tokenizer (that is built in `DoFn.setup`, on the worker). Importing this module is cheap,
which keeps `--help` and flag errors quick.
"""

from __future__ import annotations

import dataclasses

from pipeline import features
from pipeline.cli import NOT_A_FLAG, UsageError, first_line
from pipeline.launcher import BeamJobSettings

DEFAULT_PREPROCESS_HANDLE = "https://tfhub.dev/tensorflow/bert_en_uncased_preprocess/3"


@dataclasses.dataclass(frozen=True)
class TokenizerSource:
    """Where the WordPiece vocabulary comes from; small and picklable, loaded where it is used.

    Attributes:
      vocab: The vocabulary's tokens (a `vocab.txt`, or a text encoder's, read once by the driver), or None.
      lowercase: Casing for `vocab` (True for uncased BERT models).
      hub_handle: A TF Hub BERT preprocessing handle or directory, used when `vocab` is None.
    """

    vocab: tuple[str, ...] | None = None
    lowercase: bool = True
    hub_handle: str = DEFAULT_PREPROCESS_HANDLE

    def fingerprint(self, seq_length: int) -> str:
        """The vocabulary fingerprint; a local vocabulary needs no tokenizer built for it."""
        from pipeline.preprocess import bert_inputs

        if self.vocab is not None:
            return bert_inputs.vocab_fingerprint(self.vocab, self.lowercase)
        return self.load(seq_length).fingerprint

    def load(self, seq_length: int, pairing: str = "joint"):
        """A `bert_inputs.PairTokenizer` or `HubPairTokenizer` (same call contract)."""
        from pipeline.preprocess import bert_inputs

        if self.vocab is not None:
            return bert_inputs.PairTokenizer(self.vocab, self.lowercase, seq_length, pairing=pairing)
        return bert_inputs.HubPairTokenizer(self.hub_handle, seq_length, pairing)


@dataclasses.dataclass(frozen=True)
class JobSettings(BeamJobSettings):
    """The shards job's settings: `python -m pipeline.shards` flags, and what workers are told.

    Attributes:
      text_encoder: Tokenize with this TF Hub-format BERT encoder's own vocabulary and casing (a directory, gs:// path or handle: what trainer.task gets as --text-encoder).
      vocab: A WordPiece vocab.txt (local or gs://) to tokenize with instead; without it or --text-encoder, --preprocess-handle is used.
      cased: With --vocab: keep the case (without it, lower-case, as uncased BERT does).
      preprocess_handle: A TF Hub BERT preprocessing handle or directory, used without --text-encoder and --vocab.
      text_pairing: `joint`: the pair packed as one BERT sequence (the baseline); `separate`: each text packed alone, for encoders trained on single sentences (sentence-transformers checkpoints such as all-MiniLM-L6-v2).
      text_pooling: The pooling of each text the shards are meant for (`cls` or `mean`), recorded in metadata.json as the trainer's default; default: what --text-encoder's import recorded (hf_import.json), else cls.
      image_size: Side of the stored square images, in pixels.
      seq_length: Length of the packed BERT inputs (of each text's, with --text-pairing separate), padding included.
      test_fraction: Share of each label's pairs that go to test.
      val_fraction: Share of each label's remaining pairs that go to val.
      seed: Seed of the split hash: the same seed and rows give the same splits on any runner.
      train_shards: Train shard files (at least the number of training workers).
      eval_shards: Val shard files, and test shard files.
      jpeg_quality: JPEG quality of the stored, resized images.
    """

    text_encoder: str = ""
    vocab: str = ""
    cased: bool = False
    preprocess_handle: str = DEFAULT_PREPROCESS_HANDLE
    text_pairing: str = "joint"
    text_pooling: str = ""
    image_size: int = features.DEFAULT_IMAGE_SIZE
    seq_length: int = features.DEFAULT_SEQ_LENGTH
    test_fraction: float = 0.1
    val_fraction: float = 0.05
    seed: int = 0
    train_shards: int = 4
    eval_shards: int = 1
    jpeg_quality: int = features.STORAGE_JPEG_QUALITY
    # Set by the launcher (`load_tokenizer`): the vocabulary, read once, and its fingerprint.
    tokenizer: TokenizerSource = dataclasses.field(default=TokenizerSource(), metadata=NOT_A_FLAG)
    vocab_fingerprint: str = dataclasses.field(default="", metadata=NOT_A_FLAG)

    @property
    def shape(self) -> features.Shape:
        return features.Shape(self.image_size, self.seq_length, self.text_pairing)

    def shard_count(self, split: str) -> int:
        """Number of shard files of `split` (train or an evaluation split)."""
        return self.train_shards if split == "train" else self.eval_shards

    def check(self) -> None:
        super().check()
        if self.image_size < 8:
            raise ValueError(f"--image-size must be at least 8, got {self.image_size}")
        if self.seq_length < 5:
            raise ValueError(f"--seq-length must be at least 5, got {self.seq_length}")
        if self.text_pairing not in features.TEXT_PAIRINGS:
            raise ValueError(f"--text-pairing must be one of {', '.join(features.TEXT_PAIRINGS)}, not {self.text_pairing!r}")
        if self.text_pooling not in ("", *features.TEXT_POOLINGS):
            raise ValueError(f"--text-pooling must be one of {', '.join(features.TEXT_POOLINGS)}, not {self.text_pooling!r}")
        if not (0 <= self.test_fraction < 1 and 0 <= self.val_fraction < 1):
            raise ValueError("--test-fraction and --val-fraction must be in [0, 1)")
        if self.train_shards < 1 or self.eval_shards < 1:
            raise ValueError("--train-shards and --eval-shards must be at least 1")
        if self.text_encoder and self.vocab:
            raise ValueError("--text-encoder and --vocab both name a vocabulary: give one")
        if self.cased and not self.vocab:
            raise ValueError("--cased goes with --vocab (an encoder's casing comes with it)")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("--jpeg-quality must be in 1..100")


def load_tokenizer(settings: JobSettings) -> JobSettings:
    """Reads the vocabulary (or loads the Hub model) once, on the launcher, so a bad source fails
    with one error line before workers try; returns the settings that carry it, and the text
    pooling settled (the flag, else the encoder's recommendation, else cls)."""
    from pipeline.preprocess import bert_inputs

    try:
        if settings.text_encoder:
            vocab, lowercase = bert_inputs.encoder_vocabulary(settings.text_encoder)
            source = TokenizerSource(vocab=tuple(vocab), lowercase=lowercase)
        elif settings.vocab:
            source = TokenizerSource(vocab=tuple(bert_inputs.read_vocab(settings.vocab)), lowercase=not settings.cased)
        else:
            source = TokenizerSource(hub_handle=settings.preprocess_handle or DEFAULT_PREPROCESS_HANDLE)
        fingerprint = source.fingerprint(settings.seq_length)
        pooling = settings.text_pooling or (settings.text_encoder and bert_inputs.encoder_pooling(settings.text_encoder)) \
            or "cls"
    except Exception as error:  # noqa: BLE001  Hub/IO/format errors all mean "cannot tokenize".
        handle = settings.text_encoder or ("" if settings.vocab else settings.preprocess_handle)
        remote = handle.startswith(("http://", "https://"))
        hint = " (no network? pass --text-encoder or --vocab with a local copy)" if remote else ""
        raise UsageError(f"cannot load the tokenizer: {first_line(error) or type(error).__name__}{hint}") from None
    return dataclasses.replace(settings, tokenizer=source, vocab_fingerprint=fingerprint, text_pooling=pooling)
