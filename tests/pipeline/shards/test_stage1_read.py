"""Stage 1: CSV files → records and rejections, on literal files (TestPipeline, in process)."""

from __future__ import annotations

import hashlib

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import features
from pipeline.inputs import rows
from pipeline.shards import stage1_read as read
from tests.pipeline.inputs.test_rows import GOOD

COLUMNS = ",".join(features.CSV_COLUMNS)


def csv_line(**changes) -> str:
    row = {**GOOD, **changes}
    return ",".join('"' + row[c].replace('"', '""') + '"' for c in features.CSV_COLUMNS) + "\n"


def test_a_glob_of_files_is_read_with_every_row_accounted_for(tmp_path):
    first = COLUMNS + "\n" + csv_line() + csv_line(id_1="1300000000000000011") + csv_line(label="Maybe")
    second = COLUMNS + "\n" + csv_line() + "broken,row\n" + csv_line(id_1="1300000000000000012")
    (tmp_path / "pairs-1.csv").write_text(first, encoding="utf-8")
    (tmp_path / "pairs-2.csv").write_text(second, encoding="utf-8")
    with test_pipeline.TestPipeline() as pipeline:
        result = pipeline | read.ReadRows(str(tmp_path / "pairs-*.csv"))
        unique = result.records | read.DropDuplicatePairs()
        kept = unique.records | "Kept" >> beam.Map(lambda r: (r.source.rsplit("/", 1)[1], r.row_number, r.line))
        rejected = (result[read.REJECTED], unique[read.REJECTED]) | beam.Flatten()
        reasons = rejected | "Reasons" >> beam.Map(lambda r: (r.source.rsplit("/", 1)[1], r.row_number, r.reason))
        files = result[read.FILES] | "Files" >> beam.Map(lambda f: (f.path.rsplit("/", 1)[1], f.rows, f.sha256))
        # GOOD's first text holds a newline: each of its rows takes two lines.
        assert_that(kept, equal_to([("pairs-1.csv", 1, 2), ("pairs-1.csv", 2, 4), ("pairs-2.csv", 3, 5)]), label="kept")
        assert_that(
            reasons,
            equal_to([
                ("pairs-1.csv", 3, "unknown_label"),
                ("pairs-2.csv", 1, "duplicate_pair"),  # Of pairs-1.csv row 1: the first file read wins.
                ("pairs-2.csv", 2, "bad_cell_count"),
            ]),
            label="rejected",
        )
        digests = [hashlib.sha256(text.encode()).hexdigest() for text in (first, second)]
        assert_that(files, equal_to([("pairs-1.csv", 3, digests[0]), ("pairs-2.csv", 3, digests[1])]), label="files")


def test_duplicates_keep_the_first_row_in_reading_order():
    records = [
        rows.Record(n, ("1", "2"), ("a", "b"), ("1.jpg", "2.jpg"), 0, source=source)
        for source, n in (("b.csv", 1), ("a.csv", 9), ("a.csv", 4))
    ]
    with test_pipeline.TestPipeline() as pipeline:
        unique = pipeline | beam.Create(records) | read.DropDuplicatePairs()
        assert_that(unique.records | beam.Map(lambda r: (r.source, r.row_number)), equal_to([("a.csv", 4)]), label="kept")
        messages = unique[read.REJECTED] | "Messages" >> beam.Map(lambda r: r.message)
        assert_that(messages, equal_to(["pair 1-2 already appears in a.csv row 4"] * 2), label="rejected")
