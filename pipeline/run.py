"""`make shards`: tweet-pair CSV + images folder → TFRecord shards, metadata.json, rejected.jsonl.

Locally (Beam's FnApiRunner in this process, decoding on every core; the default):

    python -m pipeline.run --csv data/demo/tweets.csv --images data/demo/images \\
        --vocab data/demo/vocab.txt --out data/shards

On Dataflow, the same job with standard Beam options (see README for the worker container):

    python -m pipeline.run --csv gs://BUCKET/tweets.csv --images gs://BUCKET/images \\
        --out gs://BUCKET/shards --runner DataflowRunner --project PROJECT --region REGION \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py

Flags this module does not know are passed to Beam's `PipelineOptions` untouched. Bad
invocations fail with one `error:` line and exit status 2 before any work starts; a finished
job prints counts per split and label, rejections by reason and rows/s, and exits 1 if the
counts do not reconcile (rows read ≠ examples written + rows rejected).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import sys
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import features, rows  # noqa: E402
from pipeline.preprocess import DEFAULT_MAX_PIXELS, DEFAULT_PREPROCESS_HANDLE, TokenizerSource  # noqa: E402


class UsageError(Exception):
    """A bad invocation: reported as one line, before any work."""


def define_flags() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.run",
        description="Tweet-pair CSV + images → TFRecord shards (Apache Beam). "
        "Unknown flags (--runner, --direct_num_workers, --project, ...) go to Beam.",
    )
    parser.add_argument("--csv", required=True, help="input CSV: local path, gs:// or https:// URL")
    parser.add_argument("--images", required=True, help="folder of <id>.<ext> image files (local or gs://)")
    parser.add_argument("--out", required=True, help="output folder (local or gs://)")
    parser.add_argument("--vocab", help="local WordPiece vocab.txt; without it --preprocess-handle is used")
    parser.add_argument("--cased", action="store_true", help="with --vocab: keep case (default: lower-case, uncased BERT)")
    parser.add_argument(
        "--preprocess-handle",
        default=DEFAULT_PREPROCESS_HANDLE,
        help="TF Hub BERT preprocessing handle or directory (default: %(default)s)",
    )
    parser.add_argument("--image-size", type=int, default=128, help="side of stored square images (default: %(default)s)")
    parser.add_argument("--seq-length", type=int, default=128, help="BERT input length (default: %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="test share per label (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="val share of the rest (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    parser.add_argument("--train-shards", type=int, default=4, help="train shard files (default: %(default)s)")
    parser.add_argument("--eval-shards", type=int, default=1, help="val and test shard files each (default: %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="reject larger images (default: %(default)s)")
    parser.add_argument("--jpeg-quality", type=int, default=features.STORAGE_JPEG_QUALITY, help="quality of stored images (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="image read/decode and shard compression threads per worker process (default: one per core)")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    return parser


def _is_remote(path: str) -> bool:
    return "://" in path


def _check_args(args: argparse.Namespace) -> None:
    if args.image_size < 8:
        raise UsageError(f"--image-size must be at least 8, got {args.image_size}")
    if args.seq_length < 5:
        raise UsageError(f"--seq-length must be at least 5, got {args.seq_length}")
    if not (0 <= args.test_fraction < 1 and 0 <= args.val_fraction < 1):
        raise UsageError("--test-fraction and --val-fraction must be in [0, 1)")
    if args.train_shards < 1 or args.eval_shards < 1:
        raise UsageError("--train-shards and --eval-shards must be at least 1")
    if args.threads < 0:
        raise UsageError("--threads must be 0 (one per core) or more")
    if not 1 <= args.jpeg_quality <= 100:
        raise UsageError("--jpeg-quality must be in 1..100")


def fetch_csv(url: str, out_dir: str) -> str:
    """Downloads an https:// CSV into the output folder so every worker can read it."""
    from apache_beam.io.filesystems import FileSystems

    target = FileSystems.join(out_dir, "source.csv")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, FileSystems.create(target) as handle:
            while chunk := response.read(1 << 20):
                handle.write(chunk)
    except OSError as error:
        raise UsageError(f"cannot download --csv {url}: {error}") from None
    return target


def inspect_csv(path: str) -> str:
    """Checks that the CSV exists, has every column and at least one row; returns its sha256."""
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(path):
        raise UsageError(f"--csv {path} does not exist")
    digest = hashlib.sha256()
    try:
        with FileSystems.open(path) as raw:
            head = raw.read(1 << 20)
            digest.update(head)
            while chunk := raw.read(1 << 20):
                digest.update(chunk)
    except OSError as error:
        raise UsageError(f"cannot read --csv {path}: {error}") from None
    try:
        reader = csv.reader(io.StringIO(head.decode("utf-8-sig", errors="replace")))
        header = next(reader, None)
        first_row = next(reader, None)
    except csv.Error as error:
        raise UsageError(f"--csv {path} is not a CSV file: {error}") from None
    if not header:
        raise UsageError(f"--csv {path} is empty")
    missing = [column for column in rows.CSV_COLUMNS if column not in header]
    if missing:
        raise UsageError(f"--csv {path} lacks columns {missing} (needs {', '.join(rows.CSV_COLUMNS)})")
    if first_row is None:
        raise UsageError(f"--csv {path} has a header but no rows")
    return digest.hexdigest()


