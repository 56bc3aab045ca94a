"""Shards → batches of model inputs: the tf.data reader the trainer and the benchmarks use.

Stages, in order: check metadata.json against the model's configuration; match shard files
(`features.shard_files`); interleave files; shuffle serialized records (training only);
`features.parse` (proto → tensors); `to_model_inputs` (keep what the model takes, label apart);
batch; prefetch. AUTOTUNE throughout. Under a strategy, pass the `InputContext` and each input
pipeline reads its own subset of files.

`ShardSource` is what the trainer trains and evaluates from; the embedding cache
(`trainer.embedding_cache`) offers the same two methods over the frozen encoders' outputs.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from pipeline import features

SHUFFLE_BUFFER = 4096


class MetadataMismatch(ValueError):
    """Shards were written for another image size, sequence length, text pairing or vocabulary."""


def check_metadata(metadata: dict, shape: features.Shape, vocab_fingerprint: str | None) -> None:
    """Refuses shards that do not fit the model, saying what differs and what to do."""
    problems = []
    if metadata.get("image_size") != shape.image_size:
        problems.append(f"image size {metadata.get('image_size')} in the shards, {shape.image_size} in the model")
    if metadata.get("seq_length") != shape.seq_length:
        problems.append(f"sequence length {metadata.get('seq_length')} in the shards, {shape.seq_length} in the model")
    if metadata.get("text_pairing", "joint") != shape.text_pairing:
        problems.append(f"text pairing {metadata.get('text_pairing', 'joint')} in the shards, {shape.text_pairing} in the model")
    if vocab_fingerprint is not None and metadata.get("vocab_fingerprint") != vocab_fingerprint:
        problems.append(
            f"vocabulary {metadata.get('vocab_fingerprint')} in the shards, {vocab_fingerprint} in the text encoder"
        )
    if problems:
        raise MetadataMismatch(
            "shards do not match the model: " + "; ".join(problems)
            + ". Rebuild the shards with matching --image-size/--seq-length/--text-pairing/--vocab, or change the "
            "model flags."
        )


class DamagedShards(ValueError):
    """A file of the shards (or of the embedding cache) is not the one that was written."""


def check_files(data_dir: str, metadata: dict) -> None:
    """Refuses shards whose files are missing or not of the size metadata.json recorded (a cut
    copy, a half-finished `gsutil cp`), before any training; one `stat` per file, no file read.
    Shards written before metadata.json recorded the sizes have nothing to compare with."""
    from pipeline import verify

    if "output_files" not in metadata:
        return
    bad = [check for check in verify.check(data_dir, metadata) if check.problem]
    if bad:
        raise DamagedShards(verify.damage_line(data_dir, bad))


class _Sources:
    cache = None  # The embedding cache, once there is one, to check as well.


@contextlib.contextmanager
def damage_named(data_dir: str, metadata: dict):
    """Turns a corrupt record met while reading (TF's `DataLossError`, or a record that does
    not parse) into one `DamagedShards` naming the file, found by reading every file (the error
    itself names none). Any other error passes as it is. Yields a holder whose `cache` the
    caller sets to the embedding cache, whose files are then checked too."""
    sources = _Sources()
    try:
        yield sources
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        if isinstance(error, tf.errors.InvalidArgumentError) and "parse" not in str(error.message).lower():
            raise  # A shape or label error, not a damaged record: nothing to look for in the files.
        from pipeline import verify

        bad = [check for check in verify.check(data_dir, metadata, full=True) if check.problem]
        if bad:
            raise DamagedShards(verify.damage_line(data_dir, bad)) from None
        damaged = sources.cache.damaged_files() if sources.cache is not None else []
        if damaged:
            raise DamagedShards(f"the embedding cache file {damaged[0]} is damaged: delete {sources.cache.folder}, "
                                "and the next run builds it again") from None
        raise


def to_model_inputs(parsed: dict[str, tf.Tensor], shape: features.Shape) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Parsed example → (the model's inputs, integer label)."""
    inputs = {key: parsed[key] for key in features.IMAGE_KEYS + shape.token_keys}
    return inputs, parsed[features.LABEL_KEY]


