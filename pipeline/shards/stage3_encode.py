"""Stage 3 of the shards job: (split, `Record`) → `Encoded` example, or the row's `Rejection`.

Reads both images, checks their headers, decodes, resizes and re-encodes them for storage
(`preprocess.images`), packs the text pair (`preprocess.bert_inputs`) and serializes the
example (`features`). Decoding is the job's main cost, so one worker process keeps its share
of the machine's cores busy: a thread pool, shared by every DoFn instance of the process,
reads and decodes images (`image_files.PooledRowsFn`), while the bundle thread tokenizes the
next batch in one call and serializes finished rows.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from typing import NamedTuple

from apache_beam.metrics import Metrics

from pipeline import features
from pipeline.cli import Progress
from pipeline.inputs import image_files, rows
from pipeline.shards.settings import JobSettings, TokenizerSource

REJECTED = image_files.REJECTED
IMAGE_DIGEST_MODULUS = 2**127 - 1  # A prime: see `image_digest`.


def image_digest(data: bytes) -> int:
    """An image's share of the data set's digest: its SHA-256 (first 16 bytes) modulo a prime.

    The digest of all images is the sum of these modulo the same prime: order does not
    matter, and unlike XOR an image read twice adds instead of cancelling out (k copies
    cancel only if the prime divides k).
    """
    return int.from_bytes(hashlib.sha256(data).digest()[:16], "big") % IMAGE_DIGEST_MODULUS


class ImageFacts(NamedTuple):
    """An original image as read, before decoding: what metadata.json's image stats count."""

    format: str
    height: int
    width: int


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A written example and what the writer and the metadata need to know about it."""

    pair_key: str
    label: int
    split: str
    serialized: bytes
    image_digest: int
    pair_tokens: int  # The texts' length before truncation (`bert_inputs.pack`).
    images: tuple[ImageFacts, ...]  # Both original images.


_SHARED_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _image_functions(image_size: int, quality: int, max_pixels: int):
    """Traced once per process: (one image, a row's two images) → (stored JPEG, header status,
    original format, original [height, width]); the last two feed metadata.json's image stats."""
    import tensorflow as tf

    from pipeline.preprocess import image_headers, images

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)  # No Python control flow.
    def store(data):
        image, status = images.decode_checked(data, image_size, max_pixels)
        return (images.encode_for_storage(image, quality), status, image_headers.image_format(data),
                image_headers.image_dimensions(data))

    @tf.function(input_signature=[tf.TensorSpec([2], tf.string)], autograph=False)
    def store_pair(data):
        first, second = store(data[0]), store(data[1])
        return tuple(tf.stack([a, b]) for a, b in zip(first, second))

    # A row's two images go through one call (each call has a fixed Python cost); the
    # one-image function says which image a decode failure came from.
    return store.get_concrete_function(), store_pair.get_concrete_function()


@functools.lru_cache(maxsize=None)
def _tokenizer(source: TokenizerSource, seq_length: int, pairing: str):
    return source.load(seq_length, pairing)


class PreprocessFn(image_files.PooledRowsFn):
    """(split, `Record`) → `Encoded`; a row with a bad image → `rejected` (`Rejection`).

    Outputs keep input order within a bundle; a bad image rejects its row and nothing else.
    The reason comes from where the fault was found: the file system (missing, empty,
    outside the folder), the header check (`image_too_large`, an unknown format), or the
    codec (`undecodable_image`, with the codec's message).
    """

    BATCH_ROWS = 32
    AHEAD = 2 * BATCH_ROWS  # Two batches in flight: the pool decodes one while this thread finishes the other.

    def __init__(self, settings: JobSettings):
        self._settings = settings

    def setup(self):
        import tensorflow as tf

        settings, shape = self._settings, self._settings.shape
        self._tf = tf
        with _SHARED_LOCK:  # Bundle threads of one process share what is traced and loaded.
            self._store, self._store_pair = _image_functions(shape.image_size, settings.jpeg_quality, settings.max_pixels)
            self._tokenizer = _tokenizer(settings.tokenizer, shape.seq_length, shape.text_pairing)
            self._pool = image_files.shared_pool(settings.thread_count())
        self._progress = Progress("preprocess")
        self._files = image_files.ImageFiles(settings.images, settings.max_pixels)

    def start_bundle(self):
        super().start_bundle()
        self._batch: list[tuple[str, rows.Record]] = []

    def _store_one(self, data: bytes, name: str):
        try:
            return self._store(self._tf.constant(data))
        except self._tf.errors.InvalidArgumentError as error:
            raise image_files.undecodable(name, error) from None

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
            facts = tuple(ImageFacts(fmt.decode(), int(height), int(width)) for fmt, (height, width) in zip(formats, dimensions))
            return list(stored), digest, facts
        except rows.RowError as error:
            return error

    def _flush_pending(self):
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
            self._submit((split, record, row_tokens, int(lengths[index])), self._images_of, record)
        self._batch = []

    def _output(self, entry, result):
        """The row's output: an `Encoded`, or a tagged `Rejection`."""
        self._progress.tick()
        split, record, tokens, pair_tokens = entry
        if isinstance(result, rows.RowError):
            return image_files.rejected(record, result)
        stored, digest, facts = result
        example = features.to_example(record.ids, record.texts, stored, tokens, record.label, self._settings.shape)
        Metrics.counter("rows", "written").inc()
        serialized = example.SerializeToString(deterministic=True)
        return Encoded(record.pair_key, record.label, split, serialized, digest, pair_tokens, facts)

    def process(self, item: tuple[str, rows.Record]):
        self._batch.append(item)
        if len(self._batch) >= self.BATCH_ROWS:
            self._flush_pending()
        yield from self._ready(self.AHEAD)
