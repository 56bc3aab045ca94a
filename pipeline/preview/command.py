"""`python -m pipeline.preview SHARDS_DIR --out preview.png`: look at the data before training.

Draws N pairs of one split as stored in the shards (both images, both texts, the label;
`pair_grid`), and writes a stats table beside the picture (`preview.md`, from `stats`).
"""

from __future__ import annotations

import os

from pipeline import cli, features
from pipeline.preview import stats
from pipeline.preview.pair_grid import PairCell, draw_grid, write_png

SHUFFLE_BUFFER = 1000  # Pairs drawn from: a seeded sample without reading a whole large split.
SHOWN_KEYS = features.TEXT_KEYS + features.IMAGE_KEYS + (features.LABEL_KEY,)


def split_records(shards_dir: str, split: str):
    """The split's serialized examples (tf.data), or a FileNotFoundError naming what is missing."""
    import tensorflow as tf

    return tf.data.TFRecordDataset(features.shard_files(shards_dir, split), compression_type=features.COMPRESSION)


def sample_pairs(shards_dir: str, split: str, count: int, label: str | None = None, seed: int = 0) -> list[PairCell]:
    """Up to `count` pairs of the split (of `label` only, when given), as stored, seeded."""
    import tensorflow as tf

    spec = features.example_spec(features.Shape(), SHOWN_KEYS)
    dataset = split_records(shards_dir, split).map(lambda record: tf.io.parse_single_example(record, spec))
    if label is not None:
        wanted = features.LABEL_INDEX[label]
        dataset = dataset.filter(lambda example: tf.equal(example[features.LABEL_KEY], wanted))
    dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed).take(count)
    cells = []
    for example in dataset.as_numpy_iterator():
        images = [example[key] for key in features.IMAGE_KEYS]
        texts = [example[key].decode("utf-8", "replace") for key in features.TEXT_KEYS]
        cells.append(PairCell(*images, *texts, (f"label: {features.LABELS[int(example[features.LABEL_KEY])]}",)))
    return cells


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
    cli.configure_logs(False)
    cli.import_tensorflow()  # Without its C++ start-up lines.
    try:
        metadata = features.read_metadata(args.shards_dir)
        cells = sample_pairs(args.shards_dir, args.split, args.pairs, args.label, args.seed)
        lengths = {} if "pair_tokens" in metadata else {  # Older shards: bounded from the stored masks.
            split: stats.token_lengths(split_records(args.shards_dir, split), metadata["seq_length"])
            for split in features.SPLITS if metadata["counts"][split]["total"]}
        title = f"{args.shards_dir}: {len(cells)} {args.label or ''} pairs of {args.split}".replace("  ", " ")
        image = draw_grid(cells, title=title)
        table = stats.stats_table(metadata, lengths)
        write_png(image, args.out)
        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.splitext(args.out)[0] + ".md", "w") as handle:
            handle.write(table)
    except (ValueError, OSError) as error:
        return cli.report(error)
    print(table, end="")
    print(f"wrote {args.out} ({len(cells)} pairs) and {os.path.splitext(args.out)[0]}.md")
    return 0
