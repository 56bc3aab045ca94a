"""The Beam job's composite transforms: CSV → records → splits → examples → shards + metadata.

Each stage has a label and a rejected side output; `run.py` only wires flags to `BuildShards`.
Tests drive the composites on literal rows with `TestPipeline`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import sys
import threading
import time
import uuid
from typing import Iterable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipeline import __version__, features, rows
from pipeline.preprocess import DEFAULT_MAX_PIXELS, TokenizerSource

REJECTED = "rejected"
PROGRESS_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """Everything the workers need; frozen and picklable (tokenizers load in `setup`).

    Attributes:
      images_dir: Folder (local or gs://) holding `<id>.<ext>` image files.
      out_dir: Output folder for shards, metadata.json and rejected.jsonl.
      shape: Image size and sequence length of the written examples.
      tokenizer: Vocabulary source; must match the text encoder that will be trained.
      max_pixels: Images whose header announces more pixels are rejected before decoding.
      jpeg_quality: Quality of the JPEG re-encoding of the resized images in the shards.
      test_fraction: Share of each label's pairs that go to test.
      val_fraction: Share of each label's remaining pairs that go to val.
      seed: Seed of the split hash; same seed and rows ⇒ same splits anywhere.
      train_shards: Number of train shard files (≥ number of training workers).
      eval_shards: Number of val and of test shard files.
      csv_sha256: Digest of the input CSV, recorded in metadata.json.
      vocab_fingerprint: The tokenizer's fingerprint, computed once by the driver.
      threads: Image decode (and shard compression) threads per worker process; 0 means one
        per core.
    """

    images_dir: str
    out_dir: str
    shape: features.Shape = features.Shape()
    tokenizer: TokenizerSource = TokenizerSource()
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int = features.STORAGE_JPEG_QUALITY
    test_fraction: float = 0.1
    val_fraction: float = 0.05
    seed: int = 0
    train_shards: int = 4
    eval_shards: int = 1
    csv_sha256: str = ""
    vocab_fingerprint: str = ""
    threads: int = 0

    def shard_count(self, split: str) -> int:
        """Number of shard files of `split` (train or an evaluation split)."""
        return self.train_shards if split == "train" else self.eval_shards

    def thread_count(self) -> int:
        """Decode or compression threads per worker process: `threads`, or one per core."""
        return self.threads or os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Reading and validating rows.
# ---------------------------------------------------------------------------------------------


def read_csv_rows(path: str) -> Iterable[tuple[int, dict]]:
    """(row_number, row) for every data row; quoted newlines, emoji and RTL text survive."""
    with FileSystems.open(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        for row_number, row in enumerate(csv.DictReader(text), start=1):
            # Extra cells beyond the header land under the key None; keep them visible.
            if None in row:
                row["_extra"] = row.pop(None)
            yield row_number, {key: ("" if value is None else value) for key, value in row.items()}


class ParseRows(beam.PTransform):
    """(row_number, row) → `Record`; invalid rows → `rejected` as `Rejection`."""

    def expand(self, numbered_rows):
        def parse(item):
            result = rows.parse_row(*item)
            if isinstance(result, rows.Rejection):
                Metrics.counter("rows", "rejected_" + result.reason).inc()
                yield beam.pvalue.TaggedOutput(REJECTED, result)
            else:
                yield result

        return numbered_rows | "Validate" >> beam.FlatMap(parse).with_outputs(REJECTED, main="records")


class DropDuplicatePairs(beam.PTransform):
    """Keeps the first row of each (id_1, id_2); later copies → `rejected` (duplicate_pair)."""

    def expand(self, records):
        def first_wins(item):
            _, group = item
            ordered = sorted(group, key=lambda record: record.row_number)
            yield ordered[0]
            for record in ordered[1:]:
                message = f"pair {record.pair_key} already appears in row {ordered[0].row_number}"
                yield beam.pvalue.TaggedOutput(REJECTED, rows.Rejection.of(record, "duplicate_pair", message))

        return (
            records
            | "KeyByPair" >> beam.Map(lambda record: (record.pair_key, record))
            | "GroupByPair" >> beam.GroupByKey()
            | "FirstWins" >> beam.FlatMap(first_wins).with_outputs(REJECTED, main="records")
        )


# ---------------------------------------------------------------------------------------------
# Images and text → serialized examples.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A written example and what the writer and the metadata need to know about it."""

    pair_key: str
    label: int
    split: str
    serialized: bytes
    image_digest: int


class _Progress:
    """Logs rows done and rows/s from a worker every few seconds."""

    def __init__(self, what: str):
        self._what = what
        self._count = 0
        self._started = self._last = time.monotonic()

    def tick(self):
        self._count += 1
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS:
            self._last = now
            rate = self._count / (now - self._started)
            # Printed, not logged: worker logging is quiet by default and stderr reaches the console
            # on the DirectRunner and the worker logs on Dataflow.
            worker = f"{os.getpid()}/{threading.current_thread().name}"
            print(f"{self._what} (worker {worker}): {self._count} rows, {rate:.1f} rows/s", file=sys.stderr, flush=True)


def tf_error_summary(message: str) -> str:
    """The one informative line of a TF op error (graph errors wrap it in node traces)."""
    asserted = re.search(r"assertion failed: \[([^\]]+)\]", message)
    if asserted:
        return asserted.group(1)
    for line in message.splitlines():
        line = re.sub(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]", "", line).strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ", "[")):
            return line
    return message.strip()[:200]


