"""Stage 4 of the shards job: examples and rejected rows → shard files and rejected.jsonl, in bounded memory.

Why not Beam's `WriteToTFRecord` / `WriteToText`: with a fixed `num_shards` they route every
record through a GroupByKey, which Beam's local runner holds in memory whole (memory then
grows with rows: the whole data set sat there), and with runner-chosen sharding the number
and names of files depend on bundling. The trainer needs a chosen number of files per split
(FILE autosharding wants at least one per worker), each example in the file its pair hashes
to, so that a split's files hold the same examples on any runner.

So, as Beam's own `fileio.WriteToFiles` does, each bundle writes its records straight into
one temporary file per destination (a shard, or rejected.jsonl) that it reaches; past
`MAX_WRITERS_PER_BUNDLE` destinations in one bundle, the rest is spilled through a GroupByKey
(an external shuffle on Dataflow) and written from there, streaming. Then each destination's
temporary files are joined into the final file, byte for byte: GZIP members and JSON lines
both concatenate (TF's GZIP reader reads multi-member files; no member is empty, since a
file is only opened for a record). Destinations no record reached get an empty file. The
order of records inside a file depends on bundling, so file bytes can differ between runs;
which examples each file holds cannot. Temporary files live under `settings.temp_dir`,
which the job deletes last, with whatever retried bundles left behind.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipeline import features
from pipeline.inputs.rows import REJECTED_FILE
from pipeline.shards.settings import JobSettings

REJECTED = "rejected"
MAX_WRITERS_PER_BUNDLE = 20
SPILLED = "spilled"
_COPY_CHUNK = 16 << 20
_RAW = CompressionTypes.UNCOMPRESSED


def shard_index(pair_key: str, shards: int) -> int:
    """Which of `shards` files an example goes to: a hash of its pair, so the same on any runner."""
    return int.from_bytes(hashlib.sha256(pair_key.encode("utf-8")).digest()[:8], "big") % shards


def file_name(settings: JobSettings, split: str, index: int) -> str:
    if split == REJECTED:
        return REJECTED_FILE
    return f"{split}-{index:05d}-of-{settings.shard_count(split):05d}{features.SHARD_SUFFIX}"


def expected_files(settings: JobSettings) -> list[tuple[str, int]]:
    """Every destination of a job: each split's shards, then rejected.jsonl."""
    keys = [(split, index) for split in features.SPLITS for index in range(settings.shard_count(split))]
    return keys + [(REJECTED, 0)]


class _Part:
    """One temporary file of one destination: GZIP TFRecords for a shard, lines for rejected.jsonl."""

    def __init__(self, settings: JobSettings, key: tuple[str, int], path: str | None = None):
        split, index = key
        self.path = path or f"{settings.temp_dir}/{split}-{index:05d}-{uuid.uuid4().hex}.part"
        if "://" not in self.path:  # TF's writer needs the folder; object stores have none.
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if split == REJECTED:
            self._handle = FileSystems.create(self.path, compression_type=_RAW)
            self._lines = True
        else:
            import tensorflow as tf

            # Level 1: the JPEG-encoded images hardly compress, so the default level 6 spends
            # more time for almost no fewer bytes (docs/benchmarks.md).
            options = tf.io.TFRecordOptions(compression_type=features.COMPRESSION, compression_level=1)
            self._handle = tf.io.TFRecordWriter(self.path, options)
            self._lines = False

        self.records = 0

    def write(self, payload: bytes) -> None:
        self._handle.write(payload + b"\n" if self._lines else payload)
        self.records += 1

    def close(self) -> None:
        self._handle.close()


class PartFile(NamedTuple):
    """A closed temporary file of a destination, and how many records it holds."""

    path: str
    records: int


class WrittenFile(NamedTuple):
    """A final file as the job wrote it: what metadata.json records, and `pipeline.verify`
    and the trainer check."""

    name: str
    bytes: int
    records: int
    sha256: str


