"""Shared fixtures: a tiny synthetic data set (small images) with every kind of bad row added."""

from __future__ import annotations

import csv
import io
import os
import struct
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline import features  # noqa: E402
from pipeline.synthetic import pairs as synthetic  # noqa: E402

GOOD_PAIRS = 40
IMAGE_SIZE = 32
SEQ_LENGTH = 24


def jpeg_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_bomb_bytes(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims a huge size (a decompression bomb's calling card)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# The reason each bad row the fixture adds is rejected with, in the order of the rows.
BAD_ROW_REASONS = (
    "missing_image",
    "empty_image",
    "undecodable_image",  # truncated JPEG
    "undecodable_image",  # garbage bytes
    "unknown_label",
    "empty_text",
    "bad_id",
    "path_traversal",  # "../" in the URL
    "path_traversal",  # a symlink out of the images folder
    "image_too_large",
    "image_too_large",  # a WebP whose header announces 16383 x 16383
    "duplicate_pair",
)
# Rows broken at the file level, appended as raw bytes after the rows above (the last one
# opens a quote that the file never closes).
FILE_FAULT_REASONS = ("bad_encoding", "bad_encoding", "bad_cell_count", "malformed_csv")


def webp_bomb_bytes() -> bytes:
    """A small lossless WebP whose VP8L header claims 16383 x 16383 pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    data[21:25] = (16382 | 16382 << 14 | (data[24] >> 4) << 28).to_bytes(4, "little")
    return bytes(data)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Synthetic CSV (GOOD_PAIRS good rows + one bad row per BAD_ROW_REASONS), images, vocab."""
    root = tmp_path_factory.mktemp("data")
    synthetic.generate(str(root), GOOD_PAIRS, seed=7, ratios=(1, 1, 2), min_side=40, max_side=96)
    images = root / "images"
    with open(root / "tweets.csv", newline="", encoding="utf-8") as handle:
        good = list(csv.DictReader(handle))
    template = dict(good[0])
    bad = []

    def add(id_1: str, **changes):
        row = {**template, "id_1": id_1, "image_1": f"http://pbs.twimg.com/media/x{id_1}.jpg", **changes}
        bad.append(row)
        return row

    add("9000000000000000001")  # missing_image: no file written.
    (images / "9000000000000000002.jpg").write_bytes(b"")
    add("9000000000000000002")
    (images / "9000000000000000003.jpg").write_bytes(jpeg_bytes()[:300])
    add("9000000000000000003")
    (images / "9000000000000000004.jpg").write_bytes(os.urandom(2000))
    add("9000000000000000004")
    (images / "9000000000000000005.jpg").write_bytes(jpeg_bytes())
    add("9000000000000000005", label="Maybe")
    (images / "9000000000000000006.jpg").write_bytes(jpeg_bytes())
    add("9000000000000000006", text_2="  \n ")
    add("12ab")
    add("9000000000000000008", image_1="http://pbs.twimg.com/media/../../../etc/passwd.jpg")
    outside = root / "outside.jpg"
    outside.write_bytes(jpeg_bytes())
    os.symlink(outside, images / "9000000000000000009.jpg")
    add("9000000000000000009")
    (images / "9000000000000000010.png").write_bytes(png_bomb_bytes())
    add("9000000000000000010", image_1="http://pbs.twimg.com/media/bomb.png")
    (images / "9000000000000000011.webp").write_bytes(webp_bomb_bytes())
    add("9000000000000000011", image_1="http://pbs.twimg.com/media/bomb.webp")
    bad.append(dict(good[1]))  # duplicate_pair
    assert len(bad) == len(BAD_ROW_REASONS)

    with open(root / "mixed.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(features.CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(good + bad)
    one_line = next(row for row in good if "\n" not in row["text_1"] + row["text_2"])  # Faults stay on one line.
    good_line = ",".join(['"' + one_line[c].replace('"', '""') + '"' for c in features.CSV_COLUMNS]).encode()
    file_faults = [
        good_line.replace(b"http", b"caf\xe9 http", 1),  # Latin-1, not UTF-8.
        good_line.replace(b"http", b"nul\x00 http", 1),
        good_line + b',"one cell too many"',
        b'9000000000000000020,"this quote is never closed,http://x/a.jpg,1,b,http://x/b.jpg,Implies',
    ]
    assert len(file_faults) == len(FILE_FAULT_REASONS)
    with open(root / "mixed.csv", "ab") as handle:
        handle.write(b"\r\n".join(file_faults) + b"\r\n")
    return {
        "root": root,
        "good_csv": root / "tweets.csv",
        "mixed_csv": root / "mixed.csv",
        "images": images,
        "vocab": root / "vocab.txt",
        "good_rows": good,
        "bad_rows": bad,
    }


def job_args(dataset, out, csv_key="mixed_csv", extra=()):
    return [
        "--csv", str(dataset[csv_key]),
        "--images", str(dataset["images"]),
        "--vocab", str(dataset["vocab"]),
        "--out", str(out),
        "--image-size", str(IMAGE_SIZE),
        "--seq-length", str(SEQ_LENGTH),
        "--train-shards", "2",
        *extra,
    ]


@pytest.fixture(scope="session")
def shards(dataset, tmp_path_factory):
    """One in-process DirectRunner run over the mixed CSV; returns (out_dir, metadata)."""
    from pipeline.shards import command as shards_command

    out = tmp_path_factory.mktemp("shards")
    metadata = shards_command.run(job_args(dataset, out, extra=["--direct_num_workers=1", "--direct_running_mode=in_memory"]))
    return out, metadata


@pytest.fixture(scope="session")
def separate_shards(dataset, tmp_path_factory):
    """The good rows' shards with each text packed alone (`--text-pairing separate`); (out_dir, metadata)."""
    from pipeline.shards import command as shards_command

    out = tmp_path_factory.mktemp("separate_shards")
    metadata = shards_command.run(job_args(dataset, out, csv_key="good_csv", extra=["--text-pairing", "separate"]))
    return out, metadata


@pytest.fixture(scope="session")
def tiny_bert(dataset, tmp_path_factory):
    """A TF Hub-format BERT SavedModel with the data set's vocabulary (built once per run)."""
    from model import local_encoders

    out = tmp_path_factory.mktemp("encoders") / "tiny_bert"
    return local_encoders.build_tiny_bert(str(dataset["vocab"]), str(out), hidden=16, layers=1)


@pytest.fixture(scope="session")
def hub_preprocessor(dataset, tmp_path_factory):
    """A TF Hub-format BERT preprocessing SavedModel over the data set's vocabulary (uncased)."""
    from model import local_encoders

    out = tmp_path_factory.mktemp("encoders") / "bert_preprocess"
    return local_encoders.build_bert_preprocessor(str(dataset["vocab"]), str(out), True, (SEQ_LENGTH, 9))


@pytest.fixture(scope="session")
def model_dir(tiny_bert, tmp_path_factory):
    """An export of an untrained model with the tiny encoders, for the scoring job's tests."""
    import keras

    from model import export, multimodal
    from model.config import ModelConfig
    from pipeline import features

    keras.utils.set_random_seed(3)
    config = ModelConfig(text_encoder=tiny_bert, image_encoder="tiny", image_weights="none", projection_dims=16,
                         image_size=IMAGE_SIZE, seq_length=SEQ_LENGTH)
    return export.export(multimodal.create_model(config), str(tmp_path_factory.mktemp("scored") / "serving"),
                         tiny_bert, features.Shape(IMAGE_SIZE, SEQ_LENGTH))