@dataclasses.dataclass
class _InFlight:
    """A row whose images are being read and decoded by the pool; its tokens are ready."""

    split: str
    record: rows.Record
    tokens: dict
    images: "concurrent.futures.Future"


class PreprocessFn(beam.DoFn):
    """(split, `Record`) → `Encoded` (decode, resize and re-encode both images; pack the text pair).

    Work is batched so that one worker process keeps every core busy: a thread pool reads and
    decodes images (TF ops release the GIL; remote reads overlap too) while this thread
    tokenizes the next batch in one call and serializes finished rows. Outputs keep input order
    within a bundle; a bad image rejects its row and nothing else.
    """

    BATCH_ROWS = 32

    def __init__(self, settings: JobSettings):
        self._settings = settings

    def setup(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        from pipeline import preprocess

        shape, quality, max_pixels = self._settings.shape, self._settings.jpeg_quality, self._settings.max_pixels
        self._tf = tf
        self._tokenizer = self._settings.tokenizer.load(shape.seq_length)

        @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)  # No Python control flow to convert.
        def resize_and_store(data):
            image = preprocess.decode_image(data, shape.image_size, max_pixels)
            return preprocess.encode_for_storage(image, quality)

        @tf.function(input_signature=[tf.TensorSpec([2], tf.string)], autograph=False)
        def resize_and_store_pair(data):
            return tf.stack([resize_and_store(data[0]), resize_and_store(data[1])])

        # Traced once, here. A row's two images go through one call (the Python side of a call
        # costs about 0.4 ms); the one-image function says which image a failure came from.
        self._resize_and_store = resize_and_store.get_concrete_function()
        self._resize_and_store_pair = resize_and_store_pair.get_concrete_function()
        self._pool = concurrent.futures.ThreadPoolExecutor(self._settings.thread_count(), thread_name_prefix="decode")
        self._progress = _Progress("preprocess")
        images_dir = self._settings.images_dir
        self._local_root = None if "://" in images_dir else os.path.realpath(images_dir)

    def teardown(self):
        self._pool.shutdown(wait=False, cancel_futures=True)

    def start_bundle(self):
        self._batch: list[tuple[str, rows.Record]] = []
        self._in_flight: collections.deque[_InFlight] = collections.deque()

    def _read(self, name: str) -> bytes:
        path = FileSystems.join(self._settings.images_dir, name)
        if self._local_root is not None:
            real = os.path.realpath(path)
            if not real.startswith(self._local_root + os.sep):
                raise rows.RowError("path_traversal", f"{name} resolves outside the images folder")
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                data = handle.read()
        except Exception:  # noqa: BLE001  Each file system has its own "not found" error.
            if FileSystems.exists(path):
                raise
            raise rows.RowError("missing_image", f"no image file {path}") from None
        if not data:
            raise rows.RowError("empty_image", f"image file {path} is empty")
        return data

    def _store(self, data: bytes, name: str) -> bytes:
        """Decoded, resized, re-encoded image; decode errors become a rejection reason."""
        try:
            return self._resize_and_store(self._tf.constant(data)).numpy()
        except self._tf.errors.InvalidArgumentError as error:
            message = tf_error_summary(error.message)
            too_large = "more than" in message or "too many pixels" in message
            raise rows.RowError("image_too_large" if too_large else "undecodable_image", f"{name}: {message}") from None

    def _images(self, record: rows.Record) -> tuple[list[bytes], int] | rows.RowError:
        """Runs in the pool: both images read, digested and stored, or the row's error."""
        try:
            datas, digest = [], 0
            for name in record.image_files:
                datas.append(self._read(name))
                digest ^= int.from_bytes(hashlib.sha256(datas[-1]).digest()[:8], "big")
            try:
                return list(self._resize_and_store_pair(self._tf.constant(datas)).numpy()), digest
            except self._tf.errors.InvalidArgumentError:
                return [self._store(data, name) for data, name in zip(datas, record.image_files)], digest
        except rows.RowError as error:
            return error

    def _start_batch(self):
        """Tokenizes the buffered rows in one call and hands their images to the pool."""
        if not self._batch:
            return
        tf = self._tf
        tokens = self._tokenizer(
            tf.constant([record.texts[0] for _, record in self._batch]),
            tf.constant([record.texts[1] for _, record in self._batch]),
        )
        tokens = {key: value.numpy() for key, value in tokens.items()}
        for index, (split, record) in enumerate(self._batch):
            row_tokens = {key: value[index] for key, value in tokens.items()}
            self._in_flight.append(_InFlight(split, record, row_tokens, self._pool.submit(self._images, record)))
        self._batch = []

    def _finish(self, row: _InFlight):
        """The row's output: an `Encoded`, or a tagged `Rejection`."""
        self._progress.tick()
        result = row.images.result()
        record = row.record
        if isinstance(result, rows.RowError):
            Metrics.counter("rows", "rejected_" + result.reason).inc()
            return beam.pvalue.TaggedOutput(REJECTED, rows.Rejection.of(record, result.reason, str(result)))
        stored, digest = result
        example = features.to_example(record.ids, record.texts, stored, row.tokens, record.label, self._settings.shape)
        Metrics.counter("rows", "written").inc()
        serialized = example.SerializeToString(deterministic=True)
        return Encoded(record.pair_key, record.label, row.split, serialized, digest)

    def process(self, item: tuple[str, rows.Record]):
        self._batch.append(item)
        if len(self._batch) >= self.BATCH_ROWS:
            self._start_batch()
        # Two batches in flight: the pool decodes one while this thread finishes the other.
        while len(self._in_flight) > 2 * self.BATCH_ROWS:
            yield self._finish(self._in_flight.popleft())

    def finish_bundle(self):
        self._start_batch()
        while self._in_flight:
            output = self._finish(self._in_flight.popleft())
            # Outputs of finish_bundle need a window; this job only uses the global window.
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
            else:
                yield GlobalWindows.windowed_value(output)


