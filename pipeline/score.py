"""`make score`: new tweet pairs (CSV + images) → predictions of an exported model, with Beam's RunInference.

Locally (Beam's FnApiRunner in this process; the default):

    python -m pipeline.score --model out/demo/model/serving --csv data/demo/tweets.csv \\
        --images data/demo/images --out out/demo/scores

On Dataflow, the same job with standard Beam options (see the README's "Scoring new pairs"):

    python -m pipeline.score --model gs://BUCKET/jobs/JOB/model/serving --csv 'gs://BUCKET/new/pairs-*.csv' \\
        --images gs://BUCKET/new/images --out gs://BUCKET/scores --runner DataflowRunner \\
        --project PROJECT --region REGION --temp_location gs://BUCKET/tmp --setup_file ./setup.py

The CSV has the shards job's columns; `label` is optional, and when it is there the summary
holds accuracy, macro-F1 and the confusion matrix. Rows are validated as the shards job does
it, and a refused row goes to rejected.jsonl with its reason; the job checks that every row
read was scored or rejected. Bad invocations fail with one `error:` line and exit status 2
before any work starts; a failed job prints one `error:` line, exits 1, and leaves no
summary.json.
"""

from __future__ import annotations

import json
import os
import sys
import time

from pipeline import logs, preflight, rows
from pipeline.cli import Parser, UsageError
from pipeline.run import job_failed
from pipeline.settings import DEFAULT_MAX_PIXELS


def define_flags():
    parser = Parser(
        prog="python -m pipeline.score",
        description="Score tweet pairs (CSV + images) with an exported model (Apache Beam RunInference). "
        "Flags of Beam's PipelineOptions (--runner, --direct_num_workers, --project, ...) go to Beam.",
        allow_abbrev=False,
    )
    parser.add_argument("--model", required=True, help="the exported model: trainer.task's JOB_DIR/model/serving (local or gs://)")
    parser.add_argument("--csv", required=True, help="input CSV: local path, gs://, or a glob of files ('pairs-*.csv'); label optional")
    parser.add_argument("--images", required=True, help="folder of <id>.<ext> image files (local or gs://)")
    parser.add_argument("--out", required=True, help="output folder (local or gs://)")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per model call (default: %(default)s)")
    parser.add_argument("--model-copies", type=int, default=0,
                        help="load this many model copies per machine, shared by its worker processes "
                        "(default 0: one per worker process)")
    parser.add_argument("--write-csv", action="store_true", help="also write predictions-*.csv (for spreadsheets, BigQuery)")
    parser.add_argument("--output-shards", type=int, default=0,
                        help="number of predictions files (default 0: as the runner splits the work)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="reject images whose header announces more pixels (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="image read threads per worker process (default: the process's share of the cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output of an earlier run in --out")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's and Beam's logs, and tracebacks")
    return parser


def _check_args(args) -> None:
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.model_copies < 0 or args.output_shards < 0 or args.threads < 0:
        raise UsageError("--model-copies, --output-shards and --threads must be 0 or more")
    import tensorflow as tf

    if not tf.io.gfile.exists(f"{args.model.rstrip('/')}/saved_model.pb"):
        raise UsageError(f"--model {args.model} holds no saved_model.pb (give trainer.task's JOB_DIR/model/serving)")


def summary_text(summary: dict, seconds: float) -> str:
    """The end-of-job report printed to stdout."""
    lines = [f"rows read {summary['rows_read']} = scored {summary['rows_scored']} + rejected {summary['rows_rejected']}"]
    lines += [f"  rejected {reason}: {count}" for reason, count in summary["rejected_by_reason"].items()]
    lines.append("predicted " + ", ".join(f"{name} {count}" for name, count in summary["predicted_counts"].items()))
    metrics = summary.get("metrics")
    if metrics:
        baseline = metrics["majority_baseline"]
        lines.append(f"{summary['labelled_rows']} labelled rows: macro-F1 {metrics['macro_f1']:.3f} (majority class "
                     f"{baseline['macro_f1']:.3f}), accuracy {metrics['accuracy']:.3f} ({baseline['accuracy']:.3f})")
    rate = summary["rows_read"] / seconds if seconds > 0 else float("nan")
    lines.append(f"{summary['rows_read']} rows in {seconds:.1f}s ({rate:.1f} rows/s); files: {', '.join(summary['files'])}")
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> dict:
    """Runs the job and returns summary.json's contents; raises UsageError or JobFailed."""
    parser = define_flags()
    args, beam_args = parser.parse_known_args(argv)
    from pipeline import beam_options

    beam_options.check_beam_flags(beam_args, [option for action in parser._actions for option in action.option_strings])
    options = beam_options.pipeline_options(beam_args)
    if not preflight.is_remote(args.images) and not os.path.isdir(args.images):
        raise UsageError(f"--images {args.images} is not a folder")
    logs.import_tensorflow(args.verbose)
    _check_args(args)
    from pipeline import score_job

    preflight.prepare_output(args.out, args.overwrite, score_job.OUTPUTS, score_job.SUMMARY_FILE)
    csv_files = preflight.match_csv(args.csv)
    preflight.inspect_csv(csv_files[0], only_file=len(csv_files) == 1, columns=rows.PAIR_COLUMNS)

    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from pipeline.settings import JobSettings

    processes = beam_options.processes_per_machine(options)
    settings = score_job.ScoreSettings(
        model_dir=args.model, images_dir=args.images, out_dir=args.out, batch_size=args.batch_size,
        model_copies=args.model_copies, max_pixels=args.max_pixels, write_csv=args.write_csv,
        output_shards=args.output_shards,
        threads=JobSettings("", "", threads=args.threads, processes_per_machine=processes).thread_count(),
    )
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "ScorePairs" >> score_job.ScorePairs(args.csv, settings, len(csv_files))
    try:
        pipeline.run().wait_until_finish()
    except Exception as error:  # noqa: BLE001  Whatever failed, the folder must not look complete.
        raise job_failed(error, args.verbose) from None
    seconds = time.monotonic() - started
    with FileSystems.open(FileSystems.join(args.out, score_job.SUMMARY_FILE)) as handle:
        summary = json.loads(handle.read().decode("utf-8"))
    print(summary_text(summary, seconds))
    return summary


def main(argv: list[str] | None = None) -> int:
    from pipeline import run as shards_run

    return shards_run.command_main(run, argv, "summary.json", "rows_scored")


if __name__ == "__main__":
    sys.exit(main())
