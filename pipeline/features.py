"""The one definition of a tweet-pair `tf.train.Example`: names, dtypes, shapes, encode, parse.

The Beam jobs (`pipeline.shards`, `pipeline.score`), the tf.data reader (`trainer.reader`), the
preview, error analysis, the embedding cache and the serving signature (`model.export`) all
take names, dtypes, shapes and defaults from here, so none of them can drift from the others.
No Beam or TF Hub import here: the trainer and the exported model must not need them. TF itself
is imported by the functions that use it, so the command lines can read the constants (and
answer `--help` or a bad flag) without paying for TensorFlow's start-up.

Fields of one serialized example (every integer in a `tf.train.Example` is int64):

| key | stored as | parsed to |
|---|---|---|
| `id_1`, `id_2` | bytes, the 19-digit tweet id as text (never a float) | tf.string [] |
| `text_1`, `text_2` | bytes, UTF-8 raw tweet text (kept for error analysis) | tf.string [] |
| `image_1`, `image_2` | bytes, the decoded, RGB, resized image re-encoded as JPEG | uint8 [S, S, 3] |
| `label` | int64 [], index into `LABELS` | int32 [] |

and the texts as BERT inputs, in one of two pairings (`Shape.text_pairing`, recorded in
metadata.json). `joint`, the baseline's, packs the pair into one sequence:

| key | stored as | parsed to |
|---|---|---|
| `input_word_ids` | int64 [L], `[CLS] a [SEP] b [SEP]` then padding | int32 [L] |
| `input_mask` | int64 [L], 1 for real tokens, 0 for padding | int32 [L] |
| `input_type_ids` | int64 [L], 0 for `[CLS] a [SEP]`, 1 for `b [SEP]` | int32 [L] |

`separate` packs each text on its own, for encoders trained on single sentences (such as
sentence-transformers checkpoints); the model encodes each and compares the two vectors:

| key | stored as | parsed to |
|---|---|---|
| `text_1_input_word_ids`, `text_2_input_word_ids` | int64 [L], `[CLS] text [SEP]` then padding | int32 [L] |
| `text_1_input_mask`, `text_2_input_mask` | int64 [L], 1 for real tokens, 0 for padding | int32 [L] |

S is the image size and L the sequence length, both recorded in the shards' metadata.json.
The BERT input names are the ones TF Hub BERT encoders take (prefixed by the text in
`separate`), so no renaming happens anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    import tensorflow as tf

LABELS = ("Contradictory", "Implies", "NoEntailment")
LABEL_INDEX = {name: index for index, name in enumerate(LABELS)}

ID_KEYS = ("id_1", "id_2")
TEXT_KEYS = ("text_1", "text_2")
IMAGE_KEYS = ("image_1", "image_2")
TOKEN_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
TEXT_PAIRINGS = ("joint", "separate")
TEXT_POOLINGS = ("cls", "mean")  # Of each text's token vectors: its [CLS] vector, or the masked mean.
# One text's BERT inputs in the `separate` pairing (the segment ids are all 0, so not stored).
SINGLE_TEXT_KEYS = TOKEN_KEYS[:2]
LABEL_KEY = "label"
# A pair before any preprocessing: the serving signature's inputs, in this order.
RAW_KEYS = TEXT_KEYS + IMAGE_KEYS
# The input CSV's columns (`label` is optional for scoring).
CSV_COLUMNS = ("id_1", "text_1", "image_1", "id_2", "text_2", "image_2", "label")

SPLITS = ("train", "val", "test")
SHARD_SUFFIX = ".tfrecord.gz"
COMPRESSION = "GZIP"
METADATA_FILE = "metadata.json"

# The defaults every stage shares: the baseline's image size and sequence length, the JPEG
# quality of stored images, and the largest image accepted (Pillow's decompression-bomb
# threshold; real tweet images stay far below it).
DEFAULT_IMAGE_SIZE = 128
DEFAULT_SEQ_LENGTH = 128
STORAGE_JPEG_QUALITY = 95
DEFAULT_MAX_PIXELS = 89_478_485


@dataclasses.dataclass(frozen=True)
class Shape:
    """What every shard, reader and model input must agree on.

    Attributes:
      image_size: Side of the square RGB images stored in the shards (pixels).
      seq_length: Length of the packed BERT inputs (of each text with `separate`), padding included.
      text_pairing: `joint` (the pair packed into one sequence) or `separate` (each text packed alone).
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    seq_length: int = DEFAULT_SEQ_LENGTH
    text_pairing: str = "joint"

    @property
    def token_keys(self) -> tuple[str, ...]:
        """The keys of the texts' BERT inputs in this pairing."""
        return token_keys(self.text_pairing)


