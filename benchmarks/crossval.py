"""`make bench` (small data): the trained head against a linear probe, joint against separate pairing.

On synthetic pairs at the real set's size and class ratio (1,400 pairs, 109 / 109 / 1,182), text
only, with the imported all-MiniLM-L6-v2 frozen and mean-pooled (the real data's outside check),
each configuration is one `python -m trainer.crossval` process (5 folds; one encoder pass into
the embedding cache, then a head per fold). The probe is a class-balanced logistic regression
(`benchmarks.linear_probe`, scikit-learn's objective) on the same cached features and the same
folds, fitted on each fold's training and validation pairs. Every figure is a mean ± standard
deviation over the folds.

    python -m benchmarks.crossval --out docs/benchmarks/crossval.md            # make bench
    python -m benchmarks.crossval --grid --out docs/benchmarks/crossval_settings.md   # the grid the defaults came from
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# name → (pairing, extra trainer flags); the defaults of trainer.task otherwise.
RUNS = {
    "joint, the trainer's defaults": ("joint", []),
    "separate, the trainer's defaults": ("separate", []),
    "joint, the baseline's recipe (--loss ce --epochs 10 --select-by last)": (
        "joint", ["--loss", "ce", "--epochs", "10", "--select-by", "last"]),
}
# The settings the defaults were chosen from (loss, epochs, the epoch kept, the head), in both pairings.
SETTINGS = {
    "--loss ce --epochs 10 --select-by last": ["--loss", "ce", "--epochs", "10", "--select-by", "last"],
    "--epochs 10": ["--epochs", "10"],
    "(defaults: weighted-ce, 50 epochs, val_loss)": [],
    "--epochs 100": ["--epochs", "100"],
    "--epochs 100 --select-by val_macro_f1": ["--epochs", "100", "--select-by", "val_macro_f1"],
    "--epochs 100 --select-by last": ["--epochs", "100", "--select-by", "last"],
    "--loss focal": ["--loss", "focal"],
    "--head linear": ["--head", "linear"],
    "--learning-rate 3e-4": ["--learning-rate", "3e-4"],
}
GRID = {f"{pairing}, {name}": (pairing, flags) for pairing in ("joint", "separate") for name, flags in SETTINGS.items()}
BASE_FLAGS = ["--mode", "text", "--image-encoder", "tiny", "--image-weights", "none"]


def prepare(root: str, encoder: str, pairs: int, seq_length: int) -> dict[str, str]:
    """The synthetic data (once) and its shards in both pairings; returns pairing → shards folder."""
    from pipeline.shards import command as shards_command
    from pipeline.synthetic import pairs as synthetic

    data = os.path.join(root, "data")
    if not os.path.exists(os.path.join(data, "tweets.csv")):
        synthetic.generate(data, pairs, seed=5, ratios=(109, 109, 1182), min_side=48, max_side=96)
    shards = {}
    for pairing in ("joint", "separate"):
        shards[pairing] = os.path.join(root, f"shards_{pairing}")
        if not os.path.exists(os.path.join(shards[pairing], "metadata.json")):
            shards_command.run(["--csv", os.path.join(data, "tweets.csv"), "--images", os.path.join(data, "images"),
                                "--out", shards[pairing], "--text-encoder", encoder, "--image-size", "32",
                                "--seq-length", str(seq_length), "--text-pairing", pairing, "--overwrite"])
    return shards


def crossval(shards: str, encoder: str, job: str, cache: str, folds: int, flags: list[str]) -> tuple[dict, float]:
    """One `python -m trainer.crossval` process: (crossval.json, seconds)."""
    shutil.rmtree(job, ignore_errors=True)
    command = [sys.executable, "-m", "trainer.crossval", "--folds", str(folds), "--data-dir", shards, "--job-dir", job,
               "--text-encoder", encoder, "--embedding-cache-dir", cache, *BASE_FLAGS, *flags]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    with open(os.path.join(job, "crossval.json")) as handle:
        return json.load(handle), time.monotonic() - started


def probe(shards: str, cache: str, folds: int) -> list[float]:
    """The linear probe's test macro-F1 per fold, on the cached features of the same folds."""
    import numpy as np

    from benchmarks import linear_probe
    from model import multimodal
    from pipeline import features, metrics
    from trainer import crossval as cv
    from trainer import embedding_cache

    (folder,) = [path for path in (os.path.join(cache, name) for name in os.listdir(cache))
                 if os.path.exists(os.path.join(path, embedding_cache.COMPLETE_FILE))]
    keys, labels, outputs = embedding_cache.stored_outputs(folder)
    vectors = np.asarray(multimodal.text_pair_features(outputs))  # The text features the head sees.
    splits = features.read_metadata(shards)["splits"]
    scores = []
    for roles in cv.fold_roles(list(zip(keys, labels.tolist())), folds, splits["seed"], splits["val_fraction"]):
        fitted = np.array([roles[key] != "test" for key in keys])
        model = linear_probe.fit(vectors[fitted], labels[fitted])
        predicted = linear_probe.predict(model, vectors[~fitted])
        scores.append(metrics.classification_report(labels[~fitted], predicted)["macro_f1"])
    return scores


def spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crossval", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/benchmarks/crossval.md")
    parser.add_argument("--root", default="data/bench_crossval")
    parser.add_argument("--encoder", default="data/encoders/minilm", help="the imported all-MiniLM-L6-v2 (make encoders)")
    parser.add_argument("--pairs", type=int, default=1400)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seq-length", type=int, default=64)
    parser.add_argument("--probe-only", action="store_true", help="the probe, and one 1-epoch cross-validation per pairing (it builds the embedding caches)")
    parser.add_argument("--grid", action="store_true", help="every setting the defaults were chosen from (about 40 minutes)")
    parser.add_argument("--runs", nargs="*", metavar="NAME=PAIRING:FLAGS",
                        help="other runs than the default table, e.g. 'lr 3e-3=separate:--learning-rate 3e-3'")
    args = parser.parse_args(argv)
    if sum(map(bool, (args.grid, args.runs, args.probe_only))) > 1:
        parser.error("--grid, --runs and --probe-only each choose the runs: give one")
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    runs = dict(GRID if args.grid else RUNS)
    if args.runs:
        runs = {}
        for run in args.runs:
            name, _, spec = run.partition("=")
            pairing, _, flags = spec.partition(":")
            if pairing not in ("joint", "separate"):
                parser.error(f"--runs {run!r}: the pairing after '=' must be joint or separate")
            runs[name] = (pairing, flags.split())
    shards = prepare(args.root, args.encoder, args.pairs, args.seq_length)
    if args.probe_only:
        runs = {f"{pairing} (cache)": (pairing, ["--epochs", "1"]) for pairing in ("joint", "separate")}
    rows, probes = [], {}
    for name, (pairing, flags) in runs.items():
        cache = os.path.join(args.root, f"cache_{pairing}")
        result, seconds = crossval(shards[pairing], args.encoder, os.path.join(args.root, "job"), cache, args.folds, flags)
        if pairing not in probes:
            probes[pairing] = probe(shards[pairing], cache, args.folds)
            rows.append((f"{pairing}, linear probe (logistic regression)", spread(probes[pairing]), "", "",
                         " ".join(f"{value:.3f}" for value in probes[pairing]), "", ""))
        recalls = result["per_class_recall"]
        rows.append((name, spread(result["macro_f1"]["per_fold"]), spread(recalls["Implies"]["per_fold"]),
                     spread(recalls["Contradictory"]["per_fold"]),
                     " ".join(f"{value:.3f}" for value in result["macro_f1"]["per_fold"]),
                     " ".join(str(epoch) for epoch in result["selected_epochs"]), f"{seconds:.0f}"))
        print(rows[-1], flush=True)
    lines = [
        f"Small data: {args.pairs} synthetic pairs at the real set's class ratio (109 / 109 / 1,182), text only, "
        f"all-MiniLM-L6-v2 frozen (mean pooling), sequence length {args.seq_length}, {args.folds}-fold "
        "cross-validation (`python -m trainer.crossval`), the trainer's defaults otherwise. Mean ± standard deviation "
        "over the folds. The probe is a class-balanced logistic regression on the same cached features and folds. "
        "Written by `python -m benchmarks.crossval" + "".join(f" {arg}" for arg in (sys.argv[1:] if argv is None else argv))
        + "`.",
        "",
        "| run | test macro-F1 | Implies recall | Contradictory recall | per fold | epoch kept per fold | seconds (whole run) |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
