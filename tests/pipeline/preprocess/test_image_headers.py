"""Image headers read with TF string ops: format, size and EXIF orientation before decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipeline.preprocess import image_headers
from tests.conftest import jpeg_bytes, png_bomb_bytes
from tests.pipeline.preprocess.test_images import FORMATS, SIZE, decode_both_ways, encode, top_band_image

def test_format_is_sniffed_from_content_not_name():
    png = FORMATS["png"](top_band_image())
    assert image_headers.image_format(tf.constant(png)).numpy() == b"png"
    assert image_headers.image_format(tf.constant(jpeg_bytes())).numpy() == b"jpeg"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    # A red top band and a green left band: every one of the eight orientations looks different.
    pixels = np.asarray(top_band_image()).copy()
    pixels[:, :30, 1] = 255
    data = encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())
    assert image_headers.exif_orientation(tf.constant(data)).numpy() == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB").resize((SIZE, SIZE)))
    ours = decode_both_ways(data)
    # Where the bands are must agree with Pillow's exif_transpose (colour within codec noise).
    for channel in (0, 1):
        assert np.mean(np.abs((ours[..., channel] > 128).astype(int) - (expected[..., channel] > 128).astype(int))) < 0.05


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def test_exif_is_found_behind_other_segments_and_not_in_comments():
    exif = Image.Exif()
    exif[0x0112] = 6
    with_exif = encode(top_band_image(), "JPEG", exif=exif.tobytes())
    plain = encode(top_band_image(), "JPEG")
    # An XMP APP1 and a comment that mentions "Exif\0\0" ahead of the real EXIF segment.
    xmp = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>")
    comment = _segment(0xFE, b"copied from Exif\0\0 data")
    assert image_headers.exif_orientation(tf.constant(with_exif[:2] + xmp + with_exif[2:])).numpy() == 6
    # A comment is not an EXIF segment: no orientation is read from it.
    assert image_headers.exif_orientation(tf.constant(plain[:2] + comment + plain[2:])).numpy() == 1


def test_header_dimensions_are_read_without_decoding():
    assert image_headers.image_dimensions(tf.constant(jpeg_bytes(64, 48))).numpy().tolist() == [48, 64]
    assert image_headers.image_dimensions(tf.constant(png_bomb_bytes(3000, 2000))).numpy().tolist() == [2000, 3000]
    gif = encode(Image.new("RGB", (70, 50)), "GIF")
    assert image_headers.image_dimensions(tf.constant(gif)).numpy().tolist() == [50, 70]




def _webp(kind: str, width: int = 70, height: int = 50) -> bytes:
    """A WebP of the given kind: 'VP8 ' (lossy), 'VP8L' (lossless) or 'VP8X' (extended, alpha)."""
    image = Image.new("RGBA" if kind == "VP8X" else "RGB", (width, height), (200, 40, 40, 128))
    data = encode(image, "WEBP", lossless=kind == "VP8L", quality=80)
    assert data[12:16] == kind.encode("ascii"), data[12:16]
    return data


HEADER_CASES = {
    "jpeg": lambda: encode(Image.new("RGB", (70, 50)), "JPEG"),
    "progressive-jpeg": lambda: encode(Image.new("RGB", (70, 50)), "JPEG", progressive=True),
    "png": lambda: encode(Image.new("RGB", (70, 50)), "PNG"),
    "gif": lambda: encode(Image.new("RGB", (70, 50)), "GIF"),
    "bmp": lambda: encode(Image.new("RGB", (70, 50)), "BMP"),
    # A top-down BMP stores its height as a negative number.
    "bmp-top-down": lambda: (lambda d: d[:22] + (2**32 - 50).to_bytes(4, "little") + d[26:])(encode(Image.new("RGB", (70, 50)), "BMP")),
    "webp-lossy": lambda: _webp("VP8 "),
    "webp-lossless": lambda: _webp("VP8L"),
    "webp-extended": lambda: _webp("VP8X"),
}


@pytest.mark.parametrize("name", sorted(HEADER_CASES))
def test_every_header_format_gives_its_size(name):
    data = HEADER_CASES[name]()
    assert image_headers.image_dimensions(tf.constant(data)).numpy().tolist() == [50, 70]
    # The same inside a graph, as the Beam job and serving run it.
    mapped = next(iter(tf.data.Dataset.from_tensors(data).map(image_headers.image_dimensions)))
    assert mapped.numpy().tolist() == [50, 70]


def _with_size(data: bytes, kind: str, width: int, height: int) -> bytes:
    """A WebP whose header announces another size (the pixels stay small)."""
    data = bytearray(data)
    if kind == "VP8 ":
        data[26:28] = width.to_bytes(2, "little")
        data[28:30] = height.to_bytes(2, "little")
    elif kind == "VP8L":
        data[21:25] = ((width - 1) | (height - 1) << 14 | (data[24] >> 4) << 28).to_bytes(4, "little")
    else:
        data[24:27] = (width - 1).to_bytes(3, "little")
        data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


@pytest.mark.parametrize("kind", ["VP8 ", "VP8L", "VP8X"])
def test_webp_bomb_is_refused_from_its_header(kind):
    """A 16383 x 16383 WebP would decode to about 800 MB; its header alone refuses it."""
    from pipeline.preprocess import images

    bomb = _with_size(_webp(kind), kind, 16383, 16383)
    assert image_headers.image_dimensions(tf.constant(bomb)).numpy().tolist() == [16383, 16383]
    image, status = images.decode_checked(tf.constant(bomb), SIZE)
    assert int(status) == images.HEADER_TOO_LARGE and image.numpy().max() == 0


@pytest.mark.parametrize("data", [b"", b"RIFF\x10\x00\x00\x00WEBPVP8 ", b"not an image", b"BM\x00"])
def test_unreadable_headers_are_refused_before_decoding(data):
    from pipeline.preprocess import images

    _, status = images.decode_checked(tf.constant(data), SIZE)
    assert int(status) == images.HEADER_UNREADABLE
