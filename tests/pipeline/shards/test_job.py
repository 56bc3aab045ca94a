"""The whole Beam job: round trip, rejections, reconciliation, determinism and CLI errors."""

from __future__ import annotations

import glob
import io
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from pipeline import features
from pipeline.inputs import csv_records, rows
from pipeline.preprocess import bert_inputs, images
from pipeline.shards import command as run
from pipeline.shards import stage2_split
from tests.conftest import BAD_ROW_REASONS, FILE_FAULT_REASONS, GOOD_PAIRS, IMAGE_SIZE, SEQ_LENGTH, job_args

ALL_REASONS = BAD_ROW_REASONS + FILE_FAULT_REASONS

SHAPE = features.Shape(IMAGE_SIZE, SEQ_LENGTH)


def read_split(out, split):
    files = sorted(glob.glob(os.path.join(out, f"{split}-*-of-*{features.SHARD_SUFFIX}")))
    dataset = tf.data.TFRecordDataset(files, compression_type=features.COMPRESSION)
    return [features.parse(serialized, SHAPE) for serialized in dataset]


def read_all(out):
    return {split: read_split(out, split) for split in features.SPLITS}


def test_counts_reconcile_and_files_are_named_per_split(shards):
    out, metadata = shards
    total = GOOD_PAIRS + len(ALL_REASONS)
    assert metadata["rows_read"] == total
    assert metadata["examples_written"] == GOOD_PAIRS
    assert metadata["rows_rejected"] == len(ALL_REASONS)
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.tfrecord.gz")))
    assert names == [
        "test-00000-of-00001.tfrecord.gz",
        "train-00000-of-00002.tfrecord.gz",
        "train-00001-of-00002.tfrecord.gz",
        "val-00000-of-00001.tfrecord.gz",
    ]
    examples = read_all(out)
    for split in features.SPLITS:
        counted = Counter(features.LABELS[int(e["label"])] for e in examples[split])
        assert metadata["counts"][split] == {"total": len(examples[split]), **{n: counted[n] for n in features.LABELS}}
    assert metadata["image_size"] == IMAGE_SIZE and metadata["seq_length"] == SEQ_LENGTH
    assert metadata["vocab_fingerprint"].startswith("sha256:") and metadata["source_fingerprint"]["csv_sha256"]


def test_metadata_counts_the_pairs_cut_and_the_original_images(shards, dataset):
    """Token counts before truncation and the original images' formats and sizes, recounted
    here from the written pairs' own texts and image files."""
    from PIL import Image

    out, metadata = shards
    vocab = bert_inputs.read_vocab(str(dataset["vocab"]))
    uncut = bert_inputs.PairTokenizer(vocab, lowercase=True, seq_length=512)
    records = {record.ids: record for record in (rows.parse_row(i, row) for i, row in enumerate(dataset["good_rows"], 1))}
    formats, long_sides, short_sides, cut = Counter(), Counter(), Counter(), 0
    for split, examples in read_all(out).items():
        texts = [[e[key].numpy().decode() for e in examples] for key in features.TEXT_KEYS]
        lengths = uncut(tf.constant(texts[0]), tf.constant(texts[1]))["input_mask"].numpy().sum(axis=1)
        stats = metadata["pair_tokens"][split]
        assert stats["pairs"] == len(examples) and stats["max"] == lengths.max() and stats["min"] == lengths.min()
        assert stats["truncated"] == int((lengths > SEQ_LENGTH).sum())
        cut += stats["truncated"]
        for example in examples:
            for name in records[(example["id_1"].numpy().decode(), example["id_2"].numpy().decode())].image_files:
                with Image.open(dataset["images"] / name) as image:
                    formats[image.format.lower()] += 1
                    long_sides[max(image.size)] += 1
                    short_sides[min(image.size)] += 1
    assert cut > 0  # The fixture has pairs longer than the sequence.
    stored = metadata["original_images"]
    assert stored["images"] == 2 * GOOD_PAIRS and stored["formats"] == dict(formats)
    assert (stored["long_side"]["max"], stored["short_side"]["min"]) == (max(long_sides), min(short_sides))
    assert stored["short_side_below_image_size"] == sum(n for side, n in short_sides.items() if side < IMAGE_SIZE)


