"""Image headers read with TF string ops: format, size and EXIF orientation, before decoding.

Both the Beam job and the serving signature run these (serving is a TF graph, so they are TF
ops, not Python): the format is sniffed from magic bytes, never from the file name; the size
comes from each format's header (JPEG SOF, PNG IHDR, GIF logical screen, BMP info header,
WebP VP8/VP8L/VP8X), so that a decompression bomb is refused before any pixel is decoded;
and the EXIF orientation of a JPEG is found without a graph loop over its segments.
"""

from __future__ import annotations

import tensorflow as tf

# ---------------------------------------------------------------------------------------------
# Reading header fields with string ops.
# ---------------------------------------------------------------------------------------------


def _read_uint(data: tf.Tensor, position, width: int, little_endian) -> tf.Tensor:
    """Unsigned integer of `width` bytes at `position` (scalar or vector); 0 past the end."""
    position = tf.cast(position, tf.int64)
    size = tf.cast(tf.strings.length(data), tf.int64)
    position = tf.clip_by_value(position, 0, size)
    position = tf.cast(position, tf.int32)
    chunk = tf.strings.substr(data, position, tf.fill(tf.shape(position), width))
    chunk = tf.strings.substr(tf.strings.join([chunk, tf.constant(b"\0" * width)]), 0, width)
    digits = tf.cast(tf.io.decode_raw(chunk, tf.uint8, fixed_length=width), tf.int64)
    big = tf.constant([256 ** (width - 1 - i) for i in range(width)], tf.int64)
    weights = tf.where(tf.cast(little_endian, tf.bool), tf.reverse(big, [0]), big)
    return tf.reduce_sum(digits * weights, axis=-1)


def _starts_with(data: tf.Tensor, prefix: bytes, position=0) -> tf.Tensor:
    """Whether `prefix` is at `position`; False (not an error) past the end."""
    if isinstance(position, int) and position == 0:
        return tf.equal(tf.strings.substr(data, 0, len(prefix)), prefix)
    position = tf.clip_by_value(tf.cast(position, tf.int32), 0, tf.strings.length(data))
    return tf.equal(tf.strings.substr(data, position, len(prefix)), prefix)


def image_format(data: tf.Tensor) -> tf.Tensor:
    """Format sniffed from magic bytes: 'jpeg', 'png', 'gif', 'bmp', 'webp' or 'unknown'."""
    checks = [
        ("jpeg", _starts_with(data, b"\xff\xd8\xff")),
        ("png", _starts_with(data, b"\x89PNG\r\n\x1a\n")),
        ("gif", _starts_with(data, b"GIF8")),
        ("bmp", _starts_with(data, b"BM")),
        ("webp", _starts_with(data, b"RIFF") & _starts_with(data, b"WEBP", 8)),
    ]
    result = tf.constant("unknown")
    for name, check in reversed(checks):
        result = tf.where(check, tf.constant(name), result)
    return result


def image_dimensions(data: tf.Tensor) -> tf.Tensor:
    """[height, width] from the header without decoding pixels; [-1, -1] if not readable.

    A corrupt JPEG header raises `InvalidArgumentError` (from `extract_jpeg_shape`).
    """
    fmt = image_format(data)

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    def png():  # IHDR: width then height, big-endian, at byte 16.
        return tf.stack([_read_uint(data, 20, 4, False), _read_uint(data, 16, 4, False)])

    def gif():  # Logical screen: width then height, little-endian, at byte 6.
        return tf.stack([_read_uint(data, 8, 2, True), _read_uint(data, 6, 2, True)])

    def bmp():  # BITMAPINFOHEADER: width then (possibly negative) height at byte 18.
        height = _read_uint(data, 22, 4, True)
        height = tf.where(height >= 2**31, 2**32 - height, height)
        return tf.stack([height, _read_uint(data, 18, 4, True)])

    def webp():
        return _webp_dimensions(data)

    def unknown():
        return tf.constant([-1, -1], tf.int64)

    index = tf.argmax(tf.equal(fmt, ["jpeg", "png", "gif", "bmp", "webp", "unknown"]), output_type=tf.int32)
    return tf.switch_case(index, [jpeg, png, gif, bmp, webp, unknown])


