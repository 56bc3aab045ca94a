"""Stage 4: bundles write parts, parts join into exactly the expected files, nothing left over."""

from __future__ import annotations

import glob
import os

import apache_beam as beam
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline import features, output_folder
from pipeline.inputs.rows import REJECTED_FILE
from pipeline.shards import stage4_write as write
from pipeline.shards.settings import JobSettings


def shard_records(directory, split):
    files = sorted(glob.glob(os.path.join(directory, f"{split}-*{features.SHARD_SUFFIX}")))
    return {path: [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=features.COMPRESSION)] for path in files}


def test_every_file_exists_holds_its_records_once_and_no_part_is_left(tmp_path, monkeypatch):
    """More destinations than writers per bundle (spill path), several bundles (join path),
    empty destinations (created empty), and rejected lines."""
    monkeypatch.setattr(write, "MAX_WRITERS_PER_BUNDLE", 2)
    settings = JobSettings(images=str(tmp_path), out=str(tmp_path), run_id="t", train_shards=5, eval_shards=2)
    keys = [f"pair{i}" for i in range(60)]
    examples = [(("train", write.shard_index(k, 5)), k.encode()) for k in keys] + [(("test", 0), b"only test")]
    rejected = [((write.REJECTED, 0), f'{{"row_number": {i}}}'.encode()) for i in range(7)]
    with test_pipeline.TestPipeline() as pipeline:
        first = pipeline | "Examples" >> beam.Create(examples, reshuffle=False)
        second = pipeline | "Rejected" >> beam.Create(rejected)
        files = (first, second) | write.WriteFiles(settings)
        assert_that(files | beam.Map(len), equal_to([5 + 2 + 2 + 1]), label="every file listed")
    output_folder.delete_temp_dir(settings.temp_dir)  # What the launcher does after the run.
    names = sorted(os.listdir(tmp_path))
    shards = [f"{s}-{i:05d}-of-{n:05d}{features.SHARD_SUFFIX}" for s, n in (("test", 2), ("train", 5), ("val", 2)) for i in range(n)]
    assert names == sorted(shards + [REJECTED_FILE])  # No temporary file or folder left.
    train = shard_records(tmp_path, "train")
    assert sorted(r for records in train.values() for r in records) == sorted(k.encode() for k in keys)
    for path, records in train.items():  # Each example sits in the file its pair hashes to.
        index = int(os.path.basename(path).split("-")[1])
        assert all(write.shard_index(r.decode(), 5) == index for r in records)
    assert list(shard_records(tmp_path, "test").values()) == [[b"only test"], []]
    assert all(records == [] for records in shard_records(tmp_path, "val").values())
    lines = (tmp_path / REJECTED_FILE).read_text().splitlines()
    assert sorted(lines) == sorted(payload.decode() for _, payload in rejected)


def test_a_shard_joined_from_several_gzip_parts_reads_as_one(tmp_path):
    settings = JobSettings(images=str(tmp_path), out=str(tmp_path), run_id="t")
    parts = []
    for part in range(3):
        writer = write._Part(settings, ("train", 1))
        for n in range(100):
            writer.write(b"part %d record %d" % (part, n))
        writer.close()
        parts.append(write.PartFile(writer.path, writer.records))
    final = write._join_parts((("train", 1), parts), settings)
    path = os.path.join(tmp_path, final.name)
    assert final.name == "train-00001-of-00004.tfrecord.gz" and final.records == 300
    assert final.bytes == os.path.getsize(path)
    records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=features.COMPRESSION)]
    assert sorted(records) == sorted(b"part %d record %d" % (p, n) for p in range(3) for n in range(100))