def test_every_bad_row_is_rejected_with_its_reason(shards, dataset):
    out, metadata = shards
    with open(os.path.join(out, "rejected.jsonl"), encoding="utf-8") as handle:
        rejected = [json.loads(line) for line in handle]
    assert Counter(r["reason"] for r in rejected) == Counter(ALL_REASONS)
    assert metadata["rejected_by_reason"] == dict(Counter(ALL_REASONS))
    by_row = {r["row_number"]: r for r in rejected}
    for offset, reason in enumerate(ALL_REASONS):
        entry = by_row[GOOD_PAIRS + 1 + offset]
        assert entry["reason"] == reason and entry["message"]
        assert entry["file"] == str(dataset["mixed_csv"]) and entry["line"] > GOOD_PAIRS
        if offset < len(BAD_ROW_REASONS):
            assert entry["row"] == dataset["bad_rows"][offset]  # Original fields kept as read.
        else:
            assert entry["row"] == {} and entry["text"]  # No fields: the record's line instead.


def test_a_broken_csv_costs_only_its_broken_rows(shards):
    """Invalid UTF-8, a NUL byte, an extra cell and an unclosed quote at the end of the file:
    each is one rejected row, and every good row before them is written."""
    out, metadata = shards
    assert metadata["rejected_by_reason"]["malformed_csv"] == 1 and metadata["rejected_by_reason"]["bad_encoding"] == 2
    assert metadata["examples_written"] == GOOD_PAIRS


def test_round_trip_matches_direct_preprocessing(shards, dataset):
    """Shards hold exactly what preprocessing the same rows directly gives."""
    out, _ = shards
    tokenizer = bert_inputs.PairTokenizer(bert_inputs.read_vocab(str(dataset["vocab"])), True, SEQ_LENGTH)
    by_ids = {}
    for split, examples in read_all(out).items():
        for example in examples:
            by_ids[(example["id_1"].numpy().decode(), example["id_2"].numpy().decode())] = (split, example)
    assert len(by_ids) == GOOD_PAIRS
    worst_pixel_error = 0.0
    for number, row in enumerate(dataset["good_rows"], start=1):
        record = rows.parse_row(number, row)
        split, example = by_ids[record.ids]
        assert int(example["label"]) == record.label  # Labels stay with their pair.
        assert [example[k].numpy().decode() for k in features.TEXT_KEYS] == list(record.texts)
        tokens = tokenizer(tf.constant([record.texts[0]]), tf.constant([record.texts[1]]))
        for key in features.TOKEN_KEYS:
            np.testing.assert_array_equal(example[key].numpy(), tokens[key].numpy()[0])
        for key, name in zip(features.IMAGE_KEYS, record.image_files):
            data = (dataset["images"] / name).read_bytes()
            direct = images.decode_checked(tf.constant(data), IMAGE_SIZE)[0].numpy().astype(float)
            stored = example[key].numpy().astype(float)
            assert stored.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
            worst_pixel_error = max(worst_pixel_error, np.abs(stored - direct).mean())
    assert worst_pixel_error < 4.0  # JPEG q95 re-encoding noise, in 0-255 units.


def test_preprocess_handle_writes_the_same_examples_as_the_vocabulary(shards, dataset, hub_preprocessor, tmp_path):
    """The default tokenizer source, a TF Hub preprocessing model (here a local one)."""
    out, metadata = shards
    args = job_args(dataset, tmp_path / "hub", extra=["--preprocess-handle", hub_preprocessor])
    del args[args.index("--vocab"):args.index("--vocab") + 2]
    from_hub = run.run(args)
    assert from_hub["vocab_fingerprint"] == metadata["vocab_fingerprint"]
    assert from_hub["tokenizer"] == {"hub_handle": hub_preprocessor}
    assert from_hub["counts"] == metadata["counts"] and from_hub["pair_tokens"] == metadata["pair_tokens"]
    for split in features.SPLITS:
        expected = {(e["id_1"].numpy(), e["id_2"].numpy()): e for e in read_split(out, split)}
        for example in read_split(tmp_path / "hub", split):
            twin = expected.pop((example["id_1"].numpy(), example["id_2"].numpy()))
            for key in features.TOKEN_KEYS:
                np.testing.assert_array_equal(example[key].numpy(), twin[key].numpy())
        assert not expected


