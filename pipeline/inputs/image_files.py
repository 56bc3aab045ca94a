"""A row's image files → their bytes, or the row's reason code: shared by the shards and scoring jobs.

Both jobs refuse the same rows for the same reasons (`rows` lists them): a file outside the
images folder (a symlink out of it included), a missing or empty file, a header that announces
too many pixels or is not an image's, and data the codec refuses. Reads go through Beam's
`FileSystems` (local, gs://).

`PooledRowsFn` is the DoFn shape both jobs share: each row's slow part (reading, and for the
shards job decoding) runs on one thread pool per worker process, a bounded number of rows
ahead, while outputs leave in input order. Remote reads overlap, and TF ops release the GIL,
so one process keeps its share of the machine's cores busy.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipeline import cli
from pipeline.inputs import rows

REJECTED = "rejected"


@functools.lru_cache(maxsize=None)
def shared_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """One pool per worker process (and size), whatever the number of DoFn instances."""
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="images")


def undecodable(name: str, error) -> rows.RowError:
    """The row's error for a TF decode (or header) op that refused an image's bytes."""
    return rows.RowError("undecodable_image", f"{name}: {cli.tf_error_summary(error.message)}")


class ImageFiles:
    """Reads `<id>.<ext>` files of one images folder; a bad file raises `rows.RowError`."""

    def __init__(self, images_dir: str, max_pixels: int):
        self.images_dir, self.max_pixels = images_dir, max_pixels
        self._local_root = None if "://" in images_dir else os.path.realpath(images_dir)

    def read(self, name: str) -> bytes:
        path = FileSystems.join(self.images_dir, name)
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

    def check_status(self, status: int, name: str) -> None:
        """Raises the row's error for a header status of `images.header_status`."""
        from pipeline.preprocess import images

        if status == images.HEADER_TOO_LARGE:
            raise rows.RowError("image_too_large", f"{name}: header announces more than {self.max_pixels} pixels")
        if status == images.HEADER_UNREADABLE:
            raise rows.RowError("undecodable_image", f"{name}: {images.UNREADABLE_MESSAGE}")


@functools.lru_cache(maxsize=None)
def header_check(max_pixels: int):
    """Traced once per process: encoded image bytes → header status (int32 [], `images.header_status`).

    Reads only the header (no pixel is decoded): what the scoring job refuses before the model.
    A JPEG cut short before its size raises `InvalidArgumentError`, as its decode would.
    """
    import tensorflow as tf

    from pipeline.preprocess import image_headers, images

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
    def status(data):
        return images.header_status(image_headers.image_dimensions(data), max_pixels)

    return status.get_concrete_function()


def rejected(record: rows.Record, error: rows.RowError) -> beam.pvalue.TaggedOutput:
    """The `rejected` output of a row, counted by reason in Beam's metrics."""
    Metrics.counter("rows", "rejected_" + error.reason).inc()
    return beam.pvalue.TaggedOutput(REJECTED, rows.Rejection.of(record, error.reason, str(error)))


class PooledRowsFn(beam.DoFn):
    """Rows whose slow part runs on the process's thread pool; outputs leave in input order.

    A subclass sets up `self._pool` (`shared_pool`) in `setup`, hands work to it with `_submit`,
    yields `_ready(keep)` from `process`, and defines `_output(entry, result)`, which turns a
    finished row into its output on the bundle thread. `_flush_pending` lets a subclass start
    rows it buffered before the bundle ends.
    """

    AHEAD = 64

    def start_bundle(self):
        self._in_flight: collections.deque = collections.deque()

    def _submit(self, entry, work, *args) -> None:
        self._in_flight.append((entry, self._pool.submit(work, *args)))

    def _ready(self, keep: int):
        """Outputs of the oldest rows, until at most `keep` are in flight."""
        while len(self._in_flight) > keep:
            entry, future = self._in_flight.popleft()
            yield self._output(entry, future.result())

    def _flush_pending(self) -> None:
        """Submits rows a subclass holds back (a batch being filled); nothing by default."""

    def finish_bundle(self):
        self._flush_pending()
        for output in self._ready(0):
            # Outputs of finish_bundle need a window; both jobs only use the global window.
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(output.tag, GlobalWindows.windowed_value(output.value))
            else:
                yield GlobalWindows.windowed_value(output)
