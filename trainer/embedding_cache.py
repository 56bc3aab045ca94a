"""The embedding cache: with frozen encoders, run them once, then train only the head.

With every encoder the model uses frozen (the baseline), each epoch would recompute exactly
the same encoder outputs, which is where nearly all of a CPU's training time goes. So the
trainer runs `multimodal.encoders_of(model)` once over every split, through the strategy (all
replicas, all workers), stores what it returns per example (the two image feature vectors,
the pooled text vector, or for cross-attention the text sequence and its mask; float32),
with the label and the pair's ids, and trains `multimodal.head_of(model)` on that. Modality
dropout and the projections' dropout live in the head, so training means the same thing;
the trained head is part of the full model, which is what is evaluated on the same outputs
and exported.

Layout: `<cache dir>/<key>/{train,val,test}-SSSSS-of-NNNNN.tfrecord` (as many files per split
as the split has shards; every worker reads its own share, as from the shards) and
`complete.json`, written last. The key is a digest of everything the outputs depend on: the
shards' metadata.json (their fingerprints, sizes, vocabulary), the model configuration, and
the encoders' weights themselves. A folder without `complete.json` (a run killed while
writing it), or with another key, is deleted and rebuilt; it is never read.

Under several workers every worker receives all outputs (`strategy.gather`) and writes its
own copy (the chief in the cache dir, the others in their scratch folders), so no worker
waits on another's files or needs a shared file system.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

from pipeline import features
from trainer import artifacts, distribution, reader, split_eval

# The model settings the encoder outputs depend on (the head's own do not key the cache).
ENCODER_SETTINGS = ("text_encoder", "image_encoder", "image_weights", "text_pooling", "text_pairing", "mode",
                    "fusion", "image_size", "seq_length")
COMPLETE_FILE = "complete.json"
STORED_DTYPE = np.float32  # float16 would halve the size (docs/benchmarks.md: what it changes).


def enabled(setting: str, model_config) -> bool:
    """Whether to cache: `on`/`off` as given, `auto` when every encoder the model uses is frozen."""
    trainable = [name for name, used, trained in (
        ("--train-text-encoder", model_config.uses_text, model_config.train_text_encoder),
        ("--train-image-encoder", model_config.uses_images, model_config.train_image_encoder),
    ) if used and trained]
    if setting == "off":
        return False
    if trainable:
        if setting == "on":
            raise ValueError(f"--embedding-cache on needs frozen encoders, but {' and '.join(trainable)} is set")
        print(f"embedding cache: off ({' and '.join(trainable)}: the encoder outputs change every step)")
        return False
    return True


def cache_key(metadata: dict, model_config, encoders_model) -> str:
    """Digest of the shards' metadata, the encoders' settings and their weights."""
    digest = hashlib.sha256()
    settings = {name: getattr(model_config, name) for name in ENCODER_SETTINGS}
    digest.update(json.dumps({"metadata": metadata, "model": settings, "dtype": np.dtype(STORED_DTYPE).name},
                             sort_keys=True).encode())
    for weight in encoders_model.weights:  # In order; names are not used (Keras numbers them per process).
        value = np.ascontiguousarray(weight.numpy())
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:20]


class EmbeddingCache:
    """The cache of one trainer run: `ensure()` builds or reuses it; `examples()`/`dataset()` read it."""

    def __init__(self, strategy, encoders_model, data_dir: str, metadata: dict, model_config,
                 root: str, global_batch: int):
        self._strategy, self._encoders = strategy, encoders_model
        self._shards, self._metadata = reader.ShardSource(data_dir, model_config.shape), metadata
        self._global_batch = global_batch
        self.key = cache_key(metadata, model_config, encoders_model)
        self.root, self.folder = root, os.path.join(root, self.key)
        self.shapes = {key: tuple(tensor.shape[1:]) for key, tensor in encoders_model.output.items()}

    # --- Building -------------------------------------------------------------------------
    def ensure(self) -> None:
        marker = os.path.join(self.folder, COMPLETE_FILE)
        usable = False
        if tf.io.gfile.exists(marker):
            with tf.io.gfile.GFile(marker) as handle:
                stored = json.load(handle)
            usable = stored.get("key") == self.key and stored.get("counts") == self._counts() and \
                stored.get("file_bytes") == self._file_bytes()
        # Building is collective (every worker runs the same gathers), so all workers build if
        # any must: a restarted non-chief has lost its copy while the chief's is whole.
        if not distribution.any_worker(self._strategy, not usable):
            print(f"embedding cache: reusing {self.folder}")
            return
        for stale in tf.io.gfile.glob(os.path.join(self.root, "*")):  # Other keys, or a half-written one.
            artifacts.remove_tree(stale)
        tf.io.gfile.makedirs(self.folder)
        print(f"embedding cache: running the frozen encoders once over every split into {self.folder}")
        counts = {}
        for split in features.SPLITS:
            started = time.perf_counter()
            counts[split] = self._write_split(split)
            seconds = time.perf_counter() - started
            print(f"embedding cache: {split} {counts[split]} examples in {seconds:.1f}s "
                  f"({counts[split] / max(seconds, 1e-9):.1f} examples/s)", flush=True)
        artifacts.write_json(marker, {"key": self.key, "counts": counts, "dtype": np.dtype(STORED_DTYPE).name,
                                      "shapes": self.shapes, "file_bytes": self._file_bytes()})

    def _file_bytes(self) -> dict[str, int]:
        """Each cache file's size: a cache whose files changed after `complete.json` is rebuilt."""
        return {os.path.basename(path): tf.io.gfile.stat(path).length
                for split in features.SPLITS for path in self._files(split)}

    def damaged_files(self) -> list[str]:
        """The cache files that cannot be read through (TFRecord checks every record's CRC)."""
        damaged = []
        for split in features.SPLITS:
            for path in self._files(split):
                try:
                    for _ in tf.data.TFRecordDataset(path):
                        pass
                except tf.errors.OpError:
                    damaged.append(os.path.basename(path))
        return damaged

    def _counts(self) -> dict[str, int]:
        return {split: self._metadata["counts"][split]["total"] for split in features.SPLITS}

    def _write_split(self, split: str) -> int:
        def examples_fn():
            def ids_apart(inputs, label):
                # Tweet ids are 64-bit (the Beam job refuses larger ones), so they travel as int64:
                # collectives gather numbers, not strings.
                ids = tf.stack([tf.strings.to_number(inputs.pop(key), tf.int64) for key in features.ID_KEYS])
                return inputs, label, ids

            return self._shards.dataset(split, None, training=False, keep_ids=True).map(ids_apart)

        dataset, steps = split_eval.distribute_padded(self._strategy, examples_fn, self._counts()[split], self._global_batch)
        strategy, encoders_model = self._strategy, self._encoders

        @tf.function
        def step(iterator):
            inputs, labels, ids = next(iterator)
            outputs = strategy.run(lambda batch: encoders_model(batch, training=False), args=(inputs,))
            gather = lambda value: strategy.gather(value, axis=0)  # noqa: E731
            return gather(labels), gather(ids), {key: gather(value) for key, value in outputs.items()}

        files = len(features.shard_files(self._shards.data_dir, split))
        writers = [tf.io.TFRecordWriter(os.path.join(self.folder, f"{split}-{i:05d}-of-{files:05d}.tfrecord"))
                   for i in range(files)]
        written, iterator = 0, iter(dataset)
        for _ in range(steps):
            labels, ids, outputs = step(iterator)
            labels, ids = labels.numpy(), ids.numpy()
            outputs = {key: value.numpy().astype(STORED_DTYPE) for key, value in outputs.items()}
            for row in np.flatnonzero(labels != split_eval.PADDING_LABEL):
                example = {features.LABEL_KEY: _int64s([labels[row]]), "ids": _int64s(ids[row])}
                example.update({key: _bytes(value[row].tobytes()) for key, value in outputs.items()})
                proto = tf.train.Example(features=tf.train.Features(feature=example))
                writers[written % files].write(proto.SerializeToString())
                written += 1
        for writer in writers:
            writer.close()
        if written != self._counts()[split]:
            raise RuntimeError(f"embedding cache: {split} has {written} examples, metadata.json says {self._counts()[split]}")
        return written

    # --- Reading --------------------------------------------------------------------------
    def examples(self, split: str, keep_ids: bool = False) -> tf.data.Dataset:
        """The split's cached (outputs, label[, ids]) examples, unbatched, in file order."""
        return self.dataset(split, None, training=False, keep_ids=keep_ids)

    def _files(self, split: str) -> list[str]:
        return sorted(tf.io.gfile.glob(os.path.join(self.folder, f"{split}-*-of-*.tfrecord")))

    def pairs(self, training: bool, seed: int | None = None,
              input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Like `reader.ShardSource.pairs`: every split's (encoder outputs, label, pair key)."""
        files = [path for split in features.SPLITS for path in self._files(split)]
        return reader.read_records(files, training, seed, input_context).map(
            _parser(self.shapes, "key"), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=not training or seed is not None)

    def labelled_pairs(self) -> list[tuple[str, int]]:
        """(pair key, label) of every cached example of every split."""
        return [(key.decode(), int(label)) for _, label, key in self.pairs(False).as_numpy_iterator()]

    def dataset(self, split: str, batch_size: int | None, training: bool, seed: int | None = None,
                input_context: tf.distribute.InputContext | None = None, keep_ids: bool = False) -> tf.data.Dataset:
        """Like `reader.ShardSource.dataset`, over the cache: batches of (encoder outputs, label)."""
        files = self._files(split)
        deterministic = not training or seed is not None
        dataset = reader.read_records(files, training, seed, input_context).map(
            _parser(self.shapes, "ids" if keep_ids else None), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic)
        if batch_size:
            dataset = dataset.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)


