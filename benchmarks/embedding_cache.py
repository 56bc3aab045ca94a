"""`make bench` (last part): the embedding cache, `--embedding-cache off` against `on`, one invocation.

Both runs are `python -m trainer.task` processes on the preprocessing benchmark's shards with
the baseline architecture: frozen ResNet50V2 (`--image-weights none`: random weights cost the
same compute as ImageNet's) on both 128 px images, a frozen 2-layer H-256 BERT (local, TF Hub
format), the published head, 10 epochs, batch 32. Epoch times come from the trainer's own
`epoch_seconds` (training steps plus the validation pass), the first pass from its cache log
lines. The last table measures what storing the encoder outputs as float16 instead of float32
would change: the trained head scored on both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.memory import measured  # noqa: E402
from benchmarks.preprocessing import write_table  # noqa: E402

CACHE_LINE = re.compile(r"^embedding cache: (\w+) (\d+) examples in ([\d.]+)s", re.MULTILINE)


def train(shards: str, bert: str, job: str, epochs: int, cache: str) -> dict:
    if os.path.exists(job):
        shutil.rmtree(job)
    command = [sys.executable, "-m", "trainer.task", "--data-dir", shards, "--job-dir", job, "--epochs", str(epochs),
               "--text-encoder", bert, "--image-encoder", "resnet50v2", "--image-weights", "none",
               "--embedding-cache", cache]
    peak, seconds, output = measured(command)
    with open(os.path.join(job, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    with open(os.path.join(job, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    return {"seconds": seconds, "peak_mb": peak, "epochs": config["history"]["epoch_seconds"],
            "first_pass": sum(float(s) for _, _, s in CACHE_LINE.findall(output)),
            "test_f1": metrics["test"]["macro_f1"], "config": config}


def float16_cost(job: str, config: dict) -> tuple[float, float, float, float]:
    """(max |Δp|, share of predicted labels changed, test macro-F1 float32, float16) on val + test."""
    import numpy as np
    import tensorflow as tf

    from model import multimodal
    from pipeline import metrics

    model = multimodal.create_model(multimodal.ModelConfig(**config["model"]))
    model.load_weights(os.path.join(job, "model", "model.weights.h5"))
    head = multimodal.head_of(model)
    folder = config["embedding_cache"]["folder"]
    spec = json.load(open(os.path.join(folder, "complete.json")))["shapes"]
    gaps, changed, total, scores = [], 0, 0, {}
    for split in ("val", "test"):
        files = sorted(tf.io.gfile.glob(os.path.join(folder, f"{split}-*.tfrecord")))
        parse_spec = {"label": tf.io.FixedLenFeature([], tf.int64), **{k: tf.io.FixedLenFeature([], tf.string) for k in spec}}
        labels, full, half = [], [], []
        for serialized in tf.data.TFRecordDataset(files).batch(256):
            parsed = tf.io.parse_example(serialized, parse_spec)
            stored = {k: tf.reshape(tf.io.decode_raw(parsed[k], tf.float32), [-1, *shape]) for k, shape in spec.items()}
            rounded = {k: tf.cast(tf.cast(v, tf.float16), tf.float32) for k, v in stored.items()}
            full.append(head(stored, training=False).numpy())
            half.append(head(rounded, training=False).numpy())
            labels.append(parsed["label"].numpy())
        labels, full, half = np.concatenate(labels), np.concatenate(full), np.concatenate(half)
        gaps.append(np.abs(full - half).max())
        changed += int((full.argmax(-1) != half.argmax(-1)).sum())
        total += len(labels)
        if split == "test":
            scores = {name: metrics.classification_report(labels, p.argmax(-1))["macro_f1"]
                      for name, p in (("float32", full), ("float16", half))}
    return max(gaps), changed / total, scores["float32"], scores["float16"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embedding_cache", description=__doc__.split("\n")[0])
    parser.add_argument("--shards", default="data/bench_shards", help="shards from the preprocessing benchmark")
    parser.add_argument("--vocab", default="data/bench/vocab.txt", help="the vocabulary the shards were tokenized with")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", default="data/bench_cache", help="scratch folder (default: %(default)s)")
    parser.add_argument("--out", default="docs/benchmarks/embedding_cache.md")
    parser.add_argument("--data", default="data/bench", help="the preprocessing benchmark's data, made if absent")
    args = parser.parse_args(argv)
    from model import local_encoders

    if not os.path.exists(os.path.join(args.shards, "metadata.json")):  # As `make bench`'s first part makes them.
        from benchmarks.preprocessing import job_argv, prepare_data
        from pipeline.shards import command as shards_command

        prepare_data(args.data, 1400)
        shards_command.run(job_argv(args.data, args.shards, 128))

    bert = local_encoders.build_tiny_bert(args.vocab, os.path.join(args.work, "bert"), hidden=256, layers=2, heads=4)
    off = train(args.shards, bert, os.path.join(args.work, "off"), args.epochs, "off")
    on = train(args.shards, bert, os.path.join(args.work, "on"), args.epochs, "on")
    gap, changed, f1_32, f1_16 = float16_cost(os.path.join(args.work, "on"), on["config"])
    metadata = on["config"]["data_metadata"]
    later = {name: statistics.median(run["epochs"][1:]) for name, run in (("off", off), ("on", on))}
    ratios = [  # (what, off, on), with off ÷ on.
        ("whole run, wall (s)", off["seconds"], on["seconds"]),
        ("first epoch (s)", off["epochs"][0], on["epochs"][0]),
        ("epoch after the first, median (s)", later["off"], later["on"]),
    ]
    table = [
        f"Embedding cache benchmark: baseline architecture (frozen ResNet50V2, random weights; frozen BERT L-2 H-256), "
        f"{metadata['image_size']} px, {metadata['counts']['train']['total']} train / {metadata['counts']['val']['total']} val / "
        f"{metadata['counts']['test']['total']} test pairs, {args.epochs} epochs, batch 32, 2 cores, no GPU. "
        "Each run is one `python -m trainer.task` process, start-up, evaluation and export included.",
        "",
        "| | `--embedding-cache off` | `--embedding-cache on` | off ÷ on |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.1f} |" for name, a, b in ratios),
        f"| first pass over every split (s) | | {on['first_pass']:.2f} | |",
        f"| peak RSS (MB) | {off['peak_mb']:.0f} | {on['peak_mb']:.0f} | |",
        f"| test macro-F1 | {off['test_f1']:.3f} | {on['test_f1']:.3f} | |",
        "",
        "Stored as float16 instead of float32 (same trained head, val and test pairs): "
        f"max |Δp| {gap:.1e}, predicted labels changed {changed:.2%}, test macro-F1 {f1_32:.4f} → {f1_16:.4f}; "
        "the cache would be half the size. It stays float32, so the head sees exactly what the model computes.",
        "",
    ]
    write_table(args.out, "\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
