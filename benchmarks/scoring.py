"""`make bench` (scoring): the Beam scoring job against `model.predict` and the in-process bound.

All runs score the same rows of the demo CSV with the demo's export (`make train`), one
process each, in one invocation:

- `python -m pipeline.score`, on the in-process runner and on two worker processes;
- `python -m model.predict --csv`, which calls the signature once per pair;
- the bound: one process that reads every image into memory first, then calls the serving
  signature on batches of the job's size in a tight loop (`--bound`).

Times are whole commands (start-up, model load and writing included), so the ratio is what a
user waits; the bound's loop alone is shown too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.memory import measured  # noqa: E402
from benchmarks.preprocessing import write_table  # noqa: E402


def bound(model: str, csv_path: str, images: str, rows_wanted: int, batch_size: int) -> dict:
    """Signature calls on in-memory batches: what the job could reach with no overhead at all."""
    import tensorflow as tf

    from model import export
    from pipeline.inputs import rows

    started = time.perf_counter()
    serve = export.load(model)
    with open(csv_path, newline="", encoding="utf-8") as handle:
        records = [rows.parse_row(n, row) for n, row in enumerate(csv.DictReader(handle), 1)][:rows_wanted]
    data = []
    for record in records:
        pair = []
        for name in record.image_files:
            with open(os.path.join(images, name), "rb") as image:
                pair.append(image.read())
        data.append(pair)
    loop_started = time.perf_counter()
    for start in range(0, len(records), batch_size):
        batch, images_batch = records[start:start + batch_size], data[start:start + batch_size]
        serve(text_1=tf.constant([r.texts[0] for r in batch]), text_2=tf.constant([r.texts[1] for r in batch]),
              image_1=tf.constant([p[0] for p in images_batch]), image_2=tf.constant([p[1] for p in images_batch]))
    ended = time.perf_counter()
    return {"pairs": len(records), "loop_seconds": ended - loop_started, "seconds": ended - started}


def head_csv(csv_path: str, rows_wanted: int, out: str) -> str:
    with open(csv_path, newline="", encoding="utf-8") as source, open(out, "w", newline="", encoding="utf-8") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, fieldnames=reader.fieldnames)
        writer.writeheader()
        for number, row in enumerate(reader):
            if number == rows_wanted:
                break
            writer.writerow(row)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scoring", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="out/demo/model/serving")
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work", default="data/bench_scoring")
    parser.add_argument("--out", default="docs/benchmarks/scoring.md")
    parser.add_argument("--bound", action="store_true", help="(internal) run the bound in this process, print JSON")
    args = parser.parse_args(argv)
    images = os.path.join(args.data, "images")
    if args.bound:
        print(json.dumps(bound(args.model, os.path.join(args.data, "tweets.csv"), images, args.rows, args.batch_size)))
        return 0
    if not os.path.exists(os.path.join(args.model, "saved_model.pb")):
        print(f"error: no export at {args.model}: run `make train` first", file=sys.stderr)
        return 2
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    rows_csv = head_csv(os.path.join(args.data, "tweets.csv"), args.rows, os.path.join(args.work, "pairs.csv"))

    results = []
    _, seconds, output = measured([sys.executable, "-m", "benchmarks.scoring", "--bound", "--model", args.model,
                                   "--data", args.data, "--rows", str(args.rows), "--batch-size", str(args.batch_size)])
    measured_bound = json.loads(output.strip().splitlines()[-1])
    pairs = measured_bound["pairs"]
    bound_seconds = seconds
    results.append(("signature in a tight loop (the bound)", seconds, measured_bound["loop_seconds"]))
    for name, extra in (("pipeline.score, in-process runner", []),
                        ("pipeline.score, 2 worker processes", ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])):
        command = [sys.executable, "-m", "pipeline.score", "--model", args.model, "--csv", rows_csv, "--images", images,
                   "--out", os.path.join(args.work, "scores"), "--overwrite", "--batch-size", str(args.batch_size), *extra]
        _, seconds, output = measured(command)
        with open(os.path.join(args.work, "scores", "summary.json"), encoding="utf-8") as handle:
            assert json.load(handle)["rows_scored"] == pairs, output
        results.append((name, seconds, None))
    _, seconds, output = measured([sys.executable, "-m", "model.predict", "--model", args.model, "--csv", rows_csv,
                                   "--images", images, "--rows", str(args.rows)])
    assert len(output.strip().splitlines()) == pairs
    results.append(("model.predict, one pair per call", seconds, None))

    table = ["| run | seconds | pairs/s | × the bound's time |", "|---|---:|---:|---:|"]
    for name, seconds, loop in results:
        note = f" (loop alone {loop:.1f} s, {pairs / loop:.1f} pairs/s)" if loop else ""
        table.append(f"| {name}{note} | {seconds:.1f} | {pairs / seconds:.1f} | {seconds / bound_seconds:.2f} |")
    title = (f"Scoring {pairs} demo pairs (batch {args.batch_size}) with the demo's export on {os.cpu_count()} cores; "
             "whole commands, start-up and model load included.\n\n")
    write_table(args.out, title + "\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