def _copy_counting(sources: list[str], target: str | None) -> tuple[int, str]:
    """Copies `sources` into `target`, one after the other (or only reads them, when `target` is
    None); returns the bytes and SHA-256 of what was (or would be) written."""
    digest, size = hashlib.sha256(), 0
    out = FileSystems.create(target, compression_type=_RAW) if target else None
    try:
        for source in sources:
            with FileSystems.open(source, compression_type=_RAW) as handle:
                while chunk := handle.read(_COPY_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    if out is not None:
                        out.write(chunk)
    finally:
        if out is not None:
            out.close()
    return size, digest.hexdigest()


class _WriteBundleFn(beam.DoFn):
    """(destination, payload) → (destination, temporary file) once per destination and bundle."""

    def __init__(self, settings: JobSettings):
        self._settings = settings

    def start_bundle(self):
        self._parts: dict[tuple[str, int], _Part] = {}

    def process(self, item):
        key, payload = item
        part = self._parts.get(key)
        if part is None:
            if len(self._parts) >= MAX_WRITERS_PER_BUNDLE:
                yield beam.pvalue.TaggedOutput(SPILLED, item)
                return
            part = self._parts[key] = _Part(self._settings, key)
        part.write(payload)

    def finish_bundle(self):
        for key, part in self._parts.items():
            part.close()
            yield GlobalWindows.windowed_value((key, PartFile(part.path, part.records)))
        self._parts = {}


def _write_spilled(item, settings: JobSettings):
    """A spilled destination's records, streamed from the shuffle into one temporary file."""
    key, payloads = item
    part = _Part(settings, key)
    for payload in payloads:
        part.write(payload)
    part.close()
    return key, PartFile(part.path, part.records)


def _join_parts(item, settings: JobSettings) -> WrittenFile:
    """A destination's temporary files → its final file (renamed when there is only one), with
    its size, record count and SHA-256: taken from the bytes as they are joined, or, for a
    renamed file, from one read of it. TF's record writer does not hand out the bytes it
    writes (framing, CRCs, GZIP), so there is no cheaper moment to hash them."""
    (split, index), parts = item
    parts = sorted(parts)
    name = file_name(settings, split, index)
    final = FileSystems.join(settings.out, name)
    records = sum(part.records for part in parts)
    if len(parts) == 1:
        if FileSystems.exists(parts[0].path) or not FileSystems.exists(final):  # Else a retry after the rename.
            FileSystems.rename([parts[0].path], [final])
        size, digest = _copy_counting([final], None)  # Renamed, not copied: read once for its digest.
        return WrittenFile(name, size, records, digest)
    joined = f"{settings.temp_dir}/joined-{name}"
    size, digest = _copy_counting([part.path for part in parts], joined)
    FileSystems.rename([joined], [final])
    return WrittenFile(name, size, records, digest)


def _complete_files(_, settings: JobSettings, written: list[WrittenFile]) -> list[WrittenFile]:
    """Creates, empty, the expected files that no record reached; returns every file's facts."""
    by_name = {file.name: file for file in written}
    files = []
    for key in expected_files(settings):
        name = file_name(settings, *key)
        if name not in by_name:
            temporary = f"{settings.temp_dir}/empty-{name}"
            _Part(settings, key, temporary).close()
            size, digest = _copy_counting([temporary], None)
            FileSystems.rename([temporary], [FileSystems.join(settings.out, name)])
            by_name[name] = WrittenFile(name, size, 0, digest)
        files.append(by_name[name])
    return files


class WriteFiles(beam.PTransform):
    """PCollections of (destination, payload bytes) → one element: every final file's `WrittenFile`.

    A destination is `(split, shard index)` or `(REJECTED, 0)`. The list exists only once
    every file is complete under its final name.
    """

    def __init__(self, settings: JobSettings):
        super().__init__()
        self._settings = settings

    def expand(self, sources):
        settings = self._settings
        parts = []
        # A bundle can only spill when the job has more destinations than writers per bundle.
        can_spill = len(expected_files(settings)) > MAX_WRITERS_PER_BUNDLE
        # One writer per source, fused with the stage that produces it (no Flatten before).
        for index, keyed in enumerate(sources):
            written = keyed | f"WriteParts{index}" >> beam.ParDo(_WriteBundleFn(settings)).with_outputs(
                SPILLED, main="parts"
            )
            parts.append(written.parts)
            if can_spill:
                parts.append(
                    written[SPILLED]
                    | f"GroupSpilled{index}" >> beam.GroupByKey()
                    | f"WriteSpilled{index}" >> beam.Map(_write_spilled, settings)
                )
        finals = (
            tuple(parts)
            | "AllParts" >> beam.Flatten()
            | "GroupParts" >> beam.GroupByKey()
            | "JoinParts" >> beam.Map(_join_parts, settings)
        )
        return (
            sources[0].pipeline
            | "CompleteTrigger" >> beam.Create([None])
            | "CreateMissingFiles" >> beam.Map(_complete_files, settings, beam.pvalue.AsList(finals))
        )
