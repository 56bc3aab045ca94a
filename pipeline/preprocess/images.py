"""Image bytes → the stored, resized RGB image, as TF ops: one code path for the Beam job and serving.

The Beam job calls these once per image before writing shards; the exported model (see
`model.export`) calls the very same functions inside its serving signature, so a pair
scored online goes through exactly what a training example went through.

The header is checked first (`image_headers`): an unknown format or a size above
`max_pixels` is refused before any pixel is decoded. JPEG EXIF orientation is honoured; CMYK,
grayscale, palette, 16-bit and RGBA images become RGB (transparency is composited over white,
as a browser shows it). Large JPEGs are downscaled in the DCT domain while decoding (`ratio`
2/4/8), which is most of the speed-up over the notebook.
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.features import DEFAULT_MAX_PIXELS
from pipeline.preprocess import image_headers

# Orientation → (transpose, flip rows, flip columns): the transposes Pillow's exif_transpose does,
# as one transpose then one reverse. Index 0 and invalid values mean upright.
_SWAPS = (False, False, False, False, False, True, True, True, True)
_FLIP_ROWS = (False, False, False, True, True, False, False, True, True)
_FLIP_COLUMNS = (False, False, True, True, False, False, True, True, False)


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Turns stored pixels upright for an EXIF orientation (1..8; anything else is upright).

    Two ops with computed arguments instead of a nine-way switch: graphs with fewer branch
    functions trace and start faster, and identity arguments cost nothing at run time.
    """
    index = tf.clip_by_value(tf.cast(orientation, tf.int32), 0, 8)
    swap = tf.gather(_SWAPS, index)
    image = tf.transpose(image, tf.where(swap, [1, 0, 2], [0, 1, 2]))
    flips = tf.stack([tf.gather(_FLIP_ROWS, index), tf.gather(_FLIP_COLUMNS, index)])
    return tf.reverse(image, tf.boolean_mask(tf.constant([0, 1]), flips))


_DCT_RATIOS = (8, 4, 2, 1)