def expected_splits(dataset, out):
    """(split of each valid unique pair by `stage2_split.assign_splits`, label of each pair, pairs the
    job rejected after that: missing, broken or oversized images)."""
    with open(dataset["mixed_csv"], "rb") as handle:
        parsed = [rows.parse_record(item) for item in csv_records.read_records(handle, "", features.CSV_COLUMNS)]
    keys_by_label, key_of_row, label_of = {}, {}, {}
    for record in parsed:
        if isinstance(record, rows.Record):
            keys_by_label.setdefault(record.label, set()).add(record.pair_key)
            key_of_row[record.row_number] = record.pair_key
            label_of[record.pair_key] = record.label
    expected = {}
    for keys in keys_by_label.values():
        expected.update(stage2_split.assign_splits(sorted(keys), 0.1, 0.05, seed=0))
    with open(os.path.join(out, "rejected.jsonl"), encoding="utf-8") as handle:
        rejected = [json.loads(line) for line in handle]
    decode_rejected = {
        key_of_row[r["row_number"]] for r in rejected if r["row_number"] in key_of_row and r["reason"] != "duplicate_pair"
    }
    return expected, label_of, decode_rejected


def test_splits_are_disjoint_and_stratified(shards, dataset):
    out, metadata = shards
    seen = {}
    for split, examples in read_all(out).items():
        for example in examples:
            key = (example["id_1"].numpy(), example["id_2"].numpy())
            assert key not in seen, f"pair {key} in {seen.get(key)} and {split}"
            seen[key] = split
    # Exact quotas per label over the pairs that reached decoding: 10% test, then 5% of the
    # rest val; a pair rejected at decode time leaves its own split one short.
    expected, label_of, decode_rejected = expected_splits(dataset, out)
    for index, label in enumerate(features.LABELS):
        assigned = [key for key, l in label_of.items() if l == index]
        lost = Counter(expected[key] for key in assigned if key in decode_rejected)
        n_test = round(len(assigned) * 0.1)
        n_val = round((len(assigned) - n_test) * 0.05)
        assert metadata["counts"]["test"][label] == n_test - lost["test"]
        assert metadata["counts"]["val"][label] == n_val - lost["val"]


def test_splits_are_assigned_before_decoding_from_valid_rows_only(shards, dataset):
    """Each pair's split is what `stage2_split.assign_splits` gives over the valid, unique rows, so a row
    rejected at decode time (a broken image) moves no other pair to another split."""
    out, _ = shards
    expected, _, decode_rejected = expected_splits(dataset, out)
    written = {
        f"{e['id_1'].numpy().decode()}-{e['id_2'].numpy().decode()}": split
        for split, examples in read_all(out).items()
        for e in examples
    }
    assert decode_rejected and set(written) == set(expected) - decode_rejected
    assert {key: expected[key] for key in written} == written


