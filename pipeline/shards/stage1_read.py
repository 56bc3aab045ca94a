"""Stage 1 of the shards job: CSV files → valid, unique `Record`s; every other row → a `Rejection`.

The scoring job reads its rows with these same transforms, so both refuse the same rows.

Files are matched with Beam's `fileio` (a glob such as `gs://b/pairs-*.csv` works, and
`.gz`/`.bz2` files are decompressed by extension) and spread over workers, one worker per
file: a CSV cannot be split at arbitrary bytes, since a quoted field may hold newlines, so
users with 100M rows give many files, as BigQuery and Dataflow exports are anyway. Each file
is read record by record (`csv_records`), so a worker holds one record at a time, and its
SHA-256 is computed on the way for metadata.json (the launcher never reads a file twice).
"""

from __future__ import annotations

import hashlib
import io
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from pipeline import features
from pipeline.cli import Progress
from pipeline.inputs import csv_records, rows

REJECTED = "rejected"
FILES = "files"


class CsvFileRead(NamedTuple):
    """One CSV file as read: what metadata.json records of it (`rows` counts its data records)."""

    path: str
    sha256: str
    bytes: int
    rows: int


class _HashingReader(io.RawIOBase):
    """A binary stream that hashes and counts the bytes read through it."""

    def __init__(self, raw):
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        self.digest.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)


class _ReadCsvFn(beam.DoFn):
    """A matched CSV file → its `Record`s, `rejected` rows, and one `files` summary."""

    def __init__(self, label_required: bool = True):
        self._label_required = label_required

    def _columns(self):
        return features.CSV_COLUMNS if self._label_required else rows.PAIR_COLUMNS

    def setup(self):
        self._progress = Progress("read")

    def process(self, readable_file: fileio.ReadableFile):
        path = readable_file.metadata.path
        count = 0
        with readable_file.open() as raw:
            hashing = _HashingReader(raw)
            for item in csv_records.read_records(io.BufferedReader(hashing, 1 << 20), path, self._columns()):
                count += 1
                self._progress.tick()
                result = rows.parse_record(item, self._label_required)
                if isinstance(result, rows.Rejection):
                    Metrics.counter("rows", "rejected_" + result.reason).inc()
                    yield beam.pvalue.TaggedOutput(REJECTED, result)
                else:
                    yield result
        yield beam.pvalue.TaggedOutput(FILES, CsvFileRead(path, hashing.digest.hexdigest(), hashing.size, count))


class ReadRows(beam.PTransform):
    """CSV glob → `records` (valid rows), `rejected` (`Rejection`s) and `files` (a `CsvFileRead` each).

    `label_required=False` (the scoring job) accepts files without a label column.
    """

    def __init__(self, pattern: str, spread: bool = True, label_required: bool = True):
        super().__init__()
        self._pattern, self._spread, self._label_required = pattern, spread, label_required

    def expand(self, pipeline):
        matched = pipeline | "MatchCsv" >> fileio.MatchFiles(self._pattern)
        if self._spread:  # Reshuffled so that each file can go to another worker.
            matched = matched | "SpreadFiles" >> beam.Reshuffle()
        return (
            matched
            | "OpenCsv" >> fileio.ReadMatches()
            | "ParseCsv" >> beam.ParDo(_ReadCsvFn(self._label_required)).with_outputs(REJECTED, FILES, main="records")
        )


class DropDuplicatePairs(beam.PTransform):
    """Keeps the first row of each (id_1, id_2) in reading order; later copies → `rejected`."""

    def expand(self, records):
        def first_wins(item):
            _, group = item
            ordered = sorted(group, key=lambda record: record.order)
            yield ordered[0]
            first = ordered[0]
            for record in ordered[1:]:
                message = f"pair {record.pair_key} already appears in {first.source} row {first.row_number}"
                yield beam.pvalue.TaggedOutput(REJECTED, rows.Rejection.of(record, "duplicate_pair", message))

        return (
            records
            | "KeyByPair" >> beam.Map(lambda record: (record.pair_key, record))
            | "GroupByPair" >> beam.GroupByKey()
            | "FirstWins" >> beam.FlatMap(first_wins).with_outputs(REJECTED, main="records")
        )
