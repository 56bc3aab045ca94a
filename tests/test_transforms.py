"""Beam composites on literal rows (TestPipeline, in process)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import rows, transforms
from tests.test_rows import GOOD


def numbered(*changes):
    return [(i, {**GOOD, **change}) for i, change in enumerate(changes, start=1)]


def test_parse_and_dedupe_route_every_row_once():
    literal = numbered(
        {},
        {"id_1": "1300000000000000011"},
        {},  # Duplicate of row 1.
        {"label": "Maybe"},
        {"id_2": "x"},
    )
    with test_pipeline.TestPipeline() as pipeline:
        parsed = pipeline | beam.Create(literal) | transforms.ParseRows()
        unique = parsed.records | transforms.DropDuplicatePairs()
        kept = unique.records | "KeptRows" >> beam.Map(lambda r: r.row_number)
        rejected = (parsed[transforms.REJECTED], unique[transforms.REJECTED]) | beam.Flatten()
        reasons = rejected | beam.Map(lambda r: (r.row_number, r.reason))
        assert_that(kept, equal_to([1, 2]), label="kept")
        assert_that(reasons, equal_to([(3, "duplicate_pair"), (4, "unknown_label"), (5, "bad_id")]), label="rejected")


def test_assign_splits_is_stratified_and_disjoint():
    records = [
        rows.Record(i, (f"{label}000", f"{i}"), ("a", "b"), ("x.jpg", "y.jpg"), label) for label in range(3) for i in range(40)
    ]
    with test_pipeline.TestPipeline() as pipeline:
        assigned = pipeline | beam.Create(records) | transforms.AssignSplits(0.1, 0.05, seed=0)
        counts = (
            assigned
            | beam.Map(lambda item: ((item[0], item[1].label), 1))
            | beam.CombinePerKey(sum)
        )
        # 40 per label: 4 test, round(36 * 0.05) = 2 val, 34 train.
        expected = [((split, label), n) for label in range(3) for split, n in (("test", 4), ("val", 2), ("train", 34))]
        assert_that(counts, equal_to(expected), label="counts")
        keys = assigned | beam.Map(lambda item: item[1].pair_key)
        assert_that(keys, equal_to([record.pair_key for record in records]), label="each record once")


def test_class_weights_are_balanced():
    weights = transforms.class_weights({0: 10, 1: 10, 2: 80})
    assert weights == {"Contradictory": 100 / 30, "Implies": 100 / 30, "NoEntailment": 100 / 240}
    assert transforms.class_weights({0: 0, 1: 5, 2: 5})["Contradictory"] == 0.0


def test_read_csv_keeps_quoted_newlines_and_counts_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id_1,text_1,label\n1,"a\nb, ""c""",Implies\n2,🎉,NoEntailment\n', encoding="utf-8")
    read = list(transforms.read_csv_rows(str(path)))
    assert [n for n, _ in read] == [1, 2]
    assert read[0][1]["text_1"] == 'a\nb, "c"' and read[1][1]["text_1"] == "🎉"
    assert rows.parse_row(*read[0]).reason == "bad_id"


def test_tf_error_summary_finds_the_informative_line():
    graph_error = (
        "Graph execution error:\n\nDetected at node Foo defined at (most recent call last):\n"
        '  File "x.py", line 1\n{{function_node __inference_f_1}} Invalid JPEG data, size 300\n'
        "\t [[{{node DecodeJpeg}}]] [Op:__inference_f_1]"
    )
    assert transforms.tf_error_summary(graph_error) == "Invalid JPEG data, size 300"
    asserted = "{{function_node f}} assertion failed: [image header announces more than 5 pixels] [Condition x <= y]"
    assert transforms.tf_error_summary(asserted) == "image header announces more than 5 pixels"


def test_every_shard_file_exists_and_holds_its_examples_once(tmp_path):
    """More shards than examples and no rejections: every expected file is still written."""
    import glob
    import os

    import tensorflow as tf

    from pipeline import features

    settings = transforms.JobSettings(images_dir=str(tmp_path), out_dir=str(tmp_path), train_shards=3, eval_shards=2)
    examples = [transforms.Encoded("a", 0, "train", b"first", 0), transforms.Encoded("b", 1, "test", b"second", 0)]
    with test_pipeline.TestPipeline() as pipeline:
        encoded = pipeline | "Examples" >> beam.Create(examples)
        no_rejections = pipeline | "NoRejections" >> beam.Create([])
        files = (encoded, no_rejections) | transforms.WriteFiles(settings)
        assert_that(files | beam.Map(len), equal_to([3 + 2 + 2 + 1]), label="every file listed")
    names = sorted(os.path.basename(path) for path in glob.glob(os.path.join(tmp_path, "*")))
    shards = [f"{split}-{i:05d}-of-{n:05d}{features.SHARD_SUFFIX}" for split, n in (("test", 2), ("train", 3), ("val", 2)) for i in range(n)]
    assert names == sorted(shards + [transforms.REJECTED_FILE])  # No temporary file left behind.
    assert os.path.getsize(tmp_path / transforms.REJECTED_FILE) == 0
    for split, expected in (("train", [b"first"]), ("test", [b"second"]), ("val", [])):
        files = sorted(glob.glob(os.path.join(tmp_path, f"{split}-*")))
        records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type=features.COMPRESSION)]
        assert records == expected
    index = transforms.shard_index("a", 3)
    assert os.path.getsize(tmp_path / f"train-{index:05d}-of-00003{features.SHARD_SUFFIX}") > 0
