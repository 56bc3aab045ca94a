"""The launcher both Beam jobs share: threads per process, processes per machine, flags from settings."""

from __future__ import annotations

import pytest

from pipeline import launcher
from pipeline.shards.settings import JobSettings


@pytest.mark.parametrize(
    "threads, processes, cores, expected",
    [
        (0, 1, 8, 8),  # The local in-process runner: one process, a thread per core.
        (0, 0, 8, 1),  # Dataflow's default, one SDK process per vCPU: one thread each.
        (0, 2, 8, 4),  # The local multi-process runner with 2 workers.
        (0, 4, 2, 1),
        (3, 0, 8, 3),  # --threads wins.
    ],
)
def test_decode_threads_per_process_share_the_machine(threads, processes, cores, expected, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    settings = launcher.BeamJobSettings(images="x", out="y", threads=threads, processes_per_machine=processes)
    assert settings.thread_count() == expected


@pytest.mark.parametrize(
    "flags, processes",
    [
        ([], 1),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=3"], 3),
        (["--runner=DataflowRunner"], 0),
        (["--runner=DataflowRunner", "--experiments=no_use_multiple_sdk_containers"], 1),
    ],
)
def test_processes_per_machine_follow_the_runner(flags, processes):
    assert launcher.processes_per_machine(launcher.pipeline_options(flags)) == processes


def test_every_settings_field_is_a_documented_flag_and_derived_fields_are_not():
    parser = launcher.define_flags(launcher.BeamJob(
        prog="test", description="", settings_class=JobSettings, columns=(), outputs=(), completion_file="",
        accounted="", prepare=None, transform=None, summary=None))
    flags = {option: action for action in parser._actions for option in action.option_strings}
    for name in ("--csv", "--images", "--out", "--max-pixels", "--threads", "--image-size", "--train-shards",
                 "--overwrite", "--no-overwrite", "--vocab", "--text-encoder"):
        assert name in flags and flags[name].help, name
    assert flags["--csv"].required and not flags["--vocab"].required
    assert not any(name in flags for name in ("--run-id", "--tokenizer", "--vocab-fingerprint", "--processes-per-machine"))
    assert sorted(flags) == sorted(launcher.own_flags(JobSettings))
