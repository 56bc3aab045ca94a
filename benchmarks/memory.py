"""`make bench` (memory part): the Beam job's peak memory and speed at 1k, 10k and 100k rows.

Each size is a synthetic data set of small images (64–160 px, as in the issue's measurement;
decoding is not what is measured here) written once into `--data`; the job runs as users run
it, `python -m pipeline.shards` with the default local runner and image size 128, in a fresh
process per size. Peak RSS is that process's own (`wait4`), and the ratio column compares
each size with the smallest one measured in the same invocation: flat memory means the
ratios stay near 1 while the rows grow 100-fold.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.preprocessing import write_table
from pipeline.synthetic import pairs as synthetic

SIZES = (1_000, 10_000, 100_000)


def ensure_data(root: str, pairs: int) -> str:
    folder = os.path.join(root, f"rows-{pairs}")
    if not os.path.exists(os.path.join(folder, "tweets.csv")):
        print(f"generating {pairs} pairs into {folder} ...", flush=True)
        synthetic.generate(folder, pairs, seed=0, ratios=(109, 109, 1182), min_side=64, max_side=160)
    return folder


def measured(command: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, stdout) of one command; its own peak RSS, from `wait4`."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = process.stdout.read()  # Read before waiting: a full pipe would block the child.
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return usage.ru_maxrss / 1024, seconds, output


def run_job(data: str, out: str, extra: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, last line of the summary) of one `python -m pipeline.shards`."""
    command = [
        sys.executable, "-m", "pipeline.shards", "--csv", os.path.join(data, "tweets.csv"),
        "--images", os.path.join(data, "images"), "--vocab", os.path.join(data, "vocab.txt"),
        "--out", out, "--overwrite", "--image-size", "128", *extra,
    ]
    peak, seconds, output = measured(command)
    return peak, seconds, output.strip().splitlines()[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/bench_memory", help="where the data sets are generated (once)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="rows per data set (default: %(default)s)")
    parser.add_argument("--out", default="docs/benchmarks/memory.md", help="table written here")
    args = parser.parse_args(argv)
    results = []
    for pairs in args.sizes:
        data = ensure_data(args.data, pairs)
        peak, seconds, line = run_job(data, os.path.join(args.data, f"shards-{pairs}"), [])
        print(f"{pairs} rows: peak RSS {peak:.0f} MB, {seconds:.1f} s ({line})", flush=True)
        results.append((pairs, peak, seconds))
    base_rows, base_peak, _ = results[0]
    lines = [
        f"Beam job memory: `python -m pipeline.shards` (default local runner) as a command, synthetic pairs with "
        f"64–160 px images, image size 128, {os.cpu_count()} cores. Ratios are against the {base_rows:,}-row run "
        "of the same invocation.",
        "",
        f"| rows | peak RSS (MB) | × peak RSS at {base_rows:,} rows | seconds (whole command) | rows/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for pairs, peak, seconds in results:
        lines.append(f"| {pairs:,} | {peak:,.0f} | {peak / base_peak:.2f} | {seconds:.1f} | {pairs / seconds:.1f} |")
    write_table(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
