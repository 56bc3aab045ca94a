"""One launcher for both Beam jobs: `python -m pipeline.shards` and `python -m pipeline.score`.

A job is described by a `BeamJob`; `run` and `main` do the rest the same way for both: flags
generated from the job's settings dataclass (any other flag goes to Beam's `PipelineOptions`,
and one that neither knows stops the job: Beam alone would drop it with a warning); checks
before any work (settings, images folder, output folder, CSV header; an https:// CSV is fetched
first), each one `error:` line and exit status 2; TensorFlow imported quietly and the job's own
preparation; the run, whose failure is one `error:` line and exit status 1 with no completion
file left; the summary, and exit status 1 unless rows read = rows accounted for + rejected.

Without `--runner`, Beam's FnApiRunner runs the job in this process with one bundle thread:
the DoFns keep every core busy with their own thread pools (TF ops release the GIL). It is
named outright because Beam 2.77's `DirectRunner` first tries to download the Prism runner
from GitHub, which makes local runs depend on the network; `--runner=DirectRunner` still works.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import os
import sys
import time
import traceback
import uuid
from typing import Callable

from pipeline import cli, features, output_folder
from pipeline.cli import NOT_A_FLAG, REQUIRED, UsageError
from pipeline.inputs import csv_files
from pipeline.output_folder import TEMP_PREFIX, is_remote


class JobFailed(Exception):
    """The Beam job itself failed; the output folder holds no completion file."""


@dataclasses.dataclass(frozen=True)
class BeamJobSettings:
    """What both Beam jobs take from the command line and tell their workers (frozen, picklable).

    Attributes:
      csv: Input CSV: a local path, gs://, a glob of files ('pairs-*.csv', one worker each) or an https:// URL.
      images: Folder (local or gs://) of the <id>.<ext> image files the CSV's rows name.
      out: Output folder (local or gs://).
      max_pixels: Images whose header announces more pixels are refused before decoding.
      threads: Image read and decode threads per worker process; 0 gives each process its share of the machine's cores.
      overwrite: Replace the output of an earlier run in --out.
      verbose: Show TensorFlow's and Beam's logs, and tracebacks.
    """

    csv: str = dataclasses.field(default="", metadata=REQUIRED)
    images: str = dataclasses.field(default="", metadata=REQUIRED)
    out: str = dataclasses.field(default="", metadata=REQUIRED)
    max_pixels: int = features.DEFAULT_MAX_PIXELS
    threads: int = 0
    overwrite: bool = False
    verbose: bool = False
    # Set by the launcher: this run's temporary folder name, and how many worker processes
    # share one machine's cores (1 for the in-process runner, N for the local multi-process
    # runner, 0 for one per core, Dataflow's default).
    run_id: str = dataclasses.field(default="local", metadata=NOT_A_FLAG)
    processes_per_machine: int = dataclasses.field(default=1, metadata=NOT_A_FLAG)

    def check(self) -> None:
        """Raises ValueError saying what is wrong with these settings (subclasses add their checks)."""
        if self.threads < 0:
            raise ValueError("--threads must be 0 (the default share of the cores) or more")
        if self.max_pixels < 1:
            raise ValueError("--max-pixels must be at least 1")

    def thread_count(self) -> int:
        """Decode threads for this worker process: its share of the machine's cores.

        Threads per machine then stay close to its cores whatever the runner: one process
        with a thread per core locally, or Dataflow's one process per vCPU with one each.
        """
        if self.threads:
            return self.threads
        cores = os.cpu_count() or 1
        processes = self.processes_per_machine or cores
        return max(1, cores // processes)

    @property
    def temp_dir(self) -> str:
        """This run's folder for partial files (joined with '/', which gs:// and POSIX share)."""
        return f"{self.out.rstrip('/')}/{TEMP_PREFIX}{self.run_id}"


@dataclasses.dataclass(frozen=True)
class BeamJob:
    """What sets one Beam job apart for the launcher.

    Attributes:
      prog: The command (`python -m ...`), for --help.
      description: One line for --help.
      settings_class: A `BeamJobSettings` subclass: the job's flags and what its workers get.
      columns: The columns the first CSV file's header must hold.
      outputs: Globs of the files a run writes in --out (an earlier run's are refused or replaced).
      completion_file: The file written last; its contents are the job's result.
      accounted: The result's count of rows that made it through; with rows_rejected it must equal rows_read.
      prepare: settings → settings, once TensorFlow is imported: loads and checks what the workers need.
      transform: "module:Class" of the job's PTransform, built from (CSV pattern, settings, CSV file count);
        imported only once the job runs, so --help never pays for Beam.
      summary: result → the report printed at the end (the launcher adds the rows/s line).
    """

    prog: str
    description: str
    settings_class: type
    columns: tuple[str, ...]
    outputs: tuple[str, ...]
    completion_file: str
    accounted: str
    prepare: Callable
    transform: str
    summary: Callable

    def run(self, argv: list[str] | None = None, test_pipeline=None) -> dict:
        """Runs the job; returns its completion file's contents (see `run`)."""
        return run(self, argv, test_pipeline)

    def main(self, argv: list[str] | None = None) -> int:
        """The command line's exit status (see `main`)."""
        return main(self, argv)


def define_flags(job: BeamJob) -> cli.Parser:
    parser = cli.Parser(
        prog=job.prog,
        description=f"{job.description} Flags of Beam's PipelineOptions (--runner, --direct_num_workers, "
        "--project, ...) go to Beam.",
        allow_abbrev=False,  # An abbreviation must not swallow a Beam flag, nor a typo pass as one.
    )
    cli.add_dataclass_flags(parser, job.settings_class)
    return parser


def own_flags(settings_class) -> list[str]:
    """Every flag the job's parser defines (booleans have a --no- form too)."""
    flags = ["-h", "--help"]
    for field in cli.dataclass_fields(settings_class):
        flag = field.name.replace("_", "-")
        flags += [f"--{flag}", f"--no-{flag}"] if str(field.type) == "bool" else [f"--{flag}"]
    return flags


def check_beam_flags(beam_args: list[str], known_own: list[str]) -> None:
    """Refuses flags that neither the job nor any of Beam's PipelineOptions classes defines."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parsers = []
    beam_options = PipelineOptions(beam_args).get_all_options(add_extra_args_fn=parsers.append)
    _, unknown = parsers[0].parse_known_args(beam_args)
    flags = [arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")]
    if not flags:
        if unknown:
            raise UsageError(f"unexpected argument {unknown[0]!r}")
        return
    known = known_own + [f"--{name}" for name in beam_options]
    hints = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1)
        hints.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    raise UsageError(f"unknown flag{'s' if len(flags) > 1 else ''} {', '.join(hints)}")


def pipeline_options(beam_args: list[str]):
    """Standard Beam options; without --runner, Beam's local FnApiRunner in this process."""
    from apache_beam.options.pipeline_options import PipelineOptions

    if not any(arg.startswith("--default_sdk_harness_log_level") for arg in beam_args):
        beam_args = ["--default_sdk_harness_log_level=WARNING"] + beam_args
    if not any(arg.startswith("--runner") for arg in beam_args):
        beam_args = ["--runner=FnApiRunner"] + beam_args
        if not any(arg.startswith("--direct_running_mode") for arg in beam_args):
            beam_args += ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    return PipelineOptions(beam_args)


def processes_per_machine(options) -> int:
    """Worker processes that share one machine's cores (0: one per core, Dataflow's default)."""
    from apache_beam.options.pipeline_options import DebugOptions, DirectOptions, StandardOptions

    runner = str(options.view_as(StandardOptions).runner or "")
    if "Dataflow" in runner:
        experiments = options.view_as(DebugOptions).experiments or []
        return 1 if "no_use_multiple_sdk_containers" in experiments else 0
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing":
        return direct.direct_num_workers or (os.cpu_count() or 1)
    return 1


def job_failed(error: Exception, verbose: bool) -> JobFailed:
    """The one-line JobFailed of whatever stopped a Beam job (the traceback with --verbose)."""
    if verbose:
        traceback.print_exc()
    lines = [line for line in str(error).splitlines() if line.strip()]
    return JobFailed(f"{type(error).__name__}: {lines[-1] if lines else ''}")


def run(job: BeamJob, argv: list[str] | None = None, test_pipeline=None) -> dict:
    """Runs the job and returns its completion file's contents; raises UsageError or JobFailed."""
    parser = define_flags(job)
    args, beam_args = parser.parse_known_args(argv)
    settings = cli.dataclass_from_args(job.settings_class, args)
    try:
        settings.check()
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_beam_flags(beam_args, own_flags(job.settings_class))
    options = pipeline_options(beam_args)
    if not is_remote(settings.images) and not os.path.isdir(settings.images):
        raise UsageError(f"--images {settings.images} is not a folder")
    output_folder.prepare(settings.out, settings.overwrite, job.outputs, job.completion_file)
    pattern = settings.csv
    if pattern.startswith(("http://", "https://")):
        pattern = csv_files.fetch_csv(pattern, settings.out)
    matched = csv_files.match_csv(pattern)
    csv_files.inspect_csv(matched[0], only_file=len(matched) == 1, columns=job.columns)
    cli.import_tensorflow(settings.verbose)
    settings = dataclasses.replace(job.prepare(settings), run_id=uuid.uuid4().hex[:12],
                                   processes_per_machine=processes_per_machine(options))

    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    module, name = job.transform.split(":")
    transform = getattr(importlib.import_module(module), name)
    started = time.monotonic()
    pipeline = test_pipeline or beam.Pipeline(options=options)
    _ = pipeline | name >> transform(pattern, settings, len(matched))
    try:
        FileSystems.mkdirs(settings.temp_dir)
        pipeline.run().wait_until_finish()
    except KeyboardInterrupt:
        output_folder.delete_temp_dir(settings.temp_dir)
        raise
    except Exception as error:  # noqa: BLE001  Whatever failed, the folder must not look complete.
        output_folder.delete_temp_dir(settings.temp_dir)
        raise job_failed(error, settings.verbose) from None
    output_folder.delete_temp_dir(settings.temp_dir)  # Whatever retried bundles left behind.
    seconds = time.monotonic() - started
    with FileSystems.open(FileSystems.join(settings.out, job.completion_file)) as handle:
        result = json.loads(handle.read().decode("utf-8"))
    result["seconds"] = round(seconds, 2)
    rate = result["rows_read"] / seconds if seconds > 0 else float("nan")
    print(job.summary(result))
    print(f"{result['rows_read']} rows from {len(matched)} CSV file{'s' * (len(matched) != 1)} in {seconds:.1f}s "
          f"({rate:.1f} rows/s)")
    return result


def main(job: BeamJob, argv: list[str] | None = None) -> int:
    """A job's `main`: one `error:` line and exit 2 for usage, 1 for a failed job or lost rows."""
    argv = sys.argv[1:] if argv is None else argv
    cli.configure_logs("--verbose" in argv)
    try:
        result = run(job, argv)
    except UsageError as error:
        return cli.report(error)
    except JobFailed as error:
        print(f"error: the job failed, and wrote no {job.completion_file}: {error}", file=sys.stderr)
        return 1
    if result["rows_read"] != result[job.accounted] + result["rows_rejected"]:
        print("error: counts do not reconcile: rows were lost", file=sys.stderr)
        return 1
    return 0
