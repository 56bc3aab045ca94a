"""`make bench`: the Beam job's rows/s against the notebook's input pipeline, same data, same run.

Every figure in the table is measured in this invocation on the same synthetic data set (full
size tweet images, 600–2048 px), so ratios are meaningful even though this machine's absolute
speed drifts. Rows:

- notebook, `map` without parallel calls: tf.data over the dataframe; per example read both
  files, full decode, resize to the image size, BERT-pack the text pair; batch 32 — what the
  keras.io example does on every epoch.
- notebook, `map(num_parallel_calls=AUTOTUNE)`: the same with parallel map.
- decode-only bounds: just decoding the two images per pair (no text), full decode without
  resize and this project's decode (DCT scaling for large JPEGs, plus resize), AUTOTUNE.
- trainer reader: `trainer.reader.make_dataset` over the job's shards, i.e. what each training
  epoch costs once preprocessing is done (issue target: at least 15x the notebook).
- Beam job: `pipeline.shards` with the options users get by default (validating, decoding,
  tokenizing, splitting, writing GZIP shards, metadata), called in this process, so that like
  the notebook rows it excludes the interpreter start and the TensorFlow import; and the same
  job as a command (`python -m pipeline.shards`), which adds them.
- per format: ms per image, one image at a time, of the notebook's decode + resize and of
  ours, which shows where the Beam job can and cannot gain (DCT scaling helps baseline JPEGs
  most); then the notebook against the job again on 2048-px images, the size and bytes per
  image of real tweet photos (Twitter's 2048-px "large" size, about 200 KB each).

The notebook (AUTOTUNE), the in-process Beam job and the job as a command are each run
`--repeats` times, alternating, and the fastest run of each is reported, so that a slow spell
of the machine does not land on one side only. A last table (`benchmarks/startup.py`) says
where the command's fixed cost goes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from benchmarks import startup  # noqa: E402
from pipeline.inputs import rows  # noqa: E402
from pipeline.preprocess import bert_inputs, images  # noqa: E402
from pipeline.synthetic import pairs as synthetic  # noqa: E402

BATCH_SIZE = 32


def load_pairs(data_dir: str):
    with open(os.path.join(data_dir, "tweets.csv"), newline="", encoding="utf-8") as handle:
        records = [rows.parse_row(n, row) for n, row in enumerate(csv.DictReader(handle), 1)]
    folder = os.path.join(data_dir, "images")
    return {
        "image_1": [os.path.join(folder, r.image_files[0]) for r in records],
        "image_2": [os.path.join(folder, r.image_files[1]) for r in records],
        "text_1": [r.texts[0] for r in records],
        "text_2": [r.texts[1] for r in records],
        "label": [r.label for r in records],
    }


def prepare_data(data_dir: str, pairs: int, **profile):
    """The data set's columns and its tokenizer; generates the data first if absent."""
    if not os.path.exists(os.path.join(data_dir, "tweets.csv")):
        print(f"generating {pairs} pairs into {data_dir} ...", flush=True)
        synthetic.generate(data_dir, pairs, seed=0, ratios=(109, 109, 1182), **profile)
    tokenizer = bert_inputs.PairTokenizer(bert_inputs.read_vocab(os.path.join(data_dir, "vocab.txt")), True, 128)
    return load_pairs(data_dir), tokenizer


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
    def read_and_resize(path):
        return tf.image.resize(full_decode(tf.io.read_file(path)), (image_size, image_size))

    def load(sample):
        tokens = tokenizer(tf.reshape(sample["text_1"], [1]), tf.reshape(sample["text_2"], [1]))
        return {
            "image_1": read_and_resize(sample["image_1"]),
            "image_2": read_and_resize(sample["image_2"]),
            **{key: tf.squeeze(value, 0) for key, value in tokens.items()},
            "label": sample["label"],
        }

    dataset = tf.data.Dataset.from_tensor_slices(pairs)
    return dataset.map(load, num_parallel_calls=parallel).batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)


def notebook_seconds(pairs, tokenizer, image_size: int, parallel) -> float:
    """One notebook epoch, construction included (tf.data traces the map function then)."""
    started = time.perf_counter()
    dataset = notebook_pipeline(pairs, tokenizer, image_size, parallel)
    built = time.perf_counter() - started
    return built + time_dataset(dataset)[0]


