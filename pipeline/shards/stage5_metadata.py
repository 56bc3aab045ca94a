"""Stage 5 of the shards job: counts and fingerprints → metadata.json, written after every data file.

metadata.json is the job's completion mark: it is written only once all shards and
rejected.jsonl are complete, and a rerun deletes it first, so a folder holding one is a
finished, consistent output (the trainer's reader refuses a folder without it).
"""

from __future__ import annotations

import collections
import hashlib
import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline import __version__, features, metrics
from pipeline.inputs import rows
from pipeline.shards.settings import JobSettings
from pipeline.shards.stage1_read import CsvFileRead
from pipeline.shards.stage3_encode import IMAGE_DIGEST_MODULUS, Encoded, ImageFacts


class WrittenExample(NamedTuple):
    """What metadata.json counts of a written example (an `Encoded` without its bytes)."""

    split: str
    label: int
    image_digest: int
    pair_tokens: int
    images: tuple[ImageFacts, ...]

    @classmethod
    def of(cls, encoded: Encoded) -> "WrittenExample":
        return cls(encoded.split, encoded.label, encoded.image_digest, encoded.pair_tokens, encoded.images)


class JobStats(beam.CombineFn):
    """All the job's counts in one combine (one stage, not one per count).

    Inputs are `WrittenExample`s, `rows.Rejection`s and `CsvFileRead`s. The output holds
    `files`, `written` and `rejected` as `build_metadata` takes them; the images' digest: the
    sum of the examples' digests modulo a prime, which no order changes and no repeated image
    cancels; and histograms (exact values counted, so they merge exactly): the text pairs'
    lengths before truncation per split, and the original images' formats and long and short
    sides.
    """

    HISTOGRAMS = ("pair_tokens", "formats", "long_sides", "short_sides")

    def create_accumulator(self):
        accumulator = {"written": collections.Counter(), "rejected": collections.Counter(), "digest": 0, "files": []}
        accumulator.update({name: collections.Counter() for name in self.HISTOGRAMS})
        return accumulator

    def add_input(self, accumulator, item):
        if isinstance(item, WrittenExample):
            accumulator["written"][(item.split, item.label)] += 1
            accumulator["digest"] = (accumulator["digest"] + item.image_digest) % IMAGE_DIGEST_MODULUS
            accumulator["pair_tokens"][(item.split, item.pair_tokens)] += 1
            for image in item.images:
                accumulator["formats"][image.format] += 1
                accumulator["long_sides"][max(image.height, image.width)] += 1
                accumulator["short_sides"][min(image.height, image.width)] += 1
        elif isinstance(item, rows.Rejection):
            accumulator["rejected"][item.reason] += 1
        elif isinstance(item, CsvFileRead):
            accumulator["files"].append(item._asdict())
        else:
            raise TypeError(f"JobStats does not count {type(item).__name__}")
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            for name in ("written", "rejected") + self.HISTOGRAMS:
                merged[name].update(accumulator[name])
            merged["digest"] = (merged["digest"] + accumulator["digest"]) % IMAGE_DIGEST_MODULUS
            merged["files"] += accumulator["files"]
        return merged

    def extract_output(self, accumulator):
        return {
            "files": accumulator["files"],
            "written": sorted(accumulator["written"].items()),
            "rejected": sorted(accumulator["rejected"].items()),
            "image_digest": accumulator["digest"],
            **{name: sorted(accumulator[name].items()) for name in self.HISTOGRAMS},
        }


def csv_fingerprint(files: list[dict]) -> str:
    """The CSV input's SHA-256: the file's own for one file, else that of the sorted per-file list."""
    files = sorted(files, key=lambda f: f["path"])
    if len(files) == 1:
        return files[0]["sha256"]
    listing = "".join(f"{f['path']}\t{f['sha256']}\n" for f in files)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _percentile(histogram: dict[int, int], share: float) -> int:
    """The smallest value with at least `share` of the counts at or below it (0 when empty)."""
    total, seen = sum(histogram.values()), 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= share * total:
            return value
    return 0


def _summary(histogram: dict[int, int]) -> dict[str, int]:
    return {"min": min(histogram, default=0), "p50": _percentile(histogram, 0.5), "p95": _percentile(histogram, 0.95),
            "p99": _percentile(histogram, 0.99), "max": max(histogram, default=0)}


