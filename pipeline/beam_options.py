"""Beam's side of the command line: refuse flags Beam does not know, pick the local runner,
and tell the workers how many processes share a machine's cores.

Imported only once the job's own flags have parsed, so `--help` never pays for Beam.
"""

from __future__ import annotations

import difflib
import os

from pipeline.cli import UsageError


def check_beam_flags(beam_args: list[str], own_flags: list[str]) -> None:
    """Refuses flags that neither this job nor any of Beam's PipelineOptions classes defines.

    Beam itself only warns and drops them, so a typo such as `--image-szie 48` would run the
    job at the default size. The parser is the one Beam builds from all its options classes.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    parsers = []
    PipelineOptions(beam_args).get_all_options(add_extra_args_fn=parsers.append)
    _, unknown = parsers[0].parse_known_args(beam_args)
    flags = [arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")]
    if not flags:
        if unknown:
            raise UsageError(f"unexpected argument {unknown[0]!r}")
        return
    known = own_flags + [option for action in parsers[0]._actions for option in action.option_strings]
    hints = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1)
        hints.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    raise UsageError(f"unknown flag{'s' if len(flags) > 1 else ''} {', '.join(hints)}")


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