def read_records(files: list[str], training: bool, seed: int | None = None,
                 input_context: tf.distribute.InputContext | None = None,
                 compression: str | None = None) -> tf.data.Dataset:
    """Serialized records of `files`: this input pipeline's share, interleaved, shuffled in training.

    Shared by the shards and the embedding cache (`trainer/embedding_cache.py`), which is
    sharded like them.
    """
    deterministic = not training or seed is not None
    dataset = tf.data.Dataset.from_tensor_slices(files)
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    # Each input pipeline (worker) reads its own files; with fewer files than pipelines, every
    # pipeline reads all of them and keeps its share of the records (no worker goes empty).
    shard_files_first = pipelines > 1 and len(files) >= pipelines
    if shard_files_first:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if pipelines > 1 and not shard_files_first:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if training:
        # Shuffle serialized records (small) before parsing, not decoded images (large).
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed)
    return dataset


def make_dataset(
    data_dir: str,
    split: str,
    shape: features.Shape,
    batch_size: int | None,
    training: bool,
    seed: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    keep_ids: bool = False,
) -> tf.data.Dataset:
    """Batches of (inputs, label) from one split's shards.

    `batch_size` is per input pipeline (the global batch divided by the number of pipelines
    when a strategy distributes the dataset function); None gives single examples. Training
    shuffles and drops the remainder so shapes stay static; evaluation keeps every example, in
    file order.
    With a `seed`, training batches come in the same order on every run over the same
    shards (parallel reads and parses keep their order; the shuffles are seeded), which
    reproducible training needs; without one, tf.data may hand out whichever is ready first.
    With `keep_ids`, inputs also carry `id_1`/`id_2` (for error analysis and alignment tests).
    """
    deterministic = not training or seed is not None
    dataset = read_records(features.shard_files(data_dir, split), training, seed, input_context, features.COMPRESSION)

    def parse(serialized):
        parsed = features.parse(serialized, shape)
        inputs, label = to_model_inputs(parsed, shape)
        if keep_ids:
            inputs.update({key: parsed[key] for key in features.ID_KEYS})
        return inputs, label

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if batch_size:
        dataset = dataset.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


class ShardSource:
    """A shards folder as the trainer reads it: batches for training, single examples for evaluation."""

    def __init__(self, data_dir: str, shape: features.Shape):
        self.data_dir, self.shape = data_dir, shape

    def dataset(self, split: str, batch_size: int | None, training: bool, seed: int | None = None,
                input_context: tf.distribute.InputContext | None = None, keep_ids: bool = False) -> tf.data.Dataset:
        """`make_dataset` over these shards."""
        return make_dataset(self.data_dir, split, self.shape, batch_size, training, seed, input_context, keep_ids)

    def examples(self, split: str) -> tf.data.Dataset:
        """The split's (inputs, label) examples, unbatched, in file order."""
        return self.dataset(split, None, training=False)

    def pairs(self, training: bool, seed: int | None = None,
              input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Every split's (inputs, label, pair key "id_1-id_2") examples, unbatched: what
        cross-validation regroups into folds (`trainer.crossval`)."""
        files = [path for split in features.SPLITS for path in features.shard_files(self.data_dir, split)]
        deterministic = not training or seed is not None

        def parse(serialized):
            parsed = features.parse(serialized, self.shape)
            inputs, label = to_model_inputs(parsed, self.shape)
            return inputs, label, tf.strings.join([parsed[key] for key in features.ID_KEYS], "-")

        return read_records(files, training, seed, input_context, features.COMPRESSION).map(
            parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    def labelled_pairs(self) -> list[tuple[str, int]]:
        """(pair key, label) of every example of every split, read without decoding images."""
        keys = features.ID_KEYS + (features.LABEL_KEY,)
        files = [path for split in features.SPLITS for path in features.shard_files(self.data_dir, split)]
        batches = read_records(files, False, compression=features.COMPRESSION).batch(1024).map(
            lambda batch: features.parse_stored(batch, keys, self.shape))
        return [(f"{first.decode()}-{second.decode()}", int(label)) for batch in batches.as_numpy_iterator()
                for first, second, label in zip(batch["id_1"], batch["id_2"], batch[features.LABEL_KEY])]