def full_decode(data: tf.Tensor) -> tf.Tensor:
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def decode_only(pairs, decoder) -> tf.data.Dataset:
    def load(sample):
        return {
            # One pixel: the decode must run, but reading the whole full-size image would add
            # a pass over it that the notebook does not make (and tf.shape could be constant).
            "image_1": decoder(tf.io.read_file(sample["image_1"]))[0, 0, 0],
            "image_2": decoder(tf.io.read_file(sample["image_2"]))[0, 0, 0],
            "label": sample["label"],
        }

    dataset = tf.data.Dataset.from_tensor_slices({k: pairs[k] for k in ("image_1", "image_2", "label")})
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)


def read_shards(shard_dir: str, image_size: int, epochs: int = 3) -> tuple[float, int] | None:
    """What each training epoch costs once the shards exist: the train split read `epochs`
    times through the trainer's reader (shuffle, parse, JPEG decode of small images, batch).
    None when the train split is smaller than one batch (the reader drops partial batches)."""
    from pipeline import features
    from trainer import reader

    shape = features.Shape(image_size, 128)
    steps = features.read_metadata(shard_dir)["counts"]["train"]["total"] // BATCH_SIZE
    if steps == 0:
        return None
    dataset = reader.make_dataset(shard_dir, "train", shape, BATCH_SIZE, training=True, seed=0).repeat()
    return time_dataset(dataset.take(steps * epochs))


def job_argv(data_dir: str, out_dir: str, image_size: int, csv_path: str | None = None) -> list[str]:
    return [
        "--csv", csv_path or os.path.join(data_dir, "tweets.csv"),
        "--images", os.path.join(data_dir, "images"),
        "--vocab", os.path.join(data_dir, "vocab.txt"),
        "--out", out_dir, "--image-size", str(image_size), "--overwrite",
    ]


def beam_job(argv: list[str]) -> float:
    """Seconds for the job called in this process (progress output silenced)."""
    from pipeline.shards import command as shards_command

    started = time.perf_counter()
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        metadata = shards_command.run(argv)
    seconds = time.perf_counter() - started
    assert metadata["rows_read"] == metadata["examples_written"] + metadata["rows_rejected"]
    return seconds


def alternate(pairs, tokenizer, image_size: int, argv: list[str], repeats: int) -> tuple[float, float, float]:
    """Fastest seconds of the notebook (AUTOTUNE), the in-process job and the job as a command,
    run alternately, so that a slow spell of the machine does not land on one side only."""
    count = len(pairs["label"])
    notebook_runs, job_runs, command_runs = [], [], []
    for _ in range(repeats):
        notebook_runs.append(notebook_seconds(pairs, tokenizer, image_size, tf.data.AUTOTUNE))
        job_runs.append(beam_job(argv))
        command_runs.append(startup.command_seconds(["-m", "pipeline.shards", *argv]))
        print(
            f"notebook AUTOTUNE {count / notebook_runs[-1]:.1f} rows/s, Beam job {count / job_runs[-1]:.1f} rows/s, "
            f"as a command {count / command_runs[-1]:.1f} rows/s",
            flush=True,
        )
    return min(notebook_runs), min(job_runs), min(command_runs)


def per_format_costs(data_dir: str, image_size: int, per_format: int = 30) -> list[tuple[str, int, float, float]]:
    """(format, images, notebook ms/image, ours ms/image): decode + resize, one image at a time."""
    from PIL import Image

    groups: dict[str, list[bytes]] = {}
    folder = os.path.join(data_dir, "images")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            data = handle.read()
        with Image.open(io.BytesIO(data)) as image:
            kind = f"{image.format} {image.mode}" + (" progressive" if image.info.get("progressive") else "")
        if len(groups.setdefault(kind, [])) < per_format:
            groups[kind].append(data)
    notebook = tf.function(lambda data: tf.reduce_max(tf.image.resize(full_decode(data), (image_size, image_size))))
    ours = tf.function(lambda data: tf.reduce_max(images.decode_checked(data, image_size)[0]), autograph=False)
    results = []
    with tf.device("/cpu:0"):
        for kind, datas in sorted(groups.items()):
            costs = []
            for fn in (notebook, ours):
                fn(tf.constant(datas[0]))
                started = time.perf_counter()
                for data in datas:
                    fn(tf.constant(data))
                costs.append((time.perf_counter() - started) / len(datas) * 1000)
            results.append((kind, len(datas), *costs))
    return results


# Tweet-size images: Twitter's 2048-px "large" size, photos at about 200 KB (JPEG q85), same
# format mix.
LARGE_PROFILE = {"min_side": 2048, "max_side": 2048, "texture": 2.0}


