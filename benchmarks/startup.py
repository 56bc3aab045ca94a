"""Where `python -m pipeline.shards`'s time goes before and around the rows (for `make bench`).

Each row is a fresh process, timed from outside, fastest of `repeats`: the interpreter alone,
importing Beam, importing TensorFlow with TF Text (TF itself imports all of Keras, and
TF Text imports it again for its layers), `--help` (which imports neither), a flag error
(checked against Beam's options), and the whole command on a 1-row CSV, which is the job's
fixed cost: imports, checks, tokenizer, tracing the decode graph, and Beam's stages.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time


def command_seconds(argv: list[str], check: bool = True) -> float:
    """Seconds for one new `python` process running `argv` (output discarded)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def one_row_csv(csv_path: str, out_path: str) -> str:
    with open(csv_path, newline="", encoding="utf-8") as src, open(out_path, "w", newline="", encoding="utf-8") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        writer.writerow(next(reader))
        writer.writerow(next(reader))
    return out_path


def startup_table(job_argv, data_dir: str, image_size: int, repeats: int = 2) -> list[str]:
    """Markdown lines: the command's fixed costs, each the fastest of `repeats` runs."""
    with tempfile.TemporaryDirectory() as scratch:
        one_row = one_row_csv(os.path.join(data_dir, "tweets.csv"), os.path.join(scratch, "one.csv"))
        argv = job_argv(data_dir, os.path.join(scratch, "out"), image_size, one_row)
        rows = [
            ("interpreter start (`python -c pass`)", ["-c", "pass"], True),
            ("import apache_beam", ["-c", "import apache_beam"], True),
            ("import tensorflow, tensorflow_text", ["-c", "import tensorflow, tensorflow_text"], True),
            ("`python -m pipeline.shards --help`", ["-m", "pipeline.shards", "--help"], True),
            ("a misspelt flag (`--image-szie 48`): one error line", ["-m", "pipeline.shards", *argv, "--image-szie", "48"], False),
            ("the whole command on a 1-row CSV (the job's fixed cost)", ["-m", "pipeline.shards", *argv], True),
        ]
        timed = [(name, min(command_seconds(args, check) for _ in range(repeats))) for name, args, check in rows]
    lines = [
        "Where the command's fixed cost goes (each a new process, fastest of "
        f"{repeats}; the rows overlap: the 1-row command includes the imports above it):",
        "",
        "| what | seconds |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in timed]
    return lines