# ---------------------------------------------------------------------------------------------
# Splits.
# ---------------------------------------------------------------------------------------------


class AssignSplits(beam.PTransform):
    """`Record` → (split, Record): stratified by label, exact and deterministic.

    Splits are assigned to the valid, unique rows before any image is read, from pair keys
    and labels alone. So only these small records are shuffled here (not the encoded images),
    and a pair's split never depends on another pair's images: a row rejected at decode time
    leaves its split one example short instead of shifting other pairs between splits.
    """

    def __init__(self, test_fraction: float, val_fraction: float, seed: int):
        super().__init__()
        self._test, self._val, self._seed = test_fraction, val_fraction, seed

    def expand(self, records):
        def split_label(item):
            _, keys = item
            return rows.assign_splits(list(keys), self._test, self._val, self._seed).items()

        split_of = (
            records
            | "KeyByLabel" >> beam.Map(lambda r: (r.label, r.pair_key))
            | "GroupByLabel" >> beam.GroupByKey()
            | "SplitEachLabel" >> beam.FlatMap(split_label)
        )
        by_key = records | "KeyByPairKey" >> beam.Map(lambda r: (r.pair_key, r))
        return (
            {"split": split_of, "record": by_key}
            | "Join" >> beam.CoGroupByKey()
            | "Attach" >> beam.Map(lambda item: (item[1]["split"][0], item[1]["record"][0]))
        )


