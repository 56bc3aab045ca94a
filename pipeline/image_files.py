"""A row's image files → their bytes, or the row's reason code: shared by the shards and scoring jobs.

Both jobs refuse the same rows for the same reasons (`rows` lists them): a file outside the
images folder (a symlink out of it included), a missing or empty file, and a header that
announces too many pixels or is not an image's. Reads go through Beam's `FileSystems`
(local, gs://), in a thread pool per worker process (remote reads overlap; TF ops release
the GIL).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline import rows


@functools.lru_cache(maxsize=None)
def shared_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """One pool per worker process (and size), whatever the number of DoFn instances."""
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="images")


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
        from pipeline import images

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

    from pipeline import image_headers, images

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
    def status(data):
        return images.header_status(image_headers.image_dimensions(data), max_pixels)

    return status.get_concrete_function()