def test_same_examples_in_the_same_files_with_two_worker_processes(shards, dataset, tmp_path):
    """Multi-process DirectRunner: every file holds the same example bytes (their order within
    a file may differ), rejected.jsonl the same lines, metadata.json the same counts."""
    out, metadata = shards
    again = tmp_path / "again"
    second_metadata = run.run(job_args(dataset, again, extra=["--direct_num_workers=2", "--direct_running_mode=multi_processing"]))

    def content(directory):
        result = {}
        for path in sorted(glob.glob(os.path.join(directory, f"*{features.SHARD_SUFFIX}"))):
            records = tf.data.TFRecordDataset(path, compression_type=features.COMPRESSION)
            result[os.path.basename(path)] = sorted(serialized.numpy() for serialized in records)
        with open(os.path.join(directory, "rejected.jsonl"), encoding="utf-8") as handle:
            result["rejected.jsonl"] = sorted(handle)
        return result

    first, second = content(out), content(again)
    assert sum(len(first[name]) for name in first if name.endswith(features.SHARD_SUFFIX)) == GOOD_PAIRS
    assert first == second
    for key in ("counts", "rejected_by_reason", "source_fingerprint", "pair_tokens", "original_images"):
        assert second_metadata[key] == metadata[key]
    assert sorted(os.listdir(again)) == sorted(os.listdir(out))  # No temporary folder left.


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--csv": "/nonexistent/tweets.csv"}, "does not exist"),
        ({"--csv": "EMPTY"}, "is empty"),
        ({"--csv": "HEADER_ONLY"}, "no rows"),
        ({"--csv": "MISSING_COLUMNS"}, "lacks columns ['image_2', 'label']"),
        ({"--images": "/nonexistent/images"}, "is not a folder"),
        ({"--out": "/proc/not-writable"}, "is not writable"),
        ({"--vocab": "/nonexistent/vocab.txt"}, "cannot load the tokenizer"),
        ({"--seq-length": "2"}, "--seq-length must be at least 5"),
        ({"--threads": "-1"}, "--threads must be 0"),
        ({"--image-szie": "48"}, "unknown flag --image-szie (did you mean --image-size?)"),
        ({"--runner": "DirectRunner", "--direct_num_wrkers": "2"}, "unknown flag --direct_num_wrkers (did you mean --direct_num_workers?)"),
        ({"--csv": str(os.sep.join(["", "nonexistent", "pairs-*.csv"]))}, "matches no files"),
        ({"--image-size": "abc"}, "invalid int value: 'abc'"),
    ],
)
def test_bad_invocation_is_one_clear_error_line(change, message, dataset, tmp_path, capsys):
    special = {
        "EMPTY": "",
        "HEADER_ONLY": ",".join(features.CSV_COLUMNS) + "\n",
        "MISSING_COLUMNS": "id_1,text_1,image_1,id_2,text_2\n1,a,b.jpg,2,c\n",
    }
    args = dict(zip(job_args(dataset, tmp_path / "out")[::2], job_args(dataset, tmp_path / "out")[1::2]))
    for flag, value in change.items():
        if value in special:
            path = tmp_path / "input.csv"
            path.write_text(special[value], encoding="utf-8")
            value = str(path)
        args[flag] = value
    argv = [item for pair in args.items() for item in pair]
    assert run.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error


def test_preprocessing_model_that_cannot_pack_the_length_is_a_usage_error(dataset, hub_preprocessor, tmp_path, capsys):
    args = job_args(dataset, tmp_path / "out", extra=["--preprocess-handle", hub_preprocessor])
    del args[args.index("--vocab"):args.index("--vocab") + 2]
    args[args.index("--seq-length") + 1] = "64"  # The local model was built for other lengths.
    assert run.main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "cannot pack BERT inputs of length 64" in error[0] and "no network" not in error[0], error


def test_existing_shards_need_overwrite(shards, dataset, capsys):
    out, _ = shards
    assert run.main(job_args(dataset, out)) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_failed_rerun_leaves_no_metadata_and_no_temporary_files(dataset, tmp_path, monkeypatch, capsys):
    """--overwrite removes the old run first (metadata.json before anything else) and the
    temporary folders that crashed runs left; a run that then fails leaves no metadata.json,
    so the reader refuses the folder instead of reading old metadata beside new shards."""
    from pipeline.shards import stage3_encode as encode

    out = tmp_path / "out"
    run.run(job_args(dataset, out, csv_key="good_csv"))
    (out / ".tmp-crashed").mkdir()
    (out / ".tmp-crashed" / "train-00000-0.part").write_bytes(b"left by a crash")

    def fail(self, item):
        raise RuntimeError("disk full")

    monkeypatch.setattr(encode.PreprocessFn, "process", fail)
    assert run.main(job_args(dataset, out, csv_key="good_csv", extra=["--overwrite"])) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: the job failed") and "disk full" in error[0], error
    assert not (out / features.METADATA_FILE).exists() and not glob.glob(str(out / ".tmp-*"))
    assert not glob.glob(str(out / f"*{features.SHARD_SUFFIX}"))  # The old run's shards went first.
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        features.read_metadata(str(out))