# ---------------------------------------------------------------------------------------------
# Output files.
# ---------------------------------------------------------------------------------------------

REJECTED_FILE = "rejected.jsonl"


def shard_index(pair_key: str, shards: int) -> int:
    """Which of `shards` files an example goes to: a hash of its pair, so the same on any runner."""
    return int.from_bytes(hashlib.sha256(pair_key.encode("utf-8")).digest()[:8], "big") % shards


def _file_name(settings: JobSettings, split: str, index: int) -> str:
    if split == REJECTED:
        return REJECTED_FILE
    return f"{split}-{index:05d}-of-{settings.shard_count(split):05d}{features.SHARD_SUFFIX}"


def write_file(settings: JobSettings, split: str, index: int, records: Iterable) -> str:
    """Writes shard `index` of `split` (or rejected.jsonl for `REJECTED`); returns its path.

    Shards are GZIP TFRecord files written by TF's C++ writer (local paths and gs:// alike).
    The file is written under a temporary name and renamed when complete, so a retried bundle
    never leaves a half-written shard under a name the reader globs.
    """
    import tensorflow as tf

    name = _file_name(settings, split, index)
    final = FileSystems.join(settings.out_dir, name)
    temporary = FileSystems.join(settings.out_dir, f".{name}.{uuid.uuid4().hex}.tmp")
    if split == REJECTED:
        with FileSystems.create(temporary, mime_type="application/x-ndjson") as handle:
            for line in records:
                handle.write(line.encode("utf-8") + b"\n")
    else:
        # Level 1: the JPEG-encoded images hardly compress, and on the benchmark's shards
        # level 1 wrote 0.3% more bytes than the default level 6 in 70-75% of the time.
        options = tf.io.TFRecordOptions(compression_type=features.COMPRESSION, compression_level=1)
        with tf.io.TFRecordWriter(temporary, options) as writer:
            for serialized in records:
                writer.write(serialized)
    FileSystems.rename([temporary], [final])
    return final


class _WriteFileFn(beam.DoFn):
    """((split, index), records) → the path of the file written (see `write_file`).

    Files are compressed on one thread per core (TF's writer releases the GIL), so the job's
    last stage is not bound to one core. A file's records are held in memory until it is
    written, so at most one file per thread (plus the one being read) is in memory at a time.
    """

    def __init__(self, settings: JobSettings):
        self._settings = settings

    def setup(self):
        self._threads = self._settings.thread_count()
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="write")

    def teardown(self):
        self._pool.shutdown(wait=True)

    def start_bundle(self):
        self._pending: collections.deque[concurrent.futures.Future] = collections.deque()

    def process(self, item):
        (split, index), records = item
        records = list(records)  # Grouped values may only be iterated inside `process`.
        self._pending.append(self._pool.submit(write_file, self._settings, split, index, records))
        while len(self._pending) > self._threads:
            yield self._pending.popleft().result()

    def finish_bundle(self):
        while self._pending:
            yield GlobalWindows.windowed_value(self._pending.popleft().result())


