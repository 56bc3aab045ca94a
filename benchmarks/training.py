"""`make bench` (second half): is training input-bound? The baseline model trained from the real
reader against the same batches held in memory, in one invocation.

Model: the baseline architecture (frozen ResNet50V2 on both 128 px images, frozen 2-layer
H-256 BERT, projections, softmax). Random weights (ImageNet and TF Hub downloads are not
possible here) cost the same compute as trained ones. The BERT is a local TF Hub-format model
with the shards' vocabulary. Each figure is the second of two epochs of `--steps` steps, so
tracing is not counted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from benchmarks.preprocessing import write_table  # noqa: E402
from model import local_encoders, multimodal  # noqa: E402
from pipeline import features  # noqa: E402
from trainer import reader  # noqa: E402

BATCH_SIZE = 32


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.started


def train_rate(model, dataset, steps: int) -> float:
    timer = EpochTimer()
    model.fit(dataset, steps_per_epoch=steps, epochs=2, callbacks=[timer], verbose=0)
    return steps * BATCH_SIZE / timer.seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n")[0])
    parser.add_argument("--shards", default="data/bench_shards", help="shards from the preprocessing benchmark")
    parser.add_argument("--vocab", default="data/bench/vocab.txt", help="the vocabulary the shards were tokenized with")
    parser.add_argument("--steps", type=int, default=15, help="steps per timed epoch (default: %(default)s)")
    parser.add_argument("--out", default="docs/benchmarks/training.md")
    args = parser.parse_args(argv)

    metadata = features.read_metadata(args.shards)
    shape = features.Shape(metadata["image_size"], metadata["seq_length"])
    with tempfile.TemporaryDirectory() as scratch:
        bert = local_encoders.build_tiny_bert(args.vocab, os.path.join(scratch, "bert"), hidden=256, layers=2, heads=4)
        config = multimodal.ModelConfig(text_encoder=bert, image_weights="none", image_size=shape.image_size,
                                        seq_length=shape.seq_length)
        model = multimodal.create_model(config)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        from_reader = reader.make_dataset(args.shards, "train", shape, BATCH_SIZE, training=True, seed=0).repeat()
        in_memory = reader.make_dataset(args.shards, "train", shape, BATCH_SIZE, training=True, seed=0)
        in_memory = in_memory.take(args.steps).cache().repeat()
        for _ in in_memory.take(args.steps):  # Fill the cache before timing.
            pass
        reader_rate = train_rate(model, from_reader, args.steps)
        memory_rate = train_rate(model, in_memory, args.steps)
    table = (
        f"Training benchmark: baseline architecture (frozen ResNet50V2 + frozen BERT L-2 H-256), "
        f"{shape.image_size} px, batch {BATCH_SIZE}, {os.cpu_count()} cores, {args.steps} steps per timed epoch.\n\n"
        "| input | examples/s | × in memory |\n|---|---:|---:|\n"
        f"| batches held in memory | {memory_rate:.1f} | 1.00 |\n"
        f"| trainer reader over the shards | {reader_rate:.1f} | {reader_rate / memory_rate:.2f} |\n"
    )
    write_table(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