def _webp_dimensions(data: tf.Tensor) -> tf.Tensor:
    """[height, width] from the first chunk of a WebP file (RFC 9649); [-1, -1] if not readable.

    VP8 (lossy): key-frame start code 9D 01 2A at byte 23, then width and height as 14-bit
    little-endian fields at 26 and 28 (the top 2 bits are a scale). VP8L (lossless): the
    signature byte 2F at 20, then 14 bits of width - 1 and 14 bits of height - 1 in a
    little-endian word at 21. VP8X (extended): canvas width - 1 and height - 1, 24 bits each,
    little-endian, at 24 and 27.
    """
    chunk = tf.strings.substr(data, 12, 4)
    vp8 = tf.stack([_read_uint(data, 28, 2, True) % 16384, _read_uint(data, 26, 2, True) % 16384])
    bits = _read_uint(data, 21, 4, True)
    vp8l = tf.stack([(bits // 16384) % 16384 + 1, bits % 16384 + 1])
    vp8x = tf.stack([_read_uint(data, 27, 3, True) + 1, _read_uint(data, 24, 3, True) + 1])
    unreadable = tf.constant([-1, -1], tf.int64)
    result = tf.where(tf.equal(chunk, b"VP8X") & (tf.strings.length(data) >= 30), vp8x, unreadable)
    result = tf.where(tf.equal(chunk, b"VP8L") & _starts_with(data, b"\x2f", 20), vp8l, result)
    return tf.where(tf.equal(chunk, b"VP8 ") & _starts_with(data, b"\x9d\x01\x2a", 23), vp8, result)


# ---------------------------------------------------------------------------------------------
# EXIF orientation (JPEG APP1 segment → TIFF IFD0 tag 0x0112), read with string ops.
# ---------------------------------------------------------------------------------------------

_MAX_IFD_ENTRIES = 64
_EXIF_HEADER = b"Exif\0\0"
# APP1 segments are at most 64 KiB and come before the image data, near the start of the file.
_EXIF_SEARCH_BYTES = 1 << 17


def _tiff_orientation(data: tf.Tensor, tiff_start: tf.Tensor) -> tf.Tensor:
    """Orientation tag of the TIFF block at `tiff_start`; 1 if the block or the tag is not there."""
    tiff_start = tf.cast(tiff_start, tf.int64)
    little = _starts_with(data, b"II", tiff_start)
    valid = little | _starts_with(data, b"MM", tiff_start)
    ifd = tiff_start + _read_uint(data, tiff_start + 4, 4, little)
    count = tf.minimum(_read_uint(data, ifd, 2, little), _MAX_IFD_ENTRIES)
    entries = ifd + 2 + 12 * tf.range(count, dtype=tf.int64)
    tags = _read_uint(data, entries, 2, little)
    values = _read_uint(data, entries + 8, 2, little)
    found = tf.boolean_mask(values, tf.equal(tags, 0x0112))
    orientation = tf.concat([found, tf.constant([1], tf.int64)], 0)[0]
    return tf.where(valid & (orientation >= 1) & (orientation <= 8), orientation, 1)


def exif_orientation(data: tf.Tensor) -> tf.Tensor:
    """EXIF orientation (1..8) of a JPEG; 1 (upright) when absent or not a JPEG.

    One string search instead of a graph loop over the segment list: the first "Exif\\0\\0"
    in the file's head counts when the APP1 marker FFE1 and a length precede it. Entropy-coded
    data cannot fake that (every FF there is followed by 00 or a restart code); a comment
    quoting those bytes ahead of the real segment would hide the orientation (tested).
    """
    head = tf.strings.substr(data, 0, _EXIF_SEARCH_BYTES)
    parts = tf.strings.split(head, sep=_EXIF_HEADER, maxsplit=1)
    position = tf.cast(tf.strings.length(parts[0]), tf.int64)  # Of "Exif\0\0", if found.
    marker = _read_uint(data, position - 4, 2, False)
    found = (
        tf.equal(tf.size(parts), 2)
        & tf.equal(marker, 0xFFE1)
        & (position >= 6)
        & _starts_with(data, b"\xff\xd8")
    )
    orientation = _tiff_orientation(data, position + len(_EXIF_HEADER))
    return tf.where(found, orientation, tf.constant(1, tf.int64))