def test_a_glob_of_csv_files_is_one_data_set(dataset, tmp_path):
    """Rows split over several files give the same examples as the one file."""
    parts = tmp_path / "parts"
    parts.mkdir()
    lines = io.StringIO(dataset["good_csv"].read_text(encoding="utf-8"), newline="").readlines()
    header, body = lines[0], lines[1:]
    # Split on record boundaries: csv_records tells where each record starts.
    with open(dataset["good_csv"], "rb") as handle:
        starts = [r.line - 2 for r in csv_records.read_records(handle, "", features.CSV_COLUMNS)]
    middle = starts[len(starts) // 2]
    (parts / "pairs-0.csv").write_text(header + "".join(body[:middle]), encoding="utf-8")
    (parts / "pairs-1.csv").write_text(header + "".join(body[middle:]), encoding="utf-8")
    args = job_args(dataset, tmp_path / "from-glob", csv_key="good_csv")
    args[args.index("--csv") + 1] = str(parts / "pairs-*.csv")
    from_glob = run.run(args)
    from_file = run.run(job_args(dataset, tmp_path / "from-file", csv_key="good_csv"))
    assert from_glob["counts"] == from_file["counts"] and from_glob["rows_read"] == GOOD_PAIRS
    assert len(from_glob["source_fingerprint"]["csv_files"]) == 2
    for split in features.SPLITS:
        assert sorted(e["id_1"].numpy() for e in read_split(tmp_path / "from-glob", split)) == sorted(
            e["id_1"].numpy() for e in read_split(tmp_path / "from-file", split)
        )


def test_command_line_errors_are_one_line_and_help_needs_no_tensorflow(dataset, tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "pipeline.shards", "--csv", "nope.csv", "--images", str(dataset["images"]), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.strip() == "error: --csv nope.csv does not exist", missing.stderr
    no_flags = subprocess.run([sys.executable, "-m", "pipeline.shards"], capture_output=True, text=True)
    assert no_flags.returncode == 2 and no_flags.stderr.strip().splitlines() == [
        "error: the following arguments are required: --csv, --images, --out"
    ]
    # --help (and flag errors) import neither TensorFlow nor Beam, so they answer at once.
    probe = "import sys, runpy; sys.argv = ['run', '--help']\ntry:\n runpy.run_module('pipeline.shards', run_name='__main__')\nexcept SystemExit:\n pass\nprint(sorted(m for m in ('tensorflow', 'apache_beam') if m in sys.modules))"
    helped = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert helped.returncode == 0 and "--csv CSV" in helped.stdout and helped.stdout.strip().endswith("[]"), helped
    assert helped.stderr == ""


def test_a_failing_dofn_is_one_error_line_and_its_traceback_only_with_verbose(dataset, tmp_path):
    """A DoFn that raises (a full disk, say): one `error:` line, exit 1; Beam's own traceback of
    it only with --verbose."""
    argv = [sys.executable, "tests/scripts/failing_shards_job.py", *job_args(dataset, tmp_path / "out", csv_key="good_csv")]
    user_env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # As a user runs it.
    quiet = subprocess.run(argv, capture_output=True, text=True, env=user_env)
    assert quiet.returncode == 1 and quiet.stderr.strip().splitlines() == [
        "error: the job failed, and wrote no metadata.json: RuntimeError: OSError: [Errno 28] No space left on device "
        "[while running 'BuildShards/Preprocess/ParDo(PreprocessFn)']"], quiet.stderr
    loud = subprocess.run([*argv, "--verbose", "--overwrite"], capture_output=True, text=True)
    assert loud.returncode == 1 and "Traceback" in loud.stderr
