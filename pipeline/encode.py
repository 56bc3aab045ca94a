"""Stage 3 of the job: (split, `Record`) → `Encoded` example, or the row's `Rejection`.

Reads both images, checks their headers, decodes, resizes and re-encodes them for storage
(`images`), packs the text pair (`bert_inputs`) and serializes the example (`features`).
Decoding is the job's main cost, so one worker process keeps its share of the machine's
cores busy: a thread pool, shared by every DoFn instance of the process, reads and decodes
images (TF ops release the GIL; remote reads overlap too), while the bundle thread tokenizes
the next batch in one call and serializes finished rows.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import re
import threading

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipeline import features, image_files, rows
from pipeline.metadata import IMAGE_DIGEST_MODULUS
from pipeline.progress import Progress
from pipeline.settings import JobSettings, TokenizerSource

REJECTED = "rejected"


def image_digest(data: bytes) -> int:
    """An image's share of the data set's digest: its SHA-256 (first 16 bytes) modulo a prime.

    The digest of all images is the sum of these modulo the same prime: order does not
    matter, and unlike XOR an image read twice adds instead of cancelling out (k copies
    cancel only if the prime divides k).
    """
    return int.from_bytes(hashlib.sha256(data).digest()[:16], "big") % IMAGE_DIGEST_MODULUS


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A written example and what the writer and the metadata need to know about it."""

    pair_key: str
    label: int
    split: str
    serialized: bytes
    image_digest: int
    pair_tokens: int  # The text pair's length before truncation (`bert_inputs.pair_lengths`).
    images: tuple[tuple[str, int, int], ...]  # Each original image's (format, height, width).


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


_SHARED_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _image_functions(image_size: int, quality: int, max_pixels: int):
    """Traced once per process: (one image, a row's two images) → (stored JPEG, header status,
    original format, original [height, width]); the last two feed metadata.json's image stats."""
    import tensorflow as tf

    from pipeline import image_headers, images

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)  # No Python control flow.
    def store(data):
        image, status = images.decode_checked(data, image_size, max_pixels)
        return (images.encode_for_storage(image, quality), status, image_headers.image_format(data),
                image_headers.image_dimensions(data))

    @tf.function(input_signature=[tf.TensorSpec([2], tf.string)], autograph=False)
    def store_pair(data):
        first, second = store(data[0]), store(data[1])
        return tuple(tf.stack([a, b]) for a, b in zip(first, second))

    # A row's two images go through one call (the Python side of a call costs about 0.3 ms);
    # the one-image function says which image a decode failure came from.
    return store.get_concrete_function(), store_pair.get_concrete_function()


@functools.lru_cache(maxsize=None)
def _tokenizer(source: TokenizerSource, seq_length: int):
    return source.load(seq_length)


@dataclasses.dataclass
class _InFlight:
    """A row whose images are being read and decoded by the pool; its tokens are ready."""

    split: str
    record: rows.Record
    tokens: dict
    pair_tokens: int
    images: concurrent.futures.Future


class PreprocessFn(beam.DoFn):
    """(split, `Record`) → `Encoded`; a row with a bad image → `rejected` (`Rejection`).

    Outputs keep input order within a bundle; a bad image rejects its row and nothing else.
    The reason comes from where the fault was found: the file system (missing, empty,
    outside the folder), the header check (`image_too_large`, an unknown format), or the
    codec (`undecodable_image`, with the codec's message).
    """

    BATCH_ROWS = 32

    def __init__(self, settings: JobSettings):
        self._settings = settings

    def setup(self):
        import tensorflow as tf

        from pipeline import images

        settings, shape = self._settings, self._settings.shape
        self._tf, self._images = tf, images
        with _SHARED_LOCK:  # Bundle threads of one process share what is traced and loaded.
            self._store, self._store_pair = _image_functions(shape.image_size, settings.jpeg_quality, settings.max_pixels)
            self._tokenizer = _tokenizer(settings.tokenizer, shape.seq_length)
            self._pool = image_files.shared_pool(settings.thread_count())
        self._progress = Progress("preprocess")
        self._files = image_files.ImageFiles(settings.images_dir, settings.max_pixels)

    def start_bundle(self):
        self._batch: list[tuple[str, rows.Record]] = []
        self._in_flight: collections.deque[_InFlight] = collections.deque()

    def _store_one(self, data: bytes, name: str):
        try:
            return self._store(self._tf.constant(data))
        except self._tf.errors.InvalidArgumentError as error:
            raise rows.RowError("undecodable_image", f"{name}: {tf_error_summary(error.message)}") from None

    def _images_of(self, record: rows.Record) -> tuple[list[bytes], int, tuple] | rows.RowError:
        """Runs in the pool: both images read, digested and stored (with their original format
        and size), or the row's error."""
        try:
            datas = [self._files.read(name) for name in record.image_files]
            digest = sum(image_digest(data) for data in datas) % IMAGE_DIGEST_MODULUS
            try:
                results = [value.numpy() for value in self._store_pair(self._tf.constant(datas))]
                for value, name in zip(results[1], record.image_files):
                    self._files.check_status(int(value), name)
            except self._tf.errors.InvalidArgumentError:  # Find which image the codec refused.
                singles = []
                for data, name in zip(datas, record.image_files):
                    singles.append([value.numpy() for value in self._store_one(data, name)])
                    self._files.check_status(int(singles[-1][1]), name)
                results = [[single[field] for single in singles] for field in range(4)]
            stored, _, formats, dimensions = results
            facts = tuple((fmt.decode(), int(height), int(width)) for fmt, (height, width) in zip(formats, dimensions))
            return list(stored), digest, facts
        except rows.RowError as error:
            return error

    def _start_batch(self):
        """Tokenizes the buffered rows in one call and hands their images to the pool."""
        if not self._batch:
            return
        tf = self._tf
        tokens, lengths = self._tokenizer.pack_counted(
            tf.constant([record.texts[0] for _, record in self._batch]),
            tf.constant([record.texts[1] for _, record in self._batch]),
        )
        tokens, lengths = {key: value.numpy() for key, value in tokens.items()}, lengths.numpy()
        for index, (split, record) in enumerate(self._batch):
            row_tokens = {key: value[index] for key, value in tokens.items()}
            self._in_flight.append(_InFlight(split, record, row_tokens, int(lengths[index]),
                                             self._pool.submit(self._images_of, record)))
        self._batch = []

    def _finish(self, row: _InFlight):
        """The row's output: an `Encoded`, or a tagged `Rejection`."""
        self._progress.tick()
        result = row.images.result()
        record = row.record
        if isinstance(result, rows.RowError):
            Metrics.counter("rows", "rejected_" + result.reason).inc()
            return beam.pvalue.TaggedOutput(REJECTED, rows.Rejection.of(record, result.reason, str(result)))
        stored, digest, facts = result
        example = features.to_example(record.ids, record.texts, stored, row.tokens, record.label, self._settings.shape)
        Metrics.counter("rows", "written").inc()
        serialized = example.SerializeToString(deterministic=True)
        return Encoded(record.pair_key, record.label, row.split, serialized, digest, row.pair_tokens, facts)

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
