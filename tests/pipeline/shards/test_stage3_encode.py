"""Stage 3 and 5: the image digest, and the exact counts metadata.json is built from."""

from __future__ import annotations

from pipeline.shards import stage3_encode as encode
from pipeline.shards import stage5_metadata as metadata


def test_the_image_digest_counts_repeats_instead_of_cancelling():
    """XOR made an image read twice vanish from the digest; a sum modulo a prime cannot."""
    a, b = encode.image_digest(b"first image"), encode.image_digest(b"second image")

    def digest(*values):
        stats = metadata.JobStats()
        accumulator = stats.create_accumulator()
        for value in values:
            written = metadata.WrittenExample("train", 0, value, 10, (encode.ImageFacts("jpeg", 30, 40),) * 2)
            accumulator = stats.add_input(accumulator, written)
        return stats.extract_output(accumulator)["image_digest"]

    assert digest(a, b) == digest(b, a)  # Order does not matter.
    assert digest(a, a, b) != digest(b) and digest(a, a) != 0 and digest(a, a) != digest(a)


def test_token_and_image_histograms_merge_exactly_and_count_the_cut_pairs():
    stats = metadata.JobStats()
    pairs = [("train", 12, ("jpeg", 600, 800), ("png", 90, 60)), ("train", 40, ("jpeg", 64, 64), ("jpeg", 2048, 1536)),
             ("train", 33, ("webp", 100, 300), ("jpeg", 300, 100)), ("test", 7, ("gif", 32, 32), ("png", 500, 500))]
    halves = [stats.create_accumulator(), stats.create_accumulator()]
    for index, (split, tokens, *images) in enumerate(pairs):
        written = metadata.WrittenExample(split, 0, 1, tokens, tuple(encode.ImageFacts(*image) for image in images))
        halves[index % 2] = stats.add_input(halves[index % 2], written)
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