def prepare_output(out_dir: str, overwrite: bool) -> None:
    """Fails early if --out cannot be written or already holds shards (unless --overwrite)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        if not _is_remote(out_dir):
            os.makedirs(out_dir, exist_ok=True)
        probe = FileSystems.join(out_dir, ".write-test")
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except Exception as error:  # noqa: BLE001  Any failure here means "cannot write".
        raise UsageError(f"--out {out_dir} is not writable: {error}") from None
    pattern = FileSystems.join(out_dir, f"*{features.SHARD_SUFFIX}")
    existing = [m.path for result in FileSystems.match([pattern]) for m in result.metadata_list]
    if existing and not overwrite:
        raise UsageError(f"--out {out_dir} already holds {len(existing)} shard files; pass --overwrite to replace them")
    if existing:
        FileSystems.delete(existing)


def load_tokenizer_source(args: argparse.Namespace) -> tuple[TokenizerSource, str]:
    """Reads the vocabulary (or loads the Hub model) once here, so a bad source fails before workers try."""
    try:
        source = TokenizerSource.from_flags(args.vocab, not args.cased, args.preprocess_handle)
        fingerprint = source.fingerprint(args.seq_length)
    except Exception as error:  # noqa: BLE001  Hub/IO/format errors all mean "cannot tokenize".
        remote = not args.vocab and (args.preprocess_handle or DEFAULT_PREPROCESS_HANDLE).startswith(("http://", "https://"))
        hint = " (no network? pass --vocab PATH to a local vocab.txt)" if remote else ""
        raise UsageError(f"cannot load the tokenizer: {str(error).splitlines()[0]}{hint}") from None
    return source, fingerprint


def pipeline_options(beam_args: list[str]):
    """Standard Beam options; without --runner, Beam's local FnApiRunner in this process.

    One process, one bundle thread: `PreprocessFn` keeps every core busy with its own decode
    thread pool (TF ops release the GIL), so Beam's worker threads or processes would only add
    hand-over costs (measured in `make bench`). The runner is named outright because Beam
    2.77's `DirectRunner` first tries to download and start the Prism runner (a Go binary from
    GitHub), which makes local runs depend on the network. `--runner=DirectRunner` still works.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    if not any(arg.startswith("--default_sdk_harness_log_level") for arg in beam_args):
        beam_args = ["--default_sdk_harness_log_level=WARNING"] + beam_args
    if not any(arg.startswith("--runner") for arg in beam_args):
        beam_args = ["--runner=FnApiRunner"] + beam_args
        if not any(arg.startswith("--direct_running_mode") for arg in beam_args):
            beam_args += ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    return PipelineOptions(beam_args)


def summary(metadata: dict, seconds: float) -> str:
    """The end-of-job report printed to stdout."""
    labels = metadata["labels"]
    lines = [f"{'split':<8}" + "".join(f"{name:>15}" for name in labels) + f"{'total':>10}"]
    for split, counts in metadata["counts"].items():
        lines.append(f"{split:<8}" + "".join(f"{counts[name]:>15}" for name in labels) + f"{counts['total']:>10}")
    lines.append(
        f"rows read {metadata['rows_read']} = written {metadata['examples_written']} "
        f"+ rejected {metadata['rows_rejected']}"
    )
    for reason, count in metadata["rejected_by_reason"].items():
        lines.append(f"  rejected {reason}: {count}")
    rate = metadata["rows_read"] / seconds if seconds > 0 else float("nan")
    lines.append(f"{metadata['rows_read']} rows in {seconds:.1f}s ({rate:.1f} rows/s)")
    return "\n".join(lines)


def run(argv: list[str] | None = None, test_pipeline=None) -> dict:
    """Runs the job and returns metadata.json's contents; raises UsageError on bad invocation."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from pipeline.transforms import BuildShards, JobSettings

    args, beam_args = define_flags().parse_known_args(argv)
    _check_args(args)
    if not _is_remote(args.images) and not os.path.isdir(args.images):
        raise UsageError(f"--images {args.images} is not a folder")
    prepare_output(args.out, args.overwrite)
    csv_path = fetch_csv(args.csv, args.out) if args.csv.startswith(("http://", "https://")) else args.csv
    csv_sha256 = inspect_csv(csv_path)
    tokenizer, fingerprint = load_tokenizer_source(args)
    settings = JobSettings(
        images_dir=args.images,
        out_dir=args.out,
        shape=features.Shape(args.image_size, args.seq_length),
        tokenizer=tokenizer,
        max_pixels=args.max_pixels,
        jpeg_quality=args.jpeg_quality,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        seed=args.seed,
        train_shards=args.train_shards,
        eval_shards=args.eval_shards,
        csv_sha256=csv_sha256,
        vocab_fingerprint=fingerprint,
        threads=args.threads,
    )
    started = time.monotonic()
    pipeline = test_pipeline or beam.Pipeline(options=pipeline_options(beam_args))
    _ = pipeline | "BuildShards" >> BuildShards(csv_path, settings)
    pipeline.run().wait_until_finish()
    seconds = time.monotonic() - started
    with FileSystems.open(FileSystems.join(args.out, features.METADATA_FILE)) as handle:
        metadata = json.loads(handle.read().decode("utf-8"))
    metadata["seconds"] = round(seconds, 2)
    print(summary(metadata, seconds))
    return metadata


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        metadata = run(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if metadata["rows_read"] != metadata["examples_written"] + metadata["rows_rejected"]:
        print("error: counts do not reconcile: rows were lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