def token_stats(pair_tokens: list, seq_length: int) -> dict:
    """Per split: the text pairs' token counts before truncation, and how many the sequence cut."""
    stats = {}
    for split in features.SPLITS:
        histogram = {length: count for (name, length), count in pair_tokens if name == split}
        pairs = sum(histogram.values())
        cut = sum(count for length, count in histogram.items() if length > seq_length)
        stats[split] = {"pairs": pairs, **_summary(histogram), "truncated": cut,
                        "truncated_share": round(cut / pairs, 6) if pairs else 0.0}
    return stats


def image_stats(formats: list, long_sides: list, short_sides: list, image_size: int) -> dict:
    """The written examples' original images: formats, sides in pixels, and how many were enlarged."""
    short = dict(short_sides)
    return {
        "images": sum(short.values()),
        "formats": dict(sorted(formats, key=lambda item: (-item[1], item[0]))),
        "long_side": _summary(dict(long_sides)),
        "short_side": _summary(short),
        "short_side_below_image_size": sum(count for side, count in short.items() if side < image_size),
    }


def build_metadata(settings: JobSettings, files: list[dict], written: list, rejected: list, image_digest: int,
                   histograms: dict) -> dict:
    """The metadata.json contents from the job's counts (pure function, tested directly).

    `files` holds one summary per CSV file read (path, sha256, bytes, rows), `written` the
    ((split, label), count) pairs, `rejected` the (reason, count) pairs, `histograms` the
    (value, count) lists of `JobStats.HISTOGRAMS`.
    """
    counts = {split: {name: 0 for name in features.LABELS} for split in features.SPLITS}
    for (split, label), count in written:
        counts[split][features.LABELS[label]] += count
    train_counts = {index: counts["train"][name] for index, name in enumerate(features.LABELS)}
    rejected_by_reason = dict(sorted(rejected))
    examples_written = sum(count for _, count in written)
    return {
        "tool": "multimodal-entailment pipeline",
        "version": __version__,
        "labels": list(features.LABELS),
        "image_size": settings.shape.image_size,
        "seq_length": settings.shape.seq_length,
        "text_pairing": settings.text_pairing,
        "text_pooling": settings.text_pooling,
        "max_pixels": settings.max_pixels,
        "image_storage": f"jpeg q{settings.jpeg_quality}",
        "vocab_fingerprint": settings.vocab_fingerprint,
        "tokenizer": (
            {"vocab_size": len(settings.tokenizer.vocab), "lowercase": settings.tokenizer.lowercase}
            if settings.tokenizer.vocab is not None
            else {"hub_handle": settings.tokenizer.hub_handle}
        ),
        "splits": {
            "test_fraction": settings.test_fraction,
            "val_fraction": settings.val_fraction,
            "seed": settings.seed,
        },
        "shards": {
            split: f"{split}-*-of-{settings.shard_count(split):05d}{features.SHARD_SUFFIX}"
            for split in features.SPLITS
        },
        "counts": {split: {"total": sum(c.values()), **c} for split, c in counts.items()},
        "class_weights": metrics.class_weights(train_counts),
        "rows_read": sum(f["rows"] for f in files),
        "examples_written": examples_written,
        "rows_rejected": sum(rejected_by_reason.values()),
        "rejected_by_reason": rejected_by_reason,
        "pair_tokens": token_stats(histograms["pair_tokens"], settings.shape.seq_length),
        "original_images": image_stats(histograms["formats"], histograms["long_sides"], histograms["short_sides"],
                                       settings.shape.image_size),
        "source_fingerprint": {
            "csv_sha256": csv_fingerprint(files),
            "csv_files": sorted(files, key=lambda f: f["path"]),
            "images_sha256_sum": f"{image_digest:032x}",
        },
    }


def write_metadata(_, settings: JobSettings, stats: dict, written: list) -> str:
    """Writes metadata.json from `JobStats` and the `stage4_write.WrittenFile`s, which exist by
    then (the side input makes this wait for them): each file's size, records and SHA-256."""
    metadata = build_metadata(settings, stats["files"], stats["written"], stats["rejected"], stats["image_digest"],
                              {name: stats[name] for name in JobStats.HISTOGRAMS})
    metadata["output_files"] = {file.name: {"bytes": file.bytes, "records": file.records, "sha256": file.sha256}
                         for file in written}
    path = FileSystems.join(settings.out, features.METADATA_FILE)
    temporary = f"{settings.temp_dir}/{features.METADATA_FILE}"
    with FileSystems.create(temporary, mime_type="application/json") as handle:
        handle.write(json.dumps(metadata, indent=2, ensure_ascii=False).encode("utf-8"))
    FileSystems.rename([temporary], [path])  # Appears complete or not at all.
    return path
