"""Deterministic synthetic tweet pairs in the real dataset's schema (`make data`).

Writes `tweets.csv` (columns `id_1,text_1,image_1,id_2,text_2,image_2,label`), the images as
`images/<id>.<ext>`, and `vocab.txt`, a WordPiece vocabulary covering the generated texts.
Same `--seed` and `--pairs` ⇒ byte-identical output.

The labelling rule needs BOTH modalities of BOTH tweets:

- every text names a *topic* (one of four) and takes a *stance* on it (affirm or deny);
- every image shows a *scene* (one of four), drawn as a stripe orientation with its own colour,
  so a grayscale image still shows it, and a wrongly oriented (EXIF-ignored) photo shows
  another scene;
- a pair is `Implies` when topics match, scenes match and stances agree; `Contradictory` when
  topics and scenes match and stances differ; `NoEntailment` otherwise.

About half of the NoEntailment pairs share the topic but not the scene, so a text-only model
cannot tell them from the other two classes; the rest share the scene but not the topic, so an
image-only model cannot either, and a model fed image_1 twice always sees matching scenes.

Images come in the formats real tweets have: baseline and progressive JPEG (some with an EXIF
orientation, pixels stored rotated), PNG RGB / RGBA / palette / grayscale, long side 600–2048
px by default; a few files carry the wrong extension, as on the web. Texts carry newlines,
quotes, emoji, URLs, Arabic and Korean. Class ratios default to the real set's 84/8/8.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import random
import string
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

from pipeline import cli
from pipeline.features import LABELS

TOPICS = (
    ("harbour bridge", "bridge", "the old bridge"),
    ("city marathon", "marathon", "the race"),
    ("river festival", "festival", "the fair"),
    ("night market", "market", "the bazaar"),
)
STANCES = (
    ("is open today", "is going ahead", "was confirmed", "is on as planned"),
    ("is closed today", "was cancelled", "is not happening", "is off for now"),
)
# Scene → (stripe orientation, RGB colour). Orientation alone identifies the scene.
SCENES = (
    ("horizontal", (200, 40, 40)),
    ("vertical", (40, 170, 60)),
    ("diagonal", (50, 70, 210)),
    ("antidiagonal", (220, 190, 40)),
)
OPENERS = ("BREAKING:", "Update —", "Just heard", "Can confirm", "Apparently", "Locals say", "")
FILLERS = (
    "more soon",
    "stay safe everyone",
    'officials said "no comment"',
    "photos below",
    "thread 👇",
    "#news",
    "wow 😮",
    "هذا مهم",
    "정말 놀랍다",
    "source: radio",
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


def pair_label(topics: tuple[int, int], scenes: tuple[int, int], stances: tuple[int, int]) -> str:
    """The labelling rule in one place (see the module docstring)."""
    if topics[0] != topics[1] or scenes[0] != scenes[1]:
        return "NoEntailment"
    return "Implies" if stances[0] == stances[1] else "Contradictory"


def _tweet_text(rng: random.Random, topic: int, stance: int) -> str:
    subject = rng.choice(TOPICS[topic])
    claim = f"{rng.choice(OPENERS)} {subject} {rng.choice(STANCES[stance])}".strip()
    if rng.random() < 0.5:
        claim = claim[0].upper() + claim[1:]
    extras = rng.sample(FILLERS, rng.randint(0, 2))
    if rng.random() < 0.4:
        extras.append("https://t.co/" + "".join(rng.choices(string.ascii_letters + string.digits, k=10)))
    separator = "\n" if rng.random() < 0.3 else " "
    return separator.join([claim + rng.choice(("", ".", "!", "!!"))] + extras)


def _scene_image(rng: random.Random, scene: int, long_side: int, texture: float) -> Image.Image:
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


def _encode(rng: random.Random, image: Image.Image, kind: str, mode: str) -> tuple[bytes, str]:
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


def _image_url(rng: random.Random, tweet_id: str, extension: str) -> str:
    media = "".join(rng.choices(string.ascii_letters + string.digits, k=15))
    query = rng.choice(("", "", "?format=jpg&name=large", "?name=orig"))
    return f"http://pbs.twimg.com/media/{media}.{extension}{query}"


def _pair_plan(rng: random.Random, label: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Topics, scenes and stances of both tweets for a drawn label (hard negatives included)."""
    n_topics, n_scenes = len(TOPICS), len(SCENES)
    topic, scene = rng.randrange(n_topics), rng.randrange(n_scenes)
    stance = rng.randrange(2)
    if label == "Implies":
        return (topic, topic), (scene, scene), (stance, stance)
    if label == "Contradictory":
        return (topic, topic), (scene, scene), (stance, 1 - stance)
    other_topic = (topic + rng.randrange(1, n_topics)) % n_topics
    other_scene = (scene + rng.randrange(1, n_scenes)) % n_scenes
    stances = (stance, rng.randrange(2))
    kind = rng.random()
    if kind < 0.45:  # Same topic, different scene: only the images tell.
        return (topic, topic), (scene, other_scene), stances
    if kind < 0.9:  # Same scene, different topic: only the texts tell.
        return (topic, other_topic), (scene, scene), stances
    return (topic, other_topic), (scene, other_scene), stances


