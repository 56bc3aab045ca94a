"""`python -m pipeline.preview SHARDS_DIR --out preview.png`: look at the data before training.

Draws N pairs of one split as stored in the shards (both images, both texts, the label), and
writes a stats table beside the picture (`preview.md`): pairs per label and split, the text
pairs' length in tokens before truncation with the share the sequence length cut (the number
to watch before choosing `--seq-length`), rejected rows by reason, and the original images'
formats and sizes, all from metadata.json, which the Beam job counts them into.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from pipeline import cli, features, logs
from pipeline.pair_grid import PairCell, draw_grid

SHUFFLE_BUFFER = 1000  # Pairs drawn from: a seeded sample without reading a whole large split.
STATS_LIMIT = 200_000  # Token stats read at most this many pairs per split.


def split_records(shards_dir: str, split: str):
    """The split's serialized examples (tf.data), or a FileNotFoundError naming what is missing."""
    import tensorflow as tf

    return tf.data.TFRecordDataset(features.shard_files(shards_dir, split), compression_type=features.COMPRESSION)


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


def _token_columns(metadata: dict, split: str, lengths: np.ndarray | None) -> str:
    """p50 | p95 | max | share cut: exact from metadata.json, else bounded from the stored masks."""
    exact = metadata.get("pair_tokens", {}).get(split)
    if exact is not None:
        if not exact["pairs"]:
            return " – | – | – | – |"
        return f" {exact['p50']} | {exact['p95']} | {exact['max']} | {exact['truncated_share']:.1%} |"
    if lengths is None or not lengths.size:
        return " – | – | – | – |"
    p50, p95 = np.percentile(lengths, [50, 95])
    return f" {p50:.0f} | {p95:.0f} | {lengths.max()} | ≤ {np.mean(lengths >= metadata['seq_length']):.1%} |"


def _image_line(metadata: dict) -> str:
    size = metadata["image_size"]
    line = (f"Images stored {size}×{size} px ({metadata.get('image_storage', '?')}), larger than "
            f"{metadata.get('max_pixels', 0):,} pixels refused.")
    original = metadata.get("original_images")
    if original and original["images"]:
        formats = ", ".join(f"{name} {count / original['images']:.0%}" for name, count in original["formats"].items())
        long_side, short_side = original["long_side"], original["short_side"]
        line += (f" Originals ({original['images']:,} images of written pairs): {formats}; long side p50 "
                 f"{long_side['p50']} px (min {long_side['min']}, max {long_side['max']}); short side p50 "
                 f"{short_side['p50']} px; {original['short_side_below_image_size']:,} "
                 f"({original['short_side_below_image_size'] / original['images']:.1%}) have a short side under {size} px "
                 f"and were enlarged.")
    return line


def stats_table(metadata: dict, lengths: dict[str, np.ndarray]) -> str:
    """The per-split table and the rejects and images lines of preview.md.

    Token columns come from metadata.json's `pair_tokens` (lengths before truncation, counted
    by the Beam job) when the shards have them; shards of older versions hold only the packed
    tokens, so for them `lengths` (real tokens per stored pair) gives an upper bound: a pair
    that fills the sequence was cut or fits exactly.
    """
    seq_length = metadata["seq_length"]
    exact = "pair_tokens" in metadata
    lines = ["| split | pairs | " + " | ".join(features.LABELS) + f" | tokens{' before cut' if exact else ''} p50 | p95 | "
             f"max | {'share cut' if exact else 'share filling all'} at {seq_length} |",
             "|---|" + "---:|" * (len(features.LABELS) + 5)]
    for split in features.SPLITS:
        counts = metadata["counts"][split]
        row = f"| {split} | {counts['total']:,} | " + " | ".join(f"{counts[name]:,}" for name in features.LABELS) + " |"
        lines.append(row + _token_columns(metadata, split, lengths.get(split)))
    rejected = metadata.get("rejected_by_reason", {})
    lines += ["", f"Rows read {metadata.get('rows_read', 0):,}, written {metadata.get('examples_written', 0):,}, "
              f"rejected {metadata.get('rows_rejected', 0):,}" + (": " + ", ".join(
                  f"{reason} {count:,}" for reason, count in sorted(rejected.items())) if rejected else "") + "."]
    lines.append(_image_line(metadata))
    if not exact:
        lines.append(f"These shards predate the token counts in metadata.json: the shares are of pairs filling the "
                     f"sequence (an upper bound on those cut), over each split's first {STATS_LIMIT:,} pairs at most.")
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
    parser = cli.Parser(prog="python -m pipeline.preview", description=__doc__.split("\n")[0])
    parser.add_argument("shards_dir", help="a folder the shards job wrote (local or gs://)")
    parser.add_argument("--out", default="preview.png", help="the picture; the stats go beside it as .md (default: %(default)s)")
    parser.add_argument("--split", choices=features.SPLITS, default="train", help="split drawn (default: %(default)s)")
    parser.add_argument("--label", choices=features.LABELS, help="draw pairs of this label only")
    parser.add_argument("--pairs", type=int, default=8, help="pairs drawn (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which pairs are drawn (default: %(default)s)")
    args = cli.parse(parser, argv, lambda args: "--pairs must be at least 1" if args.pairs < 1 else None)
    if isinstance(args, int):
        return args
    logs.configure(False)
    logs.import_tensorflow()  # Without its C++ start-up lines.
    try:
        metadata = features.read_metadata(args.shards_dir)
        cells = sample_pairs(args.shards_dir, args.split, args.pairs, args.label, args.seed)
        lengths = {} if "pair_tokens" in metadata else {  # Older shards: bounded from the stored masks.
            split: token_lengths(args.shards_dir, split, metadata["seq_length"])
            for split in features.SPLITS if metadata["counts"][split]["total"]}
        title = f"{args.shards_dir}: {len(cells)} {args.label or ''} pairs of {args.split}".replace("  ", " ")
        image = draw_grid(cells, title=title)
        table = stats_table(metadata, lengths)
        write_png(image, args.out)
        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.splitext(args.out)[0] + ".md", "w") as handle:
            handle.write(table)
    except (ValueError, OSError) as error:
        return cli.report(error)
    print(table, end="")
    print(f"wrote {args.out} ({len(cells)} pairs) and {os.path.splitext(args.out)[0]}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
