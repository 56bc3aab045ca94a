"""`make bench`: the Beam job's rows/s against the notebook's input pipeline, same data, same run.

Every figure in the table is measured in this invocation on the same synthetic data set (full
size tweet images, 600–2048 px), so ratios are meaningful even though this machine's absolute
speed drifts. Rows:

- notebook, `map` without parallel calls: tf.data over the dataframe; per example read both
  files, full decode, resize to the image size, BERT-pack the text pair; batch 32 — what the
  keras.io example does on every epoch.
- notebook, `map(num_parallel_calls=AUTOTUNE)`: the same with parallel map.
- decode-only bounds: just decoding the two images per pair (no resize, no text), full decode
  and this project's decode (DCT scaling for large JPEGs, plus resize), AUTOTUNE.
- trainer reader: `trainer.reader.make_dataset` over the job's shards, i.e. what each training
  epoch costs once preprocessing is done (issue target: at least 15x the notebook).
- Beam job: `python -m pipeline.run` as users run it (DirectRunner, one worker thread per core,
  validating, decoding, tokenizing, splitting, writing GZIP shards), wall clock including
  start-up, and the same per row after subtracting a 1-row run's fixed start-up cost.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from pipeline import preprocess, rows, synthetic  # noqa: E402

BATCH_SIZE = 32


def load_pairs(data_dir: str):
    with open(os.path.join(data_dir, "tweets.csv"), newline="", encoding="utf-8") as handle:
        records = [rows.parse_row(n, row) for n, row in enumerate(csv.DictReader(handle), 1)]
    images = os.path.join(data_dir, "images")
    return {
        "image_1": [os.path.join(images, r.image_files[0]) for r in records],
        "image_2": [os.path.join(images, r.image_files[1]) for r in records],
        "text_1": [r.texts[0] for r in records],
        "text_2": [r.texts[1] for r in records],
        "label": [r.label for r in records],
    }


def time_dataset(dataset: tf.data.Dataset) -> tuple[float, int]:
    """Seconds to the last batch (not to end-of-sequence: autotune may idle there) and rows.

    Batches are dicts with a "label" key or (inputs, labels) pairs, as the reader yields.
    """
    started, count, last = time.perf_counter(), 0, None
    for batch in dataset:
        labels = batch[1] if isinstance(batch, tuple) else batch["label"]
        count += int(tf.shape(labels)[0])
        last = time.perf_counter()
    return last - started, count


def notebook_pipeline(pairs, tokenizer, image_size: int, parallel) -> tf.data.Dataset:
    def full_decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(image, (image_size, image_size))

    def load(sample):
        tokens = tokenizer(tf.reshape(sample["text_1"], [1]), tf.reshape(sample["text_2"], [1]))
        return {
            "image_1": full_decode(sample["image_1"]),
            "image_2": full_decode(sample["image_2"]),
            **{key: tf.squeeze(value, 0) for key, value in tokens.items()},
            "label": sample["label"],
        }

    dataset = tf.data.Dataset.from_tensor_slices(pairs)
    return dataset.map(load, num_parallel_calls=parallel).batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)


def decode_only(pairs, decoder) -> tf.data.Dataset:
    def load(sample):
        return {
            # A reduction, not tf.shape: a static shape would let TF skip the decode entirely.
            "image_1": tf.reduce_max(decoder(tf.io.read_file(sample["image_1"]))),
            "image_2": tf.reduce_max(decoder(tf.io.read_file(sample["image_2"]))),
            "label": sample["label"],
        }

    dataset = tf.data.Dataset.from_tensor_slices({k: pairs[k] for k in ("image_1", "image_2", "label")})
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH_SIZE)


def read_shards(shard_dir: str, image_size: int, epochs: int = 3) -> tuple[float, int]:
    """What each training epoch costs once the shards exist: the train split read `epochs`
    times through the trainer's reader (shuffle, parse, JPEG decode of small images, batch)."""
    from pipeline import features
    from trainer import reader

    shape = features.Shape(image_size, 128)
    steps = reader.read_metadata(shard_dir)["counts"]["train"]["total"] // BATCH_SIZE
    dataset = reader.make_dataset(shard_dir, "train", shape, BATCH_SIZE, training=True, seed=0).repeat()
    return time_dataset(dataset.take(steps * epochs))


