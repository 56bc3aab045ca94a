"""The synthetic tweets' images: a scene drawn as stripes, encoded in the formats tweets use.

Every image shows a scene (one of four), drawn as a stripe orientation with its own colour, so
a grayscale image still shows it, and a wrongly oriented (EXIF-ignored) photo shows another
scene. Formats are baseline, progressive and EXIF-rotated JPEG photos and PNG graphics (RGB,
RGBA, palette, grayscale); a few files carry the wrong extension, as on the web.
"""

from __future__ import annotations

import io
import random
import string

import numpy as np
from PIL import Image, ImageDraw

# Scene → (stripe orientation, RGB colour). Orientation alone identifies the scene.
SCENES = (
    ("horizontal", (200, 40, 40)),
    ("vertical", (40, 170, 60)),
    ("diagonal", (50, 70, 210)),
    ("antidiagonal", (220, 190, 40)),
)
# (format, PIL mode, weight): what a tweet-image crawl looks like. In the real data set's CSV,
# 85% of image URLs end in .jpg and 15% in .png; the weights below keep that split.
FORMATS = (
    ("jpeg", "RGB", 56),
    ("jpeg-progressive", "RGB", 15),
    ("jpeg-exif", "RGB", 10),
    ("jpeg", "L", 4),
    ("png", "RGB", 6),
    ("png", "RGBA", 5),
    ("png", "P", 3),
    ("png", "L", 1),
)
WRONG_EXTENSION_RATE = 0.03
DEFAULT_TEXTURE = 10.0


def scene_image(rng: random.Random, scene: int, long_side: int, texture: float) -> Image.Image:
    """Stripes in the scene's orientation and colour plus a few distractor shapes.

    Photos (JPEG) get sensor-like noise texture of standard deviation `texture`; graphics (PNG,
    as tweeted screenshots and cut-outs are) get 0 and stay flat, which is also why they
    compress well.
    """
    short_side = int(long_side * rng.uniform(0.56, 1.0))
    width, height = (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)
    orientation, colour = SCENES[scene]
    # Drawn at a quarter of the size and upscaled: fast, and the noise turns into soft texture
    # that compresses like a photo instead of like static.
    small_w, small_h = max(width // 4, 4), max(height // 4, 4)
    period = max(long_side // 24, 4)
    ys, xs = np.mgrid[0:small_h, 0:small_w]
    coordinate = {"horizontal": ys, "vertical": xs, "diagonal": xs + ys, "antidiagonal": xs - ys}[orientation]
    stripe = ((coordinate // max(period // 2, 1)) % 2).astype(np.float32)[..., None]
    colour_array = np.array(colour, np.float32)
    pixels = stripe * colour_array + (1.0 - stripe) * (0.35 * colour_array + 20.0)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, texture, size=(small_h, small_w, 1))
    small = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    image = small.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(1, 3)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        size = rng.randint(long_side // 20, long_side // 8)
        fill = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse([x0, y0, x0 + size, y0 + size], fill=fill)
    return image


def encode(rng: random.Random, image: Image.Image, kind: str, mode: str) -> tuple[bytes, str]:
    """Encodes in the given tweet-like format; returns (bytes, URL extension)."""
    buffer = io.BytesIO()
    if mode == "RGBA":
        image = image.convert("RGBA")
        alpha = np.full(image.size[::-1], 255, np.uint8)
        alpha[: image.size[1] // 10] = 0  # A transparent band, as in cut-out graphics.
        image.putalpha(Image.fromarray(alpha))
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    elif mode == "L":
        image = image.convert("L")
    if kind == "jpeg-exif":
        # Store the pixels rotated and say so in EXIF, as phone cameras do.
        orientation = rng.choice((3, 6, 8))
        stored = image.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                  8: Image.Transpose.ROTATE_270}[orientation])
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored.save(buffer, "JPEG", quality=85, exif=exif.tobytes())
    elif kind.startswith("jpeg"):
        image.save(buffer, "JPEG", quality=rng.choice((75, 85, 92)), progressive=kind.endswith("progressive"))
    else:
        image.save(buffer, "PNG", compress_level=3)
    extension = "jpg" if kind.startswith("jpeg") else "png"
    if rng.random() < WRONG_EXTENSION_RATE:
        extension = "png" if extension == "jpg" else "jpg"
    return buffer.getvalue(), extension


def image_url(rng: random.Random, tweet_id: str, extension: str) -> str:
    media = "".join(rng.choices(string.ascii_letters + string.digits, k=15))
    query = rng.choice(("", "", "?format=jpg&name=large", "?name=orig"))
    return f"http://pbs.twimg.com/media/{media}.{extension}{query}"