def token_keys(text_pairing: str) -> tuple[str, ...]:
    """The keys of the texts' BERT inputs: `TOKEN_KEYS`, or each text's own with `separate`."""
    if text_pairing not in TEXT_PAIRINGS:
        raise ValueError(f"text pairing must be one of {', '.join(TEXT_PAIRINGS)}, not {text_pairing!r}")
    if text_pairing == "joint":
        return TOKEN_KEYS
    return tuple(f"{text}_{key}" for text in TEXT_KEYS for key in SINGLE_TEXT_KEYS)


def example_spec(shape: Shape, keys: Sequence[str] | None = None) -> dict[str, tf.io.FixedLenFeature]:
    """The parse spec of a serialized example (what is on disk), of every key or of `keys` only."""
    import tensorflow as tf

    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in ID_KEYS + TEXT_KEYS + IMAGE_KEYS}
    spec.update({key: tf.io.FixedLenFeature([shape.seq_length], tf.int64) for key in shape.token_keys})
    spec[LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
    return spec if keys is None else {key: spec[key] for key in keys}


def model_input_specs(shape: Shape) -> dict[str, tf.TensorSpec]:
    """Per-example specs of the model's inputs (behind `keras.Input` and the reader's shapes)."""
    import tensorflow as tf

    specs = {
        key: tf.TensorSpec([shape.image_size, shape.image_size, 3], tf.uint8, name=key)
        for key in IMAGE_KEYS
    }
    specs.update({key: tf.TensorSpec([shape.seq_length], tf.int32, name=key) for key in shape.token_keys})
    return specs


def _bytes_feature(value: bytes) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(values: Sequence[int]) -> tf.train.Feature:
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def to_example(
    ids: Sequence[str],
    texts: Sequence[str],
    encoded_images: Sequence[bytes],
    tokens: Mapping[str, Sequence[int]],
    label: int,
    shape: Shape,
) -> tf.train.Example:
    """Builds one example; checks lengths so a wrong sequence length fails here, not in training."""
    import tensorflow as tf

    if not 0 <= label < len(LABELS):
        raise ValueError(f"label index {label} is outside 0..{len(LABELS) - 1}")
    feature = {}
    for key, value in zip(ID_KEYS, ids, strict=True):
        feature[key] = _bytes_feature(str(value).encode("utf-8"))
    for key, value in zip(TEXT_KEYS, texts, strict=True):
        feature[key] = _bytes_feature(value.encode("utf-8"))
    for key, value in zip(IMAGE_KEYS, encoded_images, strict=True):
        feature[key] = _bytes_feature(bytes(value))
    for key in shape.token_keys:
        values = list(tokens[key])
        if len(values) != shape.seq_length:
            raise ValueError(f"{key} has length {len(values)}, expected {shape.seq_length}")
        feature[key] = _int64_feature(values)
    feature[LABEL_KEY] = _int64_feature([label])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def parse(serialized: tf.Tensor, shape: Shape) -> dict[str, tf.Tensor]:
    """Parses one serialized example into tensors (see the module docstring for keys).

    Images come back decoded as uint8 [S, S, 3] with static shapes; integers as int32.
    """
    import tensorflow as tf

    raw = tf.io.parse_single_example(serialized, example_spec(shape))
    parsed = {key: raw[key] for key in ID_KEYS + TEXT_KEYS}
    for key in IMAGE_KEYS:
        image = tf.io.decode_jpeg(raw[key], channels=3)
        image.set_shape([shape.image_size, shape.image_size, 3])
        parsed[key] = image
    for key in shape.token_keys + (LABEL_KEY,):
        parsed[key] = tf.cast(raw[key], tf.int32)
    return parsed


def parse_stored(serialized: tf.Tensor, keys: Sequence[str], shape: Shape = Shape()) -> dict[str, tf.Tensor]:
    """A batch of serialized examples [B] → the stored values of `keys`, as on disk.

    For readers that look at what the shards hold rather than feed a model (the preview,
    error analysis): images stay encoded bytes, integers int64.
    """
    import tensorflow as tf

    return tf.io.parse_example(serialized, example_spec(shape, keys))


def read_metadata(data_dir: str) -> dict:
    """The shards' metadata.json (local or gs://); FileNotFoundError if the job did not finish."""
    import json
    import os

    import tensorflow as tf

    path = os.path.join(data_dir, METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: is {data_dir} the --out folder of `make shards` (and did it finish)?")
    with tf.io.gfile.GFile(path, "r") as handle:
        return json.load(handle)


def shard_files(data_dir: str, split: str) -> list[str]:
    """The split's shard files, sorted (local or gs://); FileNotFoundError if there are none."""
    import os

    import tensorflow as tf

    pattern = os.path.join(data_dir, f"{split}-*-of-*{SHARD_SUFFIX}")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no {split} shards match {pattern}")
    return files


def stable_hash(text: str, seed: int) -> int:
    """A pair key's seeded hash, the same on every machine, process and Python version (unlike
    `hash`): it orders the pairs of a label for the splits (`pipeline.shards.stage2_split`) and
    for cross-validation's folds (`trainer.crossval`)."""
    digest = hashlib.sha256(f"{seed}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")