def large_profile_table(args, pairs: int) -> list[str]:
    """The notebook against the job on 2048-px images, where DCT scaling saves the most."""
    data, tokenizer = prepare_data(args.large_data, pairs, **LARGE_PROFILE)
    count = len(data["label"])
    plain = notebook_seconds(data, tokenizer, args.image_size, None)
    with tempfile.TemporaryDirectory() as scratch:
        notebook, job, command = alternate(data, tokenizer, args.image_size, job_argv(args.large_data, scratch, args.image_size), args.repeats)
    full = time_dataset(decode_only(data, full_decode))[0]
    ours = time_dataset(decode_only(data, lambda d: images.decode_checked(d, args.image_size)[0]))[0]
    size_mb = sum(os.path.getsize(p) for p in data["image_1"] + data["image_2"]) / 1e6
    rows = [
        ("notebook input pipeline, `map` without parallel calls", plain),
        ("notebook input pipeline, `map(num_parallel_calls=AUTOTUNE)`", notebook),
        ("decode only: full decode of both images (AUTOTUNE)", full),
        ("decode only: this project's decode + resize (AUTOTUNE)", ours),
        ("Beam job in this process", job),
        ("same job as a command, `python -m pipeline.shards`", command),
    ]
    options = " ".join(f"--{key.replace('_', '-')} {value:g}" for key, value in LARGE_PROFILE.items())
    return [
        f"The same on {count} pairs of 2048-px images ({size_mb:.0f} MB; `python -m pipeline.synthetic {options}`), "
        "the size and bytes per image of real tweet photos:",
        "",
        "| what | rows/s | seconds | × notebook (AUTOTUNE) |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {count / seconds:.1f} | {seconds:.1f} | {notebook / seconds:.2f} |" for name, seconds in rows),
    ]


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
    parser.add_argument("--out", default="docs/benchmarks/preprocessing.md", help="markdown table (default: %(default)s)")
    parser.add_argument("--large-data", default="data/bench_large", help="2048-px data, made if absent; '' skips (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of the notebook and the job; fastest kept (default: %(default)s)")
    args = parser.parse_args(argv)

    pairs, tokenizer = prepare_data(args.data, args.pairs)
    n = len(pairs["label"])
    size_mb = sum(os.path.getsize(p) for p in pairs["image_1"] + pairs["image_2"]) / 1e6
    results = []

    def record(name, seconds, count):
        results.append((name, count / seconds, seconds))
        print(f"{name}: {count / seconds:.1f} rows/s ({seconds:.1f}s)", flush=True)

    record("notebook input pipeline, `map` without parallel calls", notebook_seconds(pairs, tokenizer, args.image_size, None), n)
    argv = job_argv(args.data, args.shards, args.image_size)
    notebook_best, job_best, command_best = alternate(pairs, tokenizer, args.image_size, argv, args.repeats)
    record("notebook input pipeline, `map(num_parallel_calls=AUTOTUNE)`", notebook_best, n)
    record("decode only: full decode of both images (AUTOTUNE)", *time_dataset(decode_only(pairs, full_decode)))
    ours = lambda data: images.decode_checked(data, args.image_size)[0]  # noqa: E731
    record("decode only: this project's decode + resize (DCT scaling, AUTOTUNE)", *time_dataset(decode_only(pairs, ours)))
    record("Beam job in this process: validate + decode + tokenize + split + write GZIP shards + metadata", job_best, n)
    record("same job as a command, `python -m pipeline.shards` (adds interpreter start, imports, tracing)", command_best, n)
    reader_timing = read_shards(args.shards, args.image_size)
    if reader_timing:
        record("trainer reader over the shards (train split, 3 epochs, batch 32)", *reader_timing)
    else:
        print(f"trainer reader row skipped: fewer than {BATCH_SIZE} train rows", flush=True)

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
    lines += [
        "",
        "Decode + resize cost per image and format, one image at a time (ms/image; the notebook resizes without antialiasing):",
        "",
        "| format | images | notebook | this project | × notebook speed |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, count, notebook_ms, ours_ms in per_format_costs(args.data, args.image_size):
        lines.append(f"| {kind} | {count} | {notebook_ms:.1f} | {ours_ms:.1f} | {notebook_ms / ours_ms:.2f} |")
    lines += ["", *startup.startup_table(job_argv, args.data, args.image_size)]
    if args.large_data:
        lines += ["", *large_profile_table(args, n)]
    write_table(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
