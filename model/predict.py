"""`python -m model.predict`: score one tweet pair with an exported model, from raw text and image files.

    python -m model.predict --model out/demo/model/serving \\
        --text-1 "The bridge is open" --image-1 a.jpg --text-2 "Bridge closed" --image-2 b.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.predict", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported SavedModel folder (local or gs://)")
    for side in ("1", "2"):
        parser.add_argument(f"--text-{side}", required=True, help=f"text of tweet {side}")
        parser.add_argument(f"--image-{side}", required=True, help=f"image file of tweet {side}")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from model import export
    from pipeline import features

    images = []
    for path in (args.image_1, args.image_2):
        if not tf.io.gfile.exists(path):
            print(f"error: image {path} does not exist", file=sys.stderr)
            return 2
        with tf.io.gfile.GFile(path, "rb") as handle:
            images.append(handle.read())
    serve = export.load(args.model)
    try:
        outputs = serve(text_1=tf.constant([args.text_1]), text_2=tf.constant([args.text_2]),
                        image_1=tf.constant(images[:1]), image_2=tf.constant(images[1:]))
    except tf.errors.InvalidArgumentError as error:
        print(f"error: cannot score this pair: {error.message.splitlines()[0]}", file=sys.stderr)
        return 2
    probabilities = dict(zip(features.LABELS, (round(float(p), 4) for p in outputs["probabilities"].numpy()[0])))
    print(json.dumps({"label": outputs["label"].numpy()[0].decode(), "probabilities": probabilities}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
