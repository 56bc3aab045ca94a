"""File-level faults in a CSV: each costs its own record, and reading goes on (no Beam, no TF)."""

from __future__ import annotations

import io

import pytest

from pipeline.inputs import csv_records

HEADER = b"id_1,text_1,label\n"
GOOD_AFTER = b"7,after,Implies\n"


def read(data: bytes, required=("id_1",)):
    return list(csv_records.read_records(io.BytesIO(data), "f.csv", required))


def good(records):
    return [r.row for r in records if isinstance(r, csv_records.CsvRow)]


def faults(records):
    return [(r.reason, r.line) for r in records if isinstance(r, csv_records.CsvFault)]


def test_quoted_newlines_doubled_quotes_crlf_bom_and_blank_lines_are_read():
    data = b"\xef\xbb\xbfid_1,text_1,label\r\n1,\"a\r\nb, \"\"c\"\"\",x\r\n\r\n\n2,\xf0\x9f\x8e\x89 \xd9\x87\xd8\xb0\xd8\xa7,y\r\n"
    records = read(data)
    assert good(records) == [{"id_1": "1", "text_1": 'a\r\nb, "c"', "label": "x"}, {"id_1": "2", "text_1": "🎉 هذا", "label": "y"}]
    assert [(r.row_number, r.line) for r in records] == [(1, 2), (2, 6)]  # Blank lines are not rows.


def test_old_mac_line_ends_are_read():
    assert good(read(b"id_1,text_1,label\r1,a,x\r2,b,y\r")) == [
        {"id_1": "1", "text_1": "a", "label": "x"}, {"id_1": "2", "text_1": "b", "label": "y"},
    ]


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"2,caf\xe9 latin-1,x\n", "bad_encoding"),
        (b"2,\xff\xfe,x\n", "bad_encoding"),
        (b"2,a\x00b,x\n", "bad_encoding"),
        (b"2,a,x,extra\n", "bad_cell_count"),
        (b"2,a\n", "bad_cell_count"),
        (b'2,"a"b,x\n', "malformed_csv"),
    ],
)
def test_a_bad_record_costs_only_itself(bad, reason):
    records = read(HEADER + b"1,before,x\n" + bad + GOOD_AFTER)
    assert faults(records) == [(reason, 3)]
    assert [row["id_1"] for row in good(records)] == ["1", "7"]
    fault = next(r for r in records if isinstance(r, csv_records.CsvFault))
    assert fault.row_number == 2 and fault.message.startswith("line 3: ")
    fault.text.encode("utf-8")  # Printable: undecodable bytes are shown as U+FFFD.


def test_an_unclosed_quote_does_not_swallow_the_rows_after_it():
    # Without recovery, the quote would run to the end of the file and take every row with it.
    records = read(HEADER + b'1,"never closed,x\n2,b,y\n3,c,z\n')
    assert faults(records) == [("malformed_csv", 2)]
    assert [row["id_1"] for row in good(records)] == ["2", "3"]
    assert "quote is not closed" in records[0].message


def test_a_quote_closed_rows_later_costs_only_its_own_row():
    records = read(HEADER + b'1,"oops,x\n2,b,y\n3,"c",z\n4,d,w\n')
    assert faults(records) == [("malformed_csv", 2)]
    assert [row["id_1"] for row in good(records)] == ["2", "3", "4"]


def test_fields_beyond_pythons_default_limit_are_read():
    text = "a" * 200_000  # The csv module refuses fields over 131,072 characters by default.
    assert good(read(HEADER + f"1,{text},x\n".encode() + GOOD_AFTER))[0]["text_1"] == text


def test_an_overlong_line_is_refused_without_being_held(monkeypatch):
    monkeypatch.setattr(csv_records, "MAX_RECORD_CHARS", 1000)
    records = read(HEADER + b"1," + b"a" * 50_000 + b",x\n" + GOOD_AFTER)
    assert faults(records) == [("record_too_large", 2)] and good(records) == [{"id_1": "7", "text_1": "after", "label": "Implies"}]
    assert len(records[0].text) <= 2000


def test_an_overlong_record_is_refused_and_reading_resumes_after_its_first_line(monkeypatch):
    monkeypatch.setattr(csv_records, "MAX_RECORD_LINES", 5)
    lines = b"".join(b"%d,b,y\n" % n for n in range(2, 12))
    records = read(HEADER + b'1,"unclosed,x\n' + lines)
    assert faults(records)[0] == ("record_too_large", 2)
    assert [row["id_1"] for row in good(records)] == [str(n) for n in range(2, 12)]


def test_a_header_without_the_columns_refuses_every_row_of_its_file():
    records = read(b"foo,bar\n1,2\n3,4\n", required=("id_1", "label"))
    assert faults(records) == [("bad_header", 2), ("bad_header", 3)]
    assert "lacks columns ['id_1', 'label']" in records[0].message


def test_a_file_that_ends_inside_the_header_refuses_its_rows():
    records = read(b'"id_1,text_1,label\n1,2,3\n')
    assert faults(records) == [("bad_header", 2)]


def test_empty_file_has_no_records():
    assert read(b"") == [] and read(HEADER) == []