def stored_outputs(folder: str) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """A complete cache folder read whole, without the model: (pair keys, labels, each encoder
    output stacked [N, ...]); for benchmarks and anyone who wants the frozen features."""
    with tf.io.gfile.GFile(os.path.join(folder, COMPLETE_FILE)) as handle:
        shapes = {key: tuple(shape) for key, shape in json.load(handle)["shapes"].items()}
    files = sorted(tf.io.gfile.glob(os.path.join(folder, "*.tfrecord")))
    keys, labels, outputs = [], [], {key: [] for key in shapes}
    for stored, label, key in tf.data.TFRecordDataset(files).map(_parser(shapes, "key")).as_numpy_iterator():
        keys.append(key.decode())
        labels.append(int(label))
        for name, value in stored.items():
            outputs[name].append(value)
    return keys, np.array(labels), {key: np.stack(values) for key, values in outputs.items()}


def _parser(shapes: dict[str, tuple], pair: str | None):
    """A stored example → (encoder outputs, label), and with `pair` "ids" its ids int64 [2], with
    "key" its pair key "id_1-id_2" (as `reader.ShardSource.pairs` gives it)."""
    spec = {features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64), "ids": tf.io.FixedLenFeature([2], tf.int64),
            **{key: tf.io.FixedLenFeature([], tf.string) for key in shapes}}

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        stored = {key: tf.cast(tf.reshape(tf.io.decode_raw(parsed[key], STORED_DTYPE), shape), tf.float32)
                  for key, shape in shapes.items()}
        label, ids = parsed[features.LABEL_KEY], parsed["ids"]
        if pair == "key":
            return stored, label, tf.strings.join([tf.strings.as_string(ids[0]), tf.strings.as_string(ids[1])], "-")
        return (stored, label, ids) if pair == "ids" else (stored, label)

    return parse


def _int64s(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
