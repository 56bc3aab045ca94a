"""Image decoding and resizing: the TF functions the Beam job and serving share."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipeline.preprocess import images
from tests.conftest import jpeg_bytes, png_bomb_bytes

SIZE = 32


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def top_band_image(width=120, height=90) -> Image.Image:
    """Red band over the top third, black elsewhere: orientation and colour are easy to check."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 3, :, 0] = 255
    return Image.fromarray(pixels)


def decode_both_ways(data: bytes, size: int = SIZE) -> np.ndarray:
    """Decodes eagerly and inside Dataset.map; the two must agree exactly."""
    eager, status = images.decode_checked(tf.constant(data), size)
    assert int(status) == images.HEADER_OK
    mapped = next(iter(tf.data.Dataset.from_tensors(data).map(lambda d: images.decode_checked(d, size)[0]))).numpy()
    np.testing.assert_array_equal(eager.numpy(), mapped)
    return eager.numpy()


FORMATS = {
    "jpeg": lambda im: encode(im, "JPEG", quality=95),
    "progressive-jpeg": lambda im: encode(im, "JPEG", quality=95, progressive=True),
    "cmyk-jpeg": lambda im: encode(im.convert("CMYK"), "JPEG", quality=95),
    "gray-jpeg": lambda im: encode(im.convert("L"), "JPEG", quality=95),
    "png": lambda im: encode(im, "PNG"),
    "rgba-png": lambda im: encode(im.convert("RGBA"), "PNG"),
    "palette-png": lambda im: encode(im.convert("P"), "PNG"),
    "gray-png": lambda im: encode(im.convert("L"), "PNG"),
    "gif": lambda im: encode(im, "GIF"),
    "bmp": lambda im: encode(im, "BMP"),
    "webp": lambda im: encode(im, "WEBP", lossless=True),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_tweet_format_decodes_to_upright_rgb(name):
    image = decode_both_ways(FORMATS[name](top_band_image()))
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    top, bottom = image[2].astype(float).mean(axis=0), image[-3].astype(float).mean(axis=0)
    if name.startswith("gray"):
        assert top.mean() > 50 and bottom.max() < 10
    else:
        assert top[0] > 230 and top[1] < 25 and bottom.max() < 10, (top, bottom)


def test_sixteen_bit_png_becomes_eight_bit_rgb():
    pixels = np.zeros((40, 40), np.uint16)
    pixels[:20] = 65535
    image = decode_both_ways(encode(Image.fromarray(pixels), "PNG"))
    assert image[2, 2].tolist() == [255, 255, 255] and image[-3, 2].tolist() == [0, 0, 0]


def test_transparent_pixels_are_composited_over_white():
    rgba = np.zeros((40, 40, 4), np.uint8)  # Fully transparent black.
    image = decode_both_ways(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert image.min() == 255


def test_large_jpeg_uses_dct_scaling_and_matches_full_decode():
    big = Image.fromarray(np.kron(np.random.default_rng(0).integers(0, 255, (16, 12, 3)), np.ones((64, 64, 1))).astype(np.uint8))
    data = encode(big, "JPEG", quality=92)
    fast = images.decode_checked(tf.constant(data), SIZE)[0].numpy().astype(float)
    full = tf.image.resize(tf.io.decode_jpeg(data), [SIZE, SIZE], method="area").numpy()  # Same filter, full decode.
    assert np.abs(fast - full).mean() < 3.0


def test_decompression_bomb_is_refused_before_decoding():
    image, status = images.decode_checked(tf.constant(png_bomb_bytes()), SIZE)
    assert int(status) == images.HEADER_TOO_LARGE and image.numpy().max() == 0


@pytest.mark.parametrize("data", [b"", b"not an image at all"])
def test_garbage_is_refused_by_its_header(data):
    image, status = images.decode_checked(tf.constant(data), SIZE)
    assert int(status) == images.HEADER_UNREADABLE and image.numpy().max() == 0


def test_truncated_bytes_raise_from_the_codec():
    with pytest.raises(tf.errors.InvalidArgumentError):
        images.decode_checked(tf.constant(jpeg_bytes()[:200]), SIZE)


