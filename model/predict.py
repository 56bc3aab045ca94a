"""`python -m model.predict`: score tweet pairs with an exported model, from raw text and image files.

One pair:

    python -m model.predict --model out/demo/model/serving \\
        --text-1 "The bridge is open" --image-1 a.jpg --text-2 "Bridge closed" --image-2 b.png

Rows of a tweet-pair CSV (same columns as the Beam job's input), with their true labels:

    python -m model.predict --model out/demo/model/serving --csv data/demo/tweets.csv \\
        --images data/demo/images --rows 5

Prints one JSON object per pair.
"""

from __future__ import annotations

import csv
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def read_bytes(path: str) -> bytes:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"image {path} does not exist")
    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def pairs_from_args(args) -> list[dict]:
    if args.csv:
        from pipeline.inputs import rows

        with open(args.csv, newline="", encoding="utf-8") as handle:
            data = list(csv.DictReader(handle))[: args.rows]
        pairs = []
        for number, row in enumerate(data, start=1):
            record = rows.parse_row(number, row)
            if isinstance(record, rows.Rejection):
                raise ValueError(f"row {number}: {record.message}")
            pairs.append({
                "ids": list(record.ids), "true_label": row["label"],
                "texts": list(record.texts),
                "images": [read_bytes(os.path.join(args.images, name)) for name in record.image_files],
            })
        return pairs
    missing = [flag for flag in ("text_1", "text_2", "image_1", "image_2") if getattr(args, flag) is None]
    if missing:
        raise ValueError("give --csv, or all of --text-1 --image-1 --text-2 --image-2")
    return [{"texts": [args.text_1, args.text_2], "images": [read_bytes(args.image_1), read_bytes(args.image_2)]}]


def main(argv=None) -> int:
    from pipeline import cli, features

    parser = cli.Parser(prog="python -m model.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported SavedModel folder (local or gs://)")
    for side in ("1", "2"):
        parser.add_argument(f"--text-{side}", help=f"text of tweet {side}")
        parser.add_argument(f"--image-{side}", help=f"image file of tweet {side}")
    parser.add_argument("--csv", help="score rows of this tweet-pair CSV instead")
    parser.add_argument("--images", default=".", help="with --csv: the images folder")
    parser.add_argument("--rows", type=int, default=5, help="with --csv: how many rows (default: %(default)s)")
    args = cli.parse(parser, argv)
    if isinstance(args, int):
        return args
    cli.configure_logs(False)
    tf = cli.import_tensorflow()
    from model import export

    try:
        pairs = pairs_from_args(args)
    except (ValueError, FileNotFoundError) as error:
        return cli.report(error)
    serve = export.load(args.model)
    for pair in pairs:
        outputs = serve(text_1=tf.constant(pair["texts"][:1]), text_2=tf.constant(pair["texts"][1:]),
                        image_1=tf.constant(pair["images"][:1]), image_2=tf.constant(pair["images"][1:]))
        if "valid" in outputs and not outputs["valid"].numpy()[0]:
            print(f"error: cannot score this pair: {outputs['error'].numpy()[0].decode()}", file=sys.stderr)
            return 2
        probabilities = dict(zip(features.LABELS, (round(float(p), 4) for p in outputs["probabilities"].numpy()[0])))
        result = {"label": outputs["label"].numpy()[0].decode(), "probabilities": probabilities}
        if "ids" in pair:
            result = {"ids": pair["ids"], "true_label": pair["true_label"], **result}
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
