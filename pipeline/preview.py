"""`python -m pipeline.preview SHARDS_DIR --out preview.png`: look at the data before training.

Draws N pairs of one split as stored in the shards (both images, both texts, the label), and
writes a stats table beside the picture (`preview.md`): pairs per label and split, rejected
rows by reason, the stored images' size, and the packed pair length in tokens with the share
of pairs that fill the whole sequence. A pair that fills it was cut or fits exactly: the
shards keep only the packed tokens, so that share is an upper bound on the truncated share,
and the number to watch before choosing `--seq-length`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from pipeline import features, logs
from pipeline.pair_grid import PairCell, draw_grid

SHUFFLE_BUFFER = 1000  # Pairs drawn from: a seeded sample without reading a whole large split.
STATS_LIMIT = 200_000  # Token stats read at most this many pairs per split.


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message}\n")


def read_metadata(shards_dir: str) -> dict:
    import tensorflow as tf

    path = os.path.join(shards_dir, features.METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{shards_dir} holds no {features.METADATA_FILE}: not a finished shards folder")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def split_records(shards_dir: str, split: str):
    """The split's serialized examples (tf.data), or a ValueError naming what is missing."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(shards_dir, f"{split}-*{features.SHARD_SUFFIX}")))
    if not files:
        raise ValueError(f"{shards_dir} has no {split} shards")
    return tf.data.TFRecordDataset(files, compression_type=features.COMPRESSION)


def sample_pairs(shards_dir: str, split: str, count: int, label: str | None = None, seed: int = 0) -> list[PairCell]:
    """Up to `count` pairs of the split (of `label` only, when given), as stored, seeded."""
    import tensorflow as tf

    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in features.TEXT_KEYS + features.IMAGE_KEYS}
    spec[features.LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
    dataset = split_records(shards_dir, split).map(lambda record: tf.io.parse_single_example(record, spec))
    if label is not None:
        wanted = features.LABEL_INDEX[label]
        dataset = dataset.filter(lambda example: tf.equal(example[features.LABEL_KEY], wanted))
    dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed).take(count)
    cells = []
    for example in dataset.as_numpy_iterator():
        cells.append(PairCell(
            example["image_1"], example["image_2"],
            example["text_1"].decode("utf-8", "replace"), example["text_2"].decode("utf-8", "replace"),
            (f"label: {features.LABELS[int(example[features.LABEL_KEY])]}",)))
    return cells


def token_lengths(shards_dir: str, split: str, seq_length: int) -> np.ndarray:
    """Real tokens per packed pair ([CLS] and [SEP]s included), for up to STATS_LIMIT pairs."""
    import tensorflow as tf

    spec = {"input_mask": tf.io.FixedLenFeature([seq_length], tf.int64)}
    dataset = split_records(shards_dir, split).take(STATS_LIMIT).batch(1024).map(
        lambda records: tf.reduce_sum(tf.io.parse_example(records, spec)["input_mask"], axis=1))
    lengths = [batch for batch in dataset.as_numpy_iterator()]
    return np.concatenate(lengths) if lengths else np.zeros([0], np.int64)


def stats_table(metadata: dict, lengths: dict[str, np.ndarray]) -> str:
    seq_length = metadata["seq_length"]
    lines = ["| split | pairs | " + " | ".join(features.LABELS) + " | tokens p50 | p95 | max | "
             f"share filling all {seq_length} |", "|---|" + "---:|" * (len(features.LABELS) + 5)]
    for split in features.SPLITS:
        counts = metadata["counts"][split]
        row = f"| {split} | {counts['total']:,} | " + " | ".join(f"{counts[name]:,}" for name in features.LABELS)
        values = lengths.get(split)
        if values is not None and values.size:
            p50, p95 = np.percentile(values, [50, 95])
            row += f" | {p50:.0f} | {p95:.0f} | {values.max()} | {np.mean(values >= seq_length):.1%} |"
        else:
            row += " | – | – | – | – |"
        lines.append(row)
    rejected = metadata.get("rejected_by_reason", {})
    lines += ["", f"Rows read {metadata.get('rows_read', 0):,}, written {metadata.get('examples_written', 0):,}, "
              f"rejected {metadata.get('rows_rejected', 0):,}" + (": " + ", ".join(
                  f"{reason} {count:,}" for reason, count in sorted(rejected.items())) if rejected else "") + "."]
    lines.append(f"Images stored {metadata['image_size']}×{metadata['image_size']} px ({metadata.get('image_storage', '?')}), "
                 f"larger than {metadata.get('max_pixels', 0):,} pixels refused; token shares over the split's first "
                 f"{STATS_LIMIT:,} pairs at most.")
    return "\n".join(lines) + "\n"


def write_png(image, path: str) -> None:
    """Saves a PIL image through tf.io.gfile, so `--out gs://...` works too."""
    import io

    import tensorflow as tf

    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m pipeline.preview", description=__doc__.split("\n")[0])
    parser.add_argument("shards_dir", help="a folder the shards job wrote (local or gs://)")
    parser.add_argument("--out", default="preview.png", help="the picture; the stats go beside it as .md (default: %(default)s)")
    parser.add_argument("--split", choices=features.SPLITS, default="train", help="split drawn (default: %(default)s)")
    parser.add_argument("--label", choices=features.LABELS, help="draw pairs of this label only")
    parser.add_argument("--pairs", type=int, default=8, help="pairs drawn (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which pairs are drawn (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    logs.configure(False)
    logs.import_tensorflow()  # Without its C++ start-up lines.
    try:
        metadata = read_metadata(args.shards_dir)
        cells = sample_pairs(args.shards_dir, args.split, args.pairs, args.label, args.seed)
        lengths = {split: token_lengths(args.shards_dir, split, metadata["seq_length"])
                   for split in features.SPLITS if metadata["counts"][split]["total"]}
        title = f"{args.shards_dir}: {len(cells)} {args.label or ''} pairs of {args.split}".replace("  ", " ")
        image = draw_grid(cells, title=title)
        table = stats_table(metadata, lengths)
        write_png(image, args.out)
        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.splitext(args.out)[0] + ".md", "w") as handle:
            handle.write(table)
    except (ValueError, OSError) as error:  # tf.errors.OpError: see below.
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table, end="")
    print(f"wrote {args.out} ({len(cells)} pairs) and {os.path.splitext(args.out)[0]}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
