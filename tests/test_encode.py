"""Stage 3 helpers: error summaries, the image digest, and decode threads per process."""

from __future__ import annotations

import pytest

from pipeline import beam_options, encode, metadata
from pipeline.settings import JobSettings


def test_tf_error_summary_finds_the_informative_line():
    graph_error = (
        "Graph execution error:\n\nDetected at node Foo defined at (most recent call last):\n"
        '  File "x.py", line 1\n{{function_node __inference_f_1}} Invalid JPEG data, size 300\n'
        "\t [[{{node DecodeJpeg}}]] [Op:__inference_f_1]"
    )
    assert encode.tf_error_summary(graph_error) == "Invalid JPEG data, size 300"
    asserted = "{{function_node f}} assertion failed: [image has more pixels than its header announced] [Condition x <= y]"
    assert encode.tf_error_summary(asserted) == "image has more pixels than its header announced"


def test_the_image_digest_counts_repeats_instead_of_cancelling():
    """XOR made an image read twice vanish from the digest; a sum modulo a prime cannot."""
    a, b = encode.image_digest(b"first image"), encode.image_digest(b"second image")

    def digest(*values):
        stats = metadata.JobStats()
        accumulator = stats.create_accumulator()
        for value in values:
            accumulator = stats.add_input(accumulator, ("written", ("train", 0), value, 10, (("jpeg", 30, 40),) * 2))
        return stats.extract_output(accumulator)["image_digest"]

    assert digest(a, b) == digest(b, a)  # Order does not matter.
    assert digest(a, a, b) != digest(b) and digest(a, a) != 0 and digest(a, a) != digest(a)


def test_token_and_image_histograms_merge_exactly_and_count_the_cut_pairs():
    stats = metadata.JobStats()
    pairs = [("train", 12, ("jpeg", 600, 800), ("png", 90, 60)), ("train", 40, ("jpeg", 64, 64), ("jpeg", 2048, 1536)),
             ("train", 33, ("webp", 100, 300), ("jpeg", 300, 100)), ("test", 7, ("gif", 32, 32), ("png", 500, 500))]
    halves = [stats.create_accumulator(), stats.create_accumulator()]
    for index, (split, tokens, *images) in enumerate(pairs):
        halves[index % 2] = stats.add_input(halves[index % 2], ("written", (split, 0), 1, tokens, tuple(images)))
    output = stats.extract_output(stats.merge_accumulators(halves))
    tokens = metadata.token_stats(output["pair_tokens"], seq_length=32)
    assert tokens["train"] == {"pairs": 3, "min": 12, "p50": 33, "p95": 40, "p99": 40, "max": 40, "truncated": 2,
                               "truncated_share": round(2 / 3, 6)}
    assert tokens["test"]["truncated"] == 0 and tokens["val"] == {"pairs": 0, "min": 0, "p50": 0, "p95": 0, "p99": 0,
                                                                  "max": 0, "truncated": 0, "truncated_share": 0.0}
    images = metadata.image_stats(output["formats"], output["long_sides"], output["short_sides"], image_size=64)
    assert images["images"] == 8 and images["formats"] == {"jpeg": 4, "png": 2, "gif": 1, "webp": 1}
    assert images["long_side"]["max"] == 2048 and images["long_side"]["min"] == 32 and images["short_side"]["p50"] == 100
    assert images["short_side_below_image_size"] == 2  # 60 and 32: both enlarged to 64.


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
    settings = JobSettings(images_dir="x", out_dir="y", threads=threads, processes_per_machine=processes)
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
    assert beam_options.processes_per_machine(beam_options.pipeline_options(flags)) == processes
