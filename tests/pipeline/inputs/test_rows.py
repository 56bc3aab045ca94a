"""Row validation: pure functions, no Beam."""

from __future__ import annotations

import pytest

from pipeline.inputs import rows

GOOD = {
    "id_1": "1300000000000000001",
    "text_1": 'Bridge "open"\nhttps://t.co/x 🎉 هذا',
    "image_1": "http://pbs.twimg.com/media/abc.jpg?format=jpg&name=large",
    "id_2": "1300000000000000002",
    "text_2": "정말 closed",
    "image_2": "https://pbs.twimg.com/media/def.PNG",
    "label": "Implies",
}


def test_good_row_becomes_record_with_local_file_names():
    record = rows.parse_row(5, GOOD)
    assert isinstance(record, rows.Record)
    assert record.ids == ("1300000000000000001", "1300000000000000002")
    assert record.image_files == ("1300000000000000001.jpg", "1300000000000000002.png")
    assert record.label == 1 and record.texts[0] == GOOD["text_1"] and record.row_number == 5


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"id_1": "12.5"}, "bad_id"),
        ({"id_2": "1.3e18"}, "bad_id"),
        ({"id_1": "12345678901234567890"}, "bad_id"),
        ({"id_1": "9223372036854775808"}, "bad_id"),  # 19 digits, but over 64 bits.
        ({"id_1": ""}, "bad_id"),
        ({"text_1": " \n\t"}, "empty_text"),
        ({"text_2": ""}, "empty_text"),
        ({"label": "implies"}, "unknown_label"),
        ({"label": ""}, "unknown_label"),
        ({"image_1": "http://x/media/abc"}, "bad_image_url"),
        ({"image_2": "http://x/media/abc.exe"}, "bad_image_url"),
        ({"image_1": "http://x/media/../../etc/passwd.jpg"}, "path_traversal"),
        ({"image_1": "http://x/media/%2e%2e/%2e%2e/secret.png"}, "path_traversal"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(change, reason):
    result = rows.parse_row(3, {**GOOD, **change})
    assert isinstance(result, rows.Rejection)
    assert result.reason == reason and result.row_number == 3
    as_json = result.to_json_dict()
    assert as_json["reason"] == reason and as_json["row"]["label"] == {**GOOD, **change}["label"]


def test_ids_stay_exact_integers_not_floats():
    record = rows.parse_row(1, {**GOOD, "id_1": "1234567890123456789"})
    assert record.ids[0] == "1234567890123456789"
