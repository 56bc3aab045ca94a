"""The preview's stats table (`preview.md`), from the shards' metadata.json.

Pairs per label and split, the text pairs' length in tokens before truncation with the share
the sequence length cut (the number to watch before choosing `--seq-length`), rejected rows by
reason, and the original images' formats and sizes: all counted exactly by the shards job.
Shards of older versions lack the token counts; for them the stored masks give an upper bound.
"""

from __future__ import annotations

import numpy as np

from pipeline import features

STATS_LIMIT = 200_000  # Token stats of older shards read at most this many pairs per split.


def token_lengths(records, seq_length: int) -> np.ndarray:
    """Real tokens per packed pair ([CLS] and [SEP]s included), for up to STATS_LIMIT of a
    split's serialized `records` (a tf.data dataset)."""
    import tensorflow as tf

    shape = features.Shape(seq_length=seq_length)
    dataset = records.take(STATS_LIMIT).batch(1024).map(
        lambda batch: tf.reduce_sum(features.parse_stored(batch, ["input_mask"], shape)["input_mask"], axis=1))
    lengths = [batch for batch in dataset.as_numpy_iterator()]
    return np.concatenate(lengths) if lengths else np.zeros([0], np.int64)


def _token_columns(metadata: dict, split: str, lengths: np.ndarray | None) -> str:
    """p50 | p95 | max | share cut: exact from metadata.json, else bounded from the stored masks."""
    exact = metadata.get("pair_tokens", {}).get(split)
    if exact is not None:
        if not exact["pairs"]:
            return " – | – | – | – |"
        return f" {exact['p50']} | {exact['p95']} | {exact['max']} | {exact['truncated_share']:.1%} |"
    if lengths is None or not lengths.size:
        return " – | – | – | – |"
    p50, p95 = np.percentile(lengths, [50, 95])
    return f" {p50:.0f} | {p95:.0f} | {lengths.max()} | ≤ {np.mean(lengths >= metadata['seq_length']):.1%} |"


def _image_line(metadata: dict) -> str:
    size = metadata["image_size"]
    line = (f"Images stored {size}×{size} px ({metadata.get('image_storage', '?')}), larger than "
            f"{metadata.get('max_pixels', 0):,} pixels refused.")
    original = metadata.get("original_images")
    if original and original["images"]:
        formats = ", ".join(f"{name} {count / original['images']:.0%}" for name, count in original["formats"].items())
        long_side, short_side = original["long_side"], original["short_side"]
        line += (f" Originals ({original['images']:,} images of written pairs): {formats}; long side p50 "
                 f"{long_side['p50']} px (min {long_side['min']}, max {long_side['max']}); short side p50 "
                 f"{short_side['p50']} px; {original['short_side_below_image_size']:,} "
                 f"({original['short_side_below_image_size'] / original['images']:.1%}) have a short side under {size} px "
                 f"and were enlarged.")
    return line


def stats_table(metadata: dict, lengths: dict[str, np.ndarray]) -> str:
    """The per-split table and the rejects and images lines of preview.md.

    Token columns come from metadata.json's `pair_tokens` (lengths before truncation, counted
    by the Beam job) when the shards have them; shards of older versions hold only the packed
    tokens, so for them `lengths` (real tokens per stored pair) gives an upper bound: a pair
    that fills the sequence was cut or fits exactly.
    """
    seq_length = metadata["seq_length"]
    exact = "pair_tokens" in metadata
    lines = ["| split | pairs | " + " | ".join(features.LABELS) + f" | tokens{' before cut' if exact else ''} p50 | p95 | "
             f"max | {'share cut' if exact else 'share filling all'} at {seq_length} |",
             "|---|" + "---:|" * (len(features.LABELS) + 5)]
    for split in features.SPLITS:
        counts = metadata["counts"][split]
        row = f"| {split} | {counts['total']:,} | " + " | ".join(f"{counts[name]:,}" for name in features.LABELS) + " |"
        lines.append(row + _token_columns(metadata, split, lengths.get(split)))
    rejected = metadata.get("rejected_by_reason", {})
    lines += ["", f"Rows read {metadata.get('rows_read', 0):,}, written {metadata.get('examples_written', 0):,}, "
              f"rejected {metadata.get('rows_rejected', 0):,}" + (": " + ", ".join(
                  f"{reason} {count:,}" for reason, count in sorted(rejected.items())) if rejected else "") + "."]
    lines.append(_image_line(metadata))
    if not exact:
        lines.append(f"These shards predate the token counts in metadata.json: the shares are of pairs filling the "
                     f"sequence (an upper bound on those cut), over each split's first {STATS_LIMIT:,} pairs at most.")
    return "\n".join(lines) + "\n"