def beam_job(data_dir: str, out_dir: str, image_size: int, csv_path: str | None = None) -> float:
    command = [
        sys.executable, "-m", "pipeline.run",
        "--csv", csv_path or os.path.join(data_dir, "tweets.csv"),
        "--images", os.path.join(data_dir, "images"),
        "--vocab", os.path.join(data_dir, "vocab.txt"),
        "--out", out_dir, "--image-size", str(image_size), "--overwrite",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def write_table(path: str, table: str) -> None:
    """Writes a benchmark's markdown table and prints it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(table)
    print("\n" + table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.preprocessing", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/bench", help="synthetic data folder, made if absent (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=1400, help="pairs to generate (default: %(default)s, the real set's size)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--shards", default="data/bench_shards", help="where the Beam job writes (default: %(default)s)")
    parser.add_argument("--out", default="benchmarks/results.md", help="markdown table (default: %(default)s)")
    args = parser.parse_args(argv)

    if not os.path.exists(os.path.join(args.data, "tweets.csv")):
        print(f"generating {args.pairs} pairs into {args.data} ...", flush=True)
        synthetic.generate(args.data, args.pairs, seed=0, ratios=(109, 109, 1182))
    pairs = load_pairs(args.data)
    n = len(pairs["label"])
    tokenizer = preprocess.PairTokenizer(preprocess.read_vocab(os.path.join(args.data, "vocab.txt")), True, 128)
    size_mb = sum(os.path.getsize(p) for p in pairs["image_1"] + pairs["image_2"]) / 1e6

    results = []

    def record(name, seconds, count):
        results.append((name, count / seconds, seconds))
        print(f"{name}: {count / seconds:.1f} rows/s ({seconds:.1f}s)", flush=True)

    record("notebook input pipeline, `map` without parallel calls", *time_dataset(notebook_pipeline(pairs, tokenizer, args.image_size, None)))
    record("notebook input pipeline, `map(num_parallel_calls=AUTOTUNE)`", *time_dataset(notebook_pipeline(pairs, tokenizer, args.image_size, tf.data.AUTOTUNE)))
    full = lambda data: tf.io.decode_image(data, channels=3, expand_animations=False)  # noqa: E731
    record("decode only: full decode of both images (AUTOTUNE)", *time_dataset(decode_only(pairs, full)))
    ours = lambda data: preprocess.decode_image(data, args.image_size)  # noqa: E731
    record("decode only: this project's decode + resize (DCT scaling, AUTOTUNE)", *time_dataset(decode_only(pairs, ours)))

    with tempfile.TemporaryDirectory() as scratch:
        one_row = os.path.join(scratch, "one.csv")
        with open(os.path.join(args.data, "tweets.csv"), newline="", encoding="utf-8") as src, open(one_row, "w", newline="", encoding="utf-8") as dst:
            reader, writer = csv.reader(src), csv.writer(dst)
            writer.writerow(next(reader))
            writer.writerow(next(reader))
        startup = beam_job(args.data, os.path.join(scratch, "one"), args.image_size, one_row)
        wall = beam_job(args.data, args.shards, args.image_size)
        record("Beam job end to end (DirectRunner, 2 worker threads, validate + decode + tokenize + split + write)", wall, n)
        record(f"Beam job, per row after its fixed start-up ({startup:.1f}s for a 1-row run)", max(wall - startup, 1e-9), n)
        record("trainer reader over the shards (train split, 3 epochs, batch 32)", *read_shards(args.shards, args.image_size))

    baseline = results[1][1]
    lines = [
        f"Preprocessing benchmark: {n} pairs, {2 * n} images ({size_mb:.0f} MB), image size {args.image_size}, "
        f"{os.cpu_count()} cores. Ratios are against the notebook pipeline with AUTOTUNE, measured in the same run.",
        "",
        "| what | rows/s | seconds | × notebook (AUTOTUNE) |",
        "|---|---:|---:|---:|",
    ]
    for name, rate, seconds in results:
        lines.append(f"| {name} | {rate:.1f} | {seconds:.1f} | {rate / baseline:.2f} |")
    write_table(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