def _complete_files(_, settings: JobSettings, written: list[str]) -> list[str]:
    """Creates the expected files that no record reached, empty; returns every file's path."""
    expected = [(split, index) for split in features.SPLITS for index in range(settings.shard_count(split))]
    paths = []
    for split, index in expected + [(REJECTED, 0)]:
        path = FileSystems.join(settings.out_dir, _file_name(settings, split, index))
        paths.append(path if path in written else write_file(settings, split, index, []))
    return paths


class WriteFiles(beam.PTransform):
    """`Encoded` examples and rejected JSON lines → every shard file and rejected.jsonl.

    The examples are keyed by shard in the stage that encodes them and grouped once, so the
    encoded images go through a single shuffle. Files no record reached are then created empty:
    a split with fewer examples than shards still has all its files, and a job without
    rejections writes an empty rejected.jsonl. The output is one element, the list of every
    file, which exists only once all of them are complete.
    """

    def __init__(self, settings: JobSettings):
        super().__init__()
        self._settings = settings

    def expand(self, inputs):
        examples, rejected_lines = inputs
        settings = self._settings
        shards = (
            examples
            | "KeyByShard"
            >> beam.Map(lambda e: ((e.split, shard_index(e.pair_key, settings.shard_count(e.split))), e.serialized))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(_WriteFileFn(settings))
        )
        rejected = (
            rejected_lines
            | "KeyRejected" >> beam.Map(lambda line: ((REJECTED, 0), line))
            | "GroupRejected" >> beam.GroupByKey()
            | "WriteRejected" >> beam.ParDo(_WriteFileFn(settings))
        )
        written = (shards, rejected) | "Written" >> beam.Flatten()
        return (
            examples.pipeline
            | "CompleteTrigger" >> beam.Create([None])
            | "CreateMissingFiles" >> beam.Map(_complete_files, settings, beam.pvalue.AsList(written))
        )


# ---------------------------------------------------------------------------------------------
# The whole job.
# ---------------------------------------------------------------------------------------------


def class_weights(train_counts: dict[int, int]) -> dict[str, float]:
    """n / (classes · n_c) per label (scikit-learn's 'balanced'); 0 for a label absent from train."""
    total = sum(train_counts.values())
    return {
        name: (total / (len(features.LABELS) * train_counts[index]) if train_counts.get(index) else 0.0)
        for index, name in enumerate(features.LABELS)
    }


def build_metadata(settings: JobSettings, rows_read: int, written: list, rejected: list, image_digest: int) -> dict:
    """The metadata.json contents from the job's counts (pure function, tested directly)."""
    counts = {split: {name: 0 for name in features.LABELS} for split in features.SPLITS}
    for (split, label), count in written:
        counts[split][features.LABELS[label]] += count
    train_counts = {index: counts["train"][name] for index, name in enumerate(features.LABELS)}
    rejected_by_reason = dict(sorted(rejected))
    examples_written = sum(count for _, count in written)
    return {
        "tool": "multimodal-entailment pipeline",
        "version": __version__,
        "labels": list(features.LABELS),
        "image_size": settings.shape.image_size,
        "seq_length": settings.shape.seq_length,
        "image_storage": f"jpeg q{settings.jpeg_quality}",
        "vocab_fingerprint": settings.vocab_fingerprint,
        "tokenizer": (
            {"vocab_size": len(settings.tokenizer.vocab), "lowercase": settings.tokenizer.lowercase}
            if settings.tokenizer.vocab is not None
            else {"hub_handle": settings.tokenizer.hub_handle}
        ),
        "splits": {
            "test_fraction": settings.test_fraction,
            "val_fraction": settings.val_fraction,
            "seed": settings.seed,
        },
        "shards": {
            split: f"{split}-*-of-{settings.shard_count(split):05d}{features.SHARD_SUFFIX}"
            for split in features.SPLITS
        },
        "counts": {split: {"total": sum(c.values()), **c} for split, c in counts.items()},
        "class_weights": class_weights(train_counts),
        "rows_read": rows_read,
        "examples_written": examples_written,
        "rows_rejected": sum(rejected_by_reason.values()),
        "rejected_by_reason": rejected_by_reason,
        "source_fingerprint": {"csv_sha256": settings.csv_sha256, "images_xor_sha256": f"{image_digest:016x}"},
    }


