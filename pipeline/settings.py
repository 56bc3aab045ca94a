"""What the Beam job's workers need to know, as small frozen dataclasses (no TF, no Beam).

The launcher builds one `JobSettings` from the flags; it is pickled into every DoFn, so it
holds only small values: the vocabulary's tokens, never a loaded tokenizer (that is built
in `DoFn.setup`, on the worker). Importing this module is cheap, which keeps `--help` and
flag errors of `python -m pipeline.run` quick.
"""

from __future__ import annotations

import dataclasses
import os

from pipeline import features

# Pillow's default decompression-bomb threshold; real tweet images stay below 17 Mpx.
DEFAULT_MAX_PIXELS = 89_478_485
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

    @classmethod
    def from_flags(cls, vocab_path: str | None, lowercase: bool, hub_handle: str | None,
                   text_encoder: str | None = None) -> "TokenizerSource":
        if text_encoder:
            from pipeline import bert_inputs

            vocab, lowercase = bert_inputs.encoder_vocabulary(text_encoder)
            return cls(vocab=tuple(vocab), lowercase=lowercase)
        if vocab_path:
            from pipeline import bert_inputs

            return cls(vocab=tuple(bert_inputs.read_vocab(vocab_path)), lowercase=lowercase)
        return cls(hub_handle=hub_handle or DEFAULT_PREPROCESS_HANDLE)

    def fingerprint(self, seq_length: int) -> str:
        """The vocabulary fingerprint; a local vocabulary needs no tokenizer built for it."""
        from pipeline import bert_inputs

        if self.vocab is not None:
            return bert_inputs.vocab_fingerprint(self.vocab, self.lowercase)
        return self.load(seq_length).fingerprint

    def load(self, seq_length: int):
        """A `bert_inputs.PairTokenizer` or `HubPairTokenizer` (same call contract)."""
        from pipeline import bert_inputs

        if self.vocab is not None:
            return bert_inputs.PairTokenizer(self.vocab, self.lowercase, seq_length)
        return bert_inputs.HubPairTokenizer(self.hub_handle, seq_length)


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """Everything the workers need; frozen and picklable.

    Attributes:
      images_dir: Folder (local or gs://) holding `<id>.<ext>` image files.
      out_dir: Output folder for shards, metadata.json and rejected.jsonl.
      run_id: Names this run's temporary folder under `out_dir` (removed when the job ends).
      shape: Image size and sequence length of the written examples.
      tokenizer: Vocabulary source; must match the text encoder that will be trained.
      max_pixels: Images whose header announces more pixels are rejected before decoding.
      jpeg_quality: Quality of the JPEG re-encoding of the resized images in the shards.
      test_fraction: Share of each label's pairs that go to test.
      val_fraction: Share of each label's remaining pairs that go to val.
      seed: Seed of the split hash; same seed and rows ⇒ same splits anywhere.
      train_shards: Number of train shard files (≥ number of training workers).
      eval_shards: Number of val and of test shard files.
      vocab_fingerprint: The tokenizer's fingerprint, computed once by the driver.
      threads: Image read and decode threads per worker process; 0 picks them from the cores
        and `processes_per_machine`.
      processes_per_machine: Worker processes sharing one machine's cores: 1 for the local
        in-process runner, N for the local multi-process runner, 0 for "one per core" (the
        Dataflow default: one SDK process per vCPU).
    """

    images_dir: str
    out_dir: str
    run_id: str = "local"
    shape: features.Shape = features.Shape()
    tokenizer: TokenizerSource = TokenizerSource()
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int = features.STORAGE_JPEG_QUALITY
    test_fraction: float = 0.1
    val_fraction: float = 0.05
    seed: int = 0
    train_shards: int = 4
    eval_shards: int = 1
    vocab_fingerprint: str = ""
    threads: int = 0
    processes_per_machine: int = 1

    def shard_count(self, split: str) -> int:
        """Number of shard files of `split` (train or an evaluation split)."""
        return self.train_shards if split == "train" else self.eval_shards

    def thread_count(self) -> int:
        """Decode threads for this worker process: its share of the machine's cores.

        Threads per machine then stay close to its cores whatever the runner: one process
        with a thread per core locally, or Dataflow's one process per vCPU with one each.
        """
        if self.threads:
            return self.threads
        cores = os.cpu_count() or 1
        processes = self.processes_per_machine or cores
        return max(1, cores // processes)

    @property
    def temp_dir(self) -> str:
        """This run's folder for partial files (joined with '/', which gs:// and POSIX share)."""
        return f"{self.out_dir.rstrip('/')}/{TEMP_PREFIX}{self.run_id}"


TEMP_PREFIX = ".tmp-"
