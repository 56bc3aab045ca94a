"""`make shards`: tweet-pair CSV(s) + images folder → TFRecord shards, metadata.json, rejected.jsonl.

Locally (Beam's FnApiRunner in this process, decoding on every core; the default):

    python -m pipeline.run --csv data/demo/tweets.csv --images data/demo/images \\
        --vocab data/demo/vocab.txt --out data/shards

The tokenizer is the text encoder's: `--text-encoder DIR` reads the vocabulary and casing from
the encoder that training will use (a `model.import_hf` output, say), `--vocab` takes a
vocab.txt, and without either `--preprocess-handle` is loaded from TF Hub.

On Dataflow, the same job with standard Beam options (see README for the worker container);
many CSV files are read in parallel, one worker each:

    python -m pipeline.run --csv 'gs://BUCKET/pairs-*.csv' --images gs://BUCKET/images \\
        --out gs://BUCKET/shards --runner DataflowRunner --project PROJECT --region REGION \\
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py

Flags this module does not know go to Beam's `PipelineOptions`; a flag that Beam does not know
either stops the job. Bad invocations fail with one `error:` line and exit status 2 before
any work starts (`--help` and flag errors do not even import TensorFlow); a job that fails
prints one `error:` line and exits 1, leaving no metadata.json; a finished job prints counts
per split and label, rejections by reason and rows/s, and exits 1 if the counts do not
reconcile (rows read ≠ examples written + rows rejected).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import uuid

from pipeline import cli, features, logs, preflight
from pipeline.cli import Parser, UsageError
from pipeline.settings import DEFAULT_MAX_PIXELS, DEFAULT_PREPROCESS_HANDLE, JobSettings


class JobFailed(Exception):
    """The Beam job itself failed; the output folder holds no metadata.json."""


def define_flags() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m pipeline.run",
        description="Tweet-pair CSV + images → TFRecord shards (Apache Beam). "
        "Flags of Beam's PipelineOptions (--runner, --direct_num_workers, --project, ...) go to Beam.",
        allow_abbrev=False,  # An abbreviation must not swallow a Beam flag, nor a typo pass as one.
    )
    parser.add_argument("--csv", required=True, help="input CSV: local path, gs://, a glob of files ('pairs-*.csv'), or https:// URL")
    parser.add_argument("--images", required=True, help="folder of <id>.<ext> image files (local or gs://)")
    parser.add_argument("--out", required=True, help="output folder (local or gs://)")
    tokenizer = parser.add_mutually_exclusive_group()
    tokenizer.add_argument("--text-encoder", help="tokenize with this TF Hub-format BERT encoder's own vocabulary and "
                           "casing (a directory, gs:// path or handle: what trainer.task gets as --text-encoder)")
    tokenizer.add_argument("--vocab", help="WordPiece vocab.txt (local or gs://); without it or --text-encoder, "
                           "--preprocess-handle is used")
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
    parser.add_argument(
        "--threads", type=int, default=0,
        help="image read/decode threads per worker process (default: the process's share of the machine's cores)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the output of an earlier run in --out")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's and Beam's logs, and tracebacks")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.image_size < 8:
        raise UsageError(f"--image-size must be at least 8, got {args.image_size}")
    if args.seq_length < 5:
        raise UsageError(f"--seq-length must be at least 5, got {args.seq_length}")
    if not (0 <= args.test_fraction < 1 and 0 <= args.val_fraction < 1):
        raise UsageError("--test-fraction and --val-fraction must be in [0, 1)")
    if args.train_shards < 1 or args.eval_shards < 1:
        raise UsageError("--train-shards and --eval-shards must be at least 1")
    if args.cased and not args.vocab:
        raise UsageError("--cased goes with --vocab (an encoder's casing comes with it)")
    if args.threads < 0:
        raise UsageError("--threads must be 0 (the default share of the cores) or more")
    if not 1 <= args.jpeg_quality <= 100:
        raise UsageError("--jpeg-quality must be in 1..100")


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
    tokens = metadata.get("pair_tokens", {})
    cut = sum(stats["truncated"] for stats in tokens.values())
    pairs = sum(stats["pairs"] for stats in tokens.values())
    if pairs:
        lines.append(f"text pairs cut at --seq-length {metadata['seq_length']}: {cut} of {pairs} ({cut / pairs:.1%}); "
                     f"95% of train pairs have at most {tokens['train']['p95']} tokens (pipeline.preview shows more)")
    rate = metadata["rows_read"] / seconds if seconds > 0 else float("nan")
    files = len(metadata["source_fingerprint"]["csv_files"])
    lines.append(f"{metadata['rows_read']} rows from {files} CSV file{'s' * (files != 1)} in {seconds:.1f}s ({rate:.1f} rows/s)")
    return "\n".join(lines)


def run(argv: list[str] | None = None, test_pipeline=None) -> dict:
    """Runs the job and returns metadata.json's contents; raises UsageError or JobFailed."""
    parser = define_flags()
    args, beam_args = parser.parse_known_args(argv)
    _check_args(args)
    from pipeline import beam_options

    beam_options.check_beam_flags(beam_args, [option for action in parser._actions for option in action.option_strings])
    options = beam_options.pipeline_options(beam_args)
    if not preflight.is_remote(args.images) and not os.path.isdir(args.images):
        raise UsageError(f"--images {args.images} is not a folder")
    preflight.prepare_output(args.out, args.overwrite)
    pattern = preflight.fetch_csv(args.csv, args.out) if args.csv.startswith(("http://", "https://")) else args.csv
    csv_files = preflight.match_csv(pattern)
    preflight.inspect_csv(csv_files[0], only_file=len(csv_files) == 1)
    logs.import_tensorflow(args.verbose)
    tokenizer, fingerprint = preflight.load_tokenizer_source(args)

    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from pipeline import write
    from pipeline.job import BuildShards

    settings = JobSettings(
        images_dir=args.images,
        out_dir=args.out,
        run_id=uuid.uuid4().hex[:12],
        shape=features.Shape(args.image_size, args.seq_length),
        tokenizer=tokenizer,
        max_pixels=args.max_pixels,
        jpeg_quality=args.jpeg_quality,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        seed=args.seed,
        train_shards=args.train_shards,
        eval_shards=args.eval_shards,
        vocab_fingerprint=fingerprint,
        threads=args.threads,
        processes_per_machine=beam_options.processes_per_machine(options),
    )
    started = time.monotonic()
    pipeline = test_pipeline or beam.Pipeline(options=options)
    _ = pipeline | "BuildShards" >> BuildShards(pattern, settings, len(csv_files))
    try:
        FileSystems.mkdirs(settings.temp_dir)
        pipeline.run().wait_until_finish()
    except KeyboardInterrupt:
        write.delete_temp_dir(settings)
        raise
    except Exception as error:  # noqa: BLE001  Whatever failed, the folder must not look complete.
        write.delete_temp_dir(settings)
        raise job_failed(error, args.verbose) from None
    seconds = time.monotonic() - started
    with FileSystems.open(FileSystems.join(args.out, features.METADATA_FILE)) as handle:
        metadata = json.loads(handle.read().decode("utf-8"))
    metadata["seconds"] = round(seconds, 2)
    print(summary(metadata, seconds))
    return metadata


def job_failed(error: Exception, verbose: bool) -> JobFailed:
    """The one-line JobFailed of whatever stopped a Beam job (the traceback with --verbose)."""
    if verbose:
        traceback.print_exc()
    lines = [line for line in str(error).splitlines() if line.strip()]
    return JobFailed(f"{type(error).__name__}: {lines[-1] if lines else ''}")


def command_main(run_job, argv: list[str] | None, completion_file: str, accounted: str) -> int:
    """A job's `main`: one `error:` line and exit 2 for usage, 1 for a failed job or lost rows.

    `run_job(argv)` returns the completion file's contents, in which `rows_read` must equal
    the `accounted` count plus `rows_rejected`.
    """
    argv = sys.argv[1:] if argv is None else argv
    logs.configure("--verbose" in argv)
    try:
        result = run_job(argv)
    except UsageError as error:
        return cli.report(error)
    except JobFailed as error:
        print(f"error: the job failed, and wrote no {completion_file}: {error}", file=sys.stderr)
        return 1
    if result["rows_read"] != result[accounted] + result["rows_rejected"]:
        print("error: counts do not reconcile: rows were lost", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(run, argv, features.METADATA_FILE, "examples_written")


if __name__ == "__main__":
    sys.exit(main())