def _write_metadata(_, settings: JobSettings, rows_read, written, rejected, image_digest, files):
    """Writes metadata.json; `files` (unused) makes this wait until every data file is complete."""
    del files
    metadata = build_metadata(settings, rows_read, written, rejected, image_digest)
    path = FileSystems.join(settings.out_dir, features.METADATA_FILE)
    with FileSystems.create(path, mime_type="application/json") as handle:
        handle.write(json.dumps(metadata, indent=2, ensure_ascii=False).encode("utf-8"))
    return path


class _XorCombine(beam.CombineFn):
    """Order-independent digest of all image bytes read (same on any runner)."""

    def create_accumulator(self):
        return 0

    def add_input(self, accumulator, value):
        return accumulator ^ value

    def merge_accumulators(self, accumulators):
        result = 0
        for value in accumulators:
            result ^= value
        return result

    def extract_output(self, accumulator):
        return accumulator


class BuildShards(beam.PTransform):
    """CSV path → shards per split, rejected.jsonl and metadata.json under settings.out_dir."""

    def __init__(self, csv_path: str, settings: JobSettings):
        super().__init__()
        self._csv_path, self._settings = csv_path, settings

    def expand(self, pipeline):
        settings = self._settings
        # One worker reads and validates the CSV (cheap per row); the duplicate check's
        # GroupByKey then spreads the rows over workers before any image is read.
        numbered_rows = (
            pipeline
            | "CsvPath" >> beam.Create([self._csv_path])
            | "ReadCsv" >> beam.FlatMap(read_csv_rows)
        )
        parsed = numbered_rows | "ParseRows" >> ParseRows()
        unique = parsed.records | "DropDuplicatePairs" >> DropDuplicatePairs()
        split_records = unique.records | "AssignSplits" >> AssignSplits(
            settings.test_fraction, settings.val_fraction, settings.seed
        )
        encoded = split_records | "Preprocess" >> beam.ParDo(PreprocessFn(settings)).with_outputs(
            REJECTED, main="examples"
        )

        rejected = (
            parsed[REJECTED],
            unique[REJECTED],
            encoded[REJECTED],
        ) | "AllRejected" >> beam.Flatten()
        rejected_lines = rejected | "RejectedJson" >> beam.Map(
            lambda r: json.dumps(r.to_json_dict(), ensure_ascii=False, sort_keys=True)
        )
        files = (encoded.examples, rejected_lines) | "WriteFiles" >> WriteFiles(settings)

        rows_read = numbered_rows | "CountRows" >> beam.combiners.Count.Globally()
        written = (
            encoded.examples
            | "SplitLabel" >> beam.Map(lambda e: ((e.split, e.label), 1))
            | "CountWritten" >> beam.CombinePerKey(sum)
            | "WrittenList" >> beam.combiners.ToList()
        )
        rejected_counts = (
            rejected
            | "Reason" >> beam.Map(lambda r: (r.reason, 1))
            | "CountRejected" >> beam.CombinePerKey(sum)
            | "RejectedList" >> beam.combiners.ToList()
        )
        image_digest = (
            encoded.examples
            | "Digest" >> beam.Map(lambda e: e.image_digest)
            | "XorDigests" >> beam.CombineGlobally(_XorCombine())
        )
        as_single = beam.pvalue.AsSingleton
        return (
            pipeline
            | "MetadataTrigger" >> beam.Create([None])
            | "WriteMetadata"
            >> beam.Map(
                _write_metadata,
                settings,
                as_single(rows_read),
                as_single(written),
                as_single(rejected_counts),
                as_single(image_digest),
                as_single(files),
            )
        )
