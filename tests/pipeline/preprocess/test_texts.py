"""The text row rules as TF ops: the serving signature refuses exactly what the shards job refuses."""

from __future__ import annotations

import io
import sys

import tensorflow as tf

from pipeline import features
from pipeline.inputs import csv_records, rows
from pipeline.preprocess import texts


def job_verdict(data: bytes) -> str:
    """What the shards job does with a row holding this text: its reason code, or "" to keep it."""
    line = b'1,"' + data.replace(b'"', b'""') + b'",http://x/1.jpg,2,b,http://x/2.jpg,Implies\n'
    stream = (",".join(features.CSV_COLUMNS) + "\n").encode() + line
    (item,) = list(csv_records.read_records(io.BytesIO(stream), "f.csv", features.CSV_COLUMNS))
    parsed = rows.parse_record(item)
    return parsed.reason if isinstance(parsed, rows.Rejection) else ""


def test_empty_and_undecodable_texts_get_the_jobs_reasons_eagerly_and_in_a_dataset():
    whitespace = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace() and chr(code) not in "\r\n"]
    samples = [b"the bridge is open", b"", b"   ", "".join(whitespace).encode(), "\u200b".encode(), "\u3000x".encode(),
               b"caf\xe9", b"\xff\xfe", b"a\x00b", "tweet \U0001F600 \u0647\u0630\u0627".encode(), b"\t\x0b\x0c"]
    samples += [char.encode() for char in whitespace]
    expected = [job_verdict(sample) for sample in samples]
    assert {"", "empty_text", "bad_encoding"} == set(expected)
    eager = texts.check_texts(tf.constant(samples))[1].numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(tf.constant(samples)).map(lambda batch: texts.check_texts(batch)[1]))).numpy()
    assert eager.tolist() == mapped.tolist()
    assert [texts.STATUS_REASONS[status] for status in eager] == expected
    valid = texts.check_texts(tf.constant([b"caf\xe9", b"ok"]))[0].numpy()  # What the tokenizer gets.
    assert [text.decode("utf-8") for text in valid] == ["caf\ufffd", "ok"]
