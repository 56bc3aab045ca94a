"""Deterministic synthetic tweet pairs in the real data set's schema (`make data`).

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

import csv
import logging
import os
import random
import time

from pipeline import cli
from pipeline.features import CSV_COLUMNS, LABELS
from pipeline.synthetic import images, texts


def pair_label(topics: tuple[int, int], scenes: tuple[int, int], stances: tuple[int, int]) -> str:
    """The labelling rule in one place (see the module docstring)."""
    if topics[0] != topics[1] or scenes[0] != scenes[1]:
        return "NoEntailment"
    return "Implies" if stances[0] == stances[1] else "Contradictory"


def _pair_plan(rng: random.Random, label: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Topics, scenes and stances of both tweets for a drawn label (hard negatives included)."""
    n_topics, n_scenes = len(texts.TOPICS), len(images.SCENES)
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


def generate(out_dir: str, pairs: int, seed: int, ratios: tuple[float, float, float],
             min_side: int = 600, max_side: int = 2048, log_every: float = 5.0,
             kinds: tuple[str, ...] | None = None, texture: float = images.DEFAULT_TEXTURE) -> dict[str, int]:
    """Writes tweets.csv, images/ and vocab.txt under out_dir; returns label counts.

    `texture` is the photos' noise level: higher means more bytes per pixel (10 is a busy
    photo; 2, at 2048 px, gives tweet-size files of about 200 KB).

    `kinds` keeps only those entries of FORMATS (e.g. ("jpeg",) for baseline JPEGs only, which
    the benchmark uses to show what DCT scaling does); None keeps the tweet-like mix.
    """
    if pairs < 1:
        raise ValueError("--pairs must be at least 1")
    formats = [entry for entry in images.FORMATS if kinds is None or entry[0] in kinds]
    if not formats:
        raise ValueError(f"--formats must name some of {sorted({kind for kind, _, _ in images.FORMATS})}")
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
        writer.writerow(CSV_COLUMNS)
        for index, label in enumerate(labels):
            topics, scenes, stances = _pair_plan(rng, label)
            if pair_label(topics, scenes, stances) != label:
                raise AssertionError("pair plan disagrees with the labelling rule")
            row = []
            for side in range(2):
                tweet_id = new_id()
                kind, mode, _ = rng.choices(formats, weights=[w for _, _, w in formats])[0]
                long_side = rng.randint(min_side, max_side)
                image = images.scene_image(rng, scenes[side], long_side, texture if kind.startswith("jpeg") else 0.0)
                data, extension = images.encode(rng, image, kind, mode)
                with open(os.path.join(image_dir, f"{tweet_id}.{extension}"), "wb") as image_file:
                    image_file.write(data)
                row += [tweet_id, texts.tweet_text(rng, topics[side], stances[side]), images.image_url(rng, tweet_id, extension)]
            writer.writerow(row + [label])
            now = time.monotonic()
            if now - last_log >= log_every:
                last_log = now
                logging.info("generated %d/%d pairs (%.1f pairs/s)", index + 1, pairs, (index + 1) / (now - started))
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(texts.vocabulary()) + "\n")
    return dict(zip(LABELS, counts))


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m pipeline.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=1400, help="number of pairs (default: %(default)s, the real set's size)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--ratios", type=float, nargs=3, default=(109, 109, 1182),
                        metavar=("CONTRADICTORY", "IMPLIES", "NO_ENTAILMENT"),
                        help="relative class frequencies (default: the real set's 109 109 1182)")
    parser.add_argument("--min-side", type=int, default=600, help="smallest long image side in px (default: %(default)s)")
    parser.add_argument("--max-side", type=int, default=2048, help="largest long image side in px (default: %(default)s)")
    parser.add_argument("--formats", nargs="+", choices=sorted({kind for kind, _, _ in images.FORMATS}),
                        help="only these image kinds (default: the tweet-like mix of all)")
    parser.add_argument("--texture", type=float, default=images.DEFAULT_TEXTURE,
                        help="noise level of the photos: higher means more bytes per pixel (default: %(default)s)")
    args = cli.parse(parser, argv)
    if isinstance(args, int):
        return args
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    try:
        counts = generate(args.out, args.pairs, args.seed, tuple(args.ratios), args.min_side, args.max_side,
                          kinds=tuple(args.formats) if args.formats else None, texture=args.texture)
    except (ValueError, OSError) as error:
        return cli.report(error)
    print(f"wrote {args.pairs} pairs to {args.out} in {time.monotonic() - started:.1f}s: {counts}")
    return 0