def vocabulary() -> list[str]:
    """WordPiece vocabulary covering the generator's texts (lower-cased, like BERT uncased)."""
    words: set[str] = set()
    for phrase in [p for topic in TOPICS for p in topic] + [p for s in STANCES for p in s] + list(OPENERS) + list(FILLERS):
        for token in phrase.lower().replace('"', " ").split():
            words.add(token.strip(string.punctuation + "—👇😮") or token)
    words |= {"https", "t", "co", "news", "source"}
    pieces = list(string.ascii_lowercase + string.digits)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(string.punctuation) + ["—", "👇", "😮"]
    vocab += pieces + ["##" + p for p in pieces]
    vocab += sorted(w for w in words if w and w not in vocab)
    return vocab


def generate(out_dir: str, pairs: int, seed: int, ratios: tuple[float, float, float],
             min_side: int = 600, max_side: int = 2048, log_every: float = 5.0,
             kinds: tuple[str, ...] | None = None, texture: float = DEFAULT_TEXTURE) -> dict[str, int]:
    """Writes tweets.csv, images/ and vocab.txt under out_dir; returns label counts.

    `texture` is the photos' noise level: 10 gives about 1 bit per pixel at JPEG q85 (a busy
    photo), 2 about 0.55 (200 KB at 2048 x 1536, like `../shared/MEASUREMENTS.md`'s images).

    `kinds` keeps only those entries of FORMATS (e.g. ("jpeg",) for baseline JPEGs only, which
    the benchmark uses to show what DCT scaling does); None keeps the tweet-like mix.
    """
    if pairs < 1:
        raise ValueError("--pairs must be at least 1")
    formats = [entry for entry in FORMATS if kinds is None or entry[0] in kinds]
    if not formats:
        raise ValueError(f"--formats must name some of {sorted({kind for kind, _, _ in FORMATS})}")
    if texture < 0:
        raise ValueError("--texture must not be negative")
    if not 16 <= min_side <= max_side:
        raise ValueError("image sides must satisfy 16 <= --min-side <= --max-side")
    rng = random.Random(seed)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    # Exact class counts from the ratios (largest remainder), then a seeded shuffle.
    total = sum(ratios)
    quotas = [pairs * r / total for r in ratios]
    counts = [int(q) for q in quotas]
    for index in sorted(range(3), key=lambda i: quotas[i] - counts[i], reverse=True)[: pairs - sum(counts)]:
        counts[index] += 1
    labels = [name for name, count in zip(LABELS, counts) for _ in range(count)]
    rng.shuffle(labels)
    used_ids: set[str] = set()

    def new_id() -> str:
        while True:
            tweet_id = str(rng.randrange(10**18, 1_700_000_000_000_000_000))
            if tweet_id not in used_ids:
                used_ids.add(tweet_id)
                return tweet_id

    started = last_log = time.monotonic()
    with open(os.path.join(out_dir, "tweets.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_1", "text_1", "image_1", "id_2", "text_2", "image_2", "label"])
        for index, label in enumerate(labels):
            topics, scenes, stances = _pair_plan(rng, label)
            if pair_label(topics, scenes, stances) != label:
                raise AssertionError("pair plan disagrees with the labelling rule")
            row = []
            for side in range(2):
                tweet_id = new_id()
                kind, mode, _ = rng.choices(formats, weights=[w for _, _, w in formats])[0]
                long_side = rng.randint(min_side, max_side)
                image = _scene_image(rng, scenes[side], long_side, texture if kind.startswith("jpeg") else 0.0)
                data, extension = _encode(rng, image, kind, mode)
                with open(os.path.join(image_dir, f"{tweet_id}.{extension}"), "wb") as image_file:
                    image_file.write(data)
                row += [tweet_id, _tweet_text(rng, topics[side], stances[side]), _image_url(rng, tweet_id, extension)]
            writer.writerow(row + [label])
            now = time.monotonic()
            if now - last_log >= log_every:
                last_log = now
                logging.info("generated %d/%d pairs (%.1f pairs/s)", index + 1, pairs, (index + 1) / (now - started))
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(vocabulary()) + "\n")
    return dict(zip(LABELS, counts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=1400, help="number of pairs (default: %(default)s, the real set's size)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--ratios", type=float, nargs=3, default=(109, 109, 1182),
                        metavar=("CONTRADICTORY", "IMPLIES", "NO_ENTAILMENT"),
                        help="relative class frequencies (default: the real set's 109 109 1182)")
    parser.add_argument("--min-side", type=int, default=600, help="smallest long image side in px (default: %(default)s)")
    parser.add_argument("--max-side", type=int, default=2048, help="largest long image side in px (default: %(default)s)")
    parser.add_argument("--formats", nargs="+", choices=sorted({kind for kind, _, _ in FORMATS}),
                        help="only these image kinds (default: the tweet-like mix of all)")
    parser.add_argument("--texture", type=float, default=DEFAULT_TEXTURE,
                        help="noise level of the photos: higher means more bytes per pixel (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    try:
        counts = generate(args.out, args.pairs, args.seed, tuple(args.ratios), args.min_side, args.max_side,
                          kinds=tuple(args.formats) if args.formats else None, texture=args.texture)
    except (ValueError, OSError) as error:
        return cli.report(error)
    print(f"wrote {args.pairs} pairs to {args.out} in {time.monotonic() - started:.1f}s: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