def _decode_jpeg(data: tf.Tensor, dimensions: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG decode with the largest DCT downscale that keeps the short side >= image_size.

    When downscaling, the fast integer IDCT is used: its error is far below what the resize
    to image_size averages away, and it roughly halves the decode time of baseline JPEGs.
    """
    short_side = tf.reduce_min(dimensions)
    fits = [short_side >= ratio * image_size for ratio in _DCT_RATIOS[:-1]] + [tf.constant(True)]
    index = tf.argmax(tf.stack(fits), output_type=tf.int32)
    branches = [
        (lambda r=ratio: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_FAST" if r > 1 else ""))
        for ratio in _DCT_RATIOS
    ]
    image = tf.switch_case(index, branches)
    return apply_orientation(image, image_headers.exif_orientation(data))


def _decode_png(data: tf.Tensor, resize) -> tf.Tensor:
    """PNG of any type (palette, gray, 16-bit, alpha), resized by `resize`; alpha over white.

    Work at full size is only the decode: gray is expanded to RGB and alpha is composited
    after the resize (both are per-pixel and the resize is linear, so expanding gray after it
    is exact; compositing after it differs only along transparency edges). Doing either at
    full size costs more than decoding.
    """
    image = tf.io.decode_png(data)  # Native channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
    channels = tf.shape(image)[-1]
    resized = resize(image)  # float32 [S, S, channels]
    colour = tf.gather(resized, tf.where(channels >= 3, [0, 1, 2], [0, 0, 0]), axis=-1)
    alpha = tf.where(tf.equal(channels % 2, 0), resized[..., -1:] / 255.0, 1.0)
    return colour * alpha + 255.0 * (1.0 - alpha)


def _resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Area averaging when both sides shrink, antialiased bilinear otherwise (float32 output).

    Against a Lanczos resize of the full decode, area averaging is closer than bilinear and,
    after DCT scaling, cheaper per JPEG (docs/benchmarks.md); but it enlarges blockily, hence
    bilinear for images smaller than the target.
    """
    size = [image_size, image_size]
    return tf.cond(
        tf.reduce_min(tf.shape(image)[:2]) >= image_size,
        lambda: tf.image.resize(image, size, method="area"),
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
    )


def _decode_other(data: tf.Tensor) -> tf.Tensor:
    """GIF (first frame), BMP, WebP; anything else raises InvalidArgumentError."""
    return tf.io.decode_image(data, channels=3, expand_animations=False)


# Why an image was refused before decoding (see `decode_checked`).
HEADER_OK, HEADER_TOO_LARGE, HEADER_UNREADABLE = 0, 1, 2


def header_status(dimensions: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """HEADER_OK, HEADER_TOO_LARGE (more than `max_pixels` announced) or HEADER_UNREADABLE
    (not JPEG, PNG, GIF, BMP or WebP, or a header too short to hold a size: fields past the
    end read as 0), from the [height, width] of `image_headers.image_dimensions`; int32 []."""
    return tf.where(
        tf.reduce_any(dimensions <= 0),
        HEADER_UNREADABLE,
        tf.where(dimensions[0] * dimensions[1] > max_pixels, HEADER_TOO_LARGE, HEADER_OK),
    )


def _decode_resized(data: tf.Tensor, dimensions: tf.Tensor, image_size: int, max_pixels: int) -> tf.Tensor:
    """Decode by format, then resize (float32 [S, S, 3]); the header has been checked."""
    fmt = image_headers.image_format(data)
    index = tf.argmax(tf.equal(fmt, ["jpeg", "png"]), output_type=tf.int32)
    index = tf.where(tf.equal(fmt, "jpeg") | tf.equal(fmt, "png"), index, 2)

    def checked_resize(image):
        # A header that understated the size (a GIF frame beyond its screen) is still caught.
        pixels = tf.cast(tf.shape(image)[0] * tf.shape(image)[1], tf.int64)
        check = tf.debugging.Assert(pixels <= max_pixels, ["image has more pixels than its header announced"])
        with tf.control_dependencies([check]):
            resized = _resize(image, image_size)
        resized.set_shape([image_size, image_size, None])
        return resized

    resized = tf.switch_case(
        index,
        [
            lambda: checked_resize(_decode_jpeg(data, dimensions, image_size)),
            lambda: _decode_png(data, checked_resize),
            lambda: checked_resize(_decode_other(data)),
        ],
    )
    resized.set_shape([image_size, image_size, 3])
    return resized


def decode_checked(data: tf.Tensor, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Encoded bytes → (upright RGB uint8 [S, S, 3], header status int32 []).

    The header is read first; unless its status is HEADER_OK nothing is decoded and the image
    is black, so the caller knows the cause without parsing an error message. Data that passes
    the header check but is corrupt still raises `tf.errors.InvalidArgumentError` from the
    codec. Resizing stretches to a square with area averaging (antialiased bilinear when
    enlarging), as the published baseline stretches too.
    """
    data = tf.convert_to_tensor(data, tf.string)
    dimensions = image_headers.image_dimensions(data)
    status = header_status(dimensions, max_pixels)
    resized = tf.cond(
        tf.equal(status, HEADER_OK),
        lambda: _decode_resized(data, dimensions, image_size, max_pixels),
        lambda: tf.zeros([image_size, image_size, 3]),
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8), status


UNREADABLE_MESSAGE = "not a JPEG, PNG, GIF, BMP or WebP image with a readable header"


# The status of an image whose header passed but whose codec failed (truncated or corrupt data),
# and of no bytes at all; each status's message, and the shards job's reason code for it.
UNDECODABLE, EMPTY = 3, 4
STATUS_MESSAGES = ("", "header announces more pixels than allowed", UNREADABLE_MESSAGE,
                   "the image data is corrupt or truncated (the codec refused it)", "the image is empty (0 bytes)")
STATUS_REASONS = ("", "image_too_large", "undecodable_image", "undecodable_image", "empty_image")


def decode_images(data: tf.Tensor, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """A batch of encoded images [B] → (uint8 [B, image_size, image_size, 3], status int32 [B]).

    Serving: one bad image must not fail its whole request. A graph cannot catch an op's
    error, but tf.data can drop the elements whose map function failed (`ignore_errors`), so
    each image is decoded as an element carrying its index, and the survivors are scattered
    back in place. A refused image is black, with status HEADER_TOO_LARGE, HEADER_UNREADABLE,
    UNDECODABLE or EMPTY (`STATUS_MESSAGES` says why, `STATUS_REASONS` with the shards job's
    code); HEADER_OK otherwise. The map also decodes the batch's images in parallel, which
    `map_fn` did not.
    """
    data = tf.convert_to_tensor(data, tf.string)
    count = tf.size(data)
    decoded = (
        tf.data.Dataset.from_tensor_slices((tf.range(count), data))
        .map(lambda index, item: (index, *decode_checked(item, image_size, max_pixels)),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()
    )
    # One sentinel element, so the batch below exists for an empty request too.
    sentinel = tf.data.Dataset.from_tensors((tf.constant(-1), tf.zeros([image_size, image_size, 3], tf.uint8), tf.constant(0)))
    index, pixels, status = decoded.concatenate(sentinel).batch(tf.cast(count, tf.int64) + 1).get_single_element()
    kept = index >= 0
    places = tf.boolean_mask(index, kept)[:, None]
    pixels = tf.scatter_nd(places, tf.boolean_mask(pixels, kept), [count, image_size, image_size, 3])
    found = tf.scatter_nd(places, tf.ones_like(places[:, 0], tf.bool), [count])
    status = tf.where(found, tf.scatter_nd(places, tf.boolean_mask(status, kept), [count]), UNDECODABLE)
    return pixels, tf.where(tf.equal(tf.strings.length(data), 0), EMPTY, status)


def encode_for_storage(image: tf.Tensor, quality: int) -> tf.Tensor:
    """The resized image as stored in a shard (JPEG: ~6 KB at 128 px instead of 48 KB raw)."""
    return tf.io.encode_jpeg(image, quality=quality, chroma_downsampling=False)
