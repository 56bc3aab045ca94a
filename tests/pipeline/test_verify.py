"""Shard integrity: metadata.json records each file as written; `pipeline.verify` finds a damaged one."""

from __future__ import annotations

import hashlib
import shutil

from pipeline import features
from pipeline import verify


def damaged_copy(shards, tmp_path, damage) -> tuple:
    out, metadata = shards
    copy = tmp_path / "shards"
    shutil.copytree(out, copy)
    name = "train-00001-of-00002.tfrecord.gz"
    damage(copy / name)
    return copy, name


def flip_64_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(byte ^ 0xFF for byte in data[middle:middle + 64])
    path.write_bytes(bytes(data))


def test_metadata_records_every_file_as_written(shards):
    out, metadata = shards
    files = metadata["output_files"]
    assert set(files) == {path.name for path in out.iterdir() if path.is_file() and path.name != features.METADATA_FILE}
    for name, recorded in files.items():
        data = (out / name).read_bytes()
        assert recorded["bytes"] == len(data) and recorded["sha256"] == hashlib.sha256(data).hexdigest()
    for split in features.SPLITS:
        assert sum(f["records"] for n, f in files.items() if n.startswith(split + "-")) == metadata["counts"][split]["total"]
    assert files["rejected.jsonl"]["records"] == metadata["rows_rejected"]


def test_good_shards_pass_both_checks(shards, capsys):
    out, _ = shards
    assert verify.main([str(out)]) == 0 and verify.main([str(out), "--full"]) == 0
    assert "all as the job wrote them: sizes, records and digests" in capsys.readouterr().out


def test_flipped_bytes_are_found_by_the_full_check_and_named(shards, tmp_path, capsys):
    copy, name = damaged_copy(shards, tmp_path, flip_64_bytes)
    assert verify.main([str(copy)]) == 0  # Same size: only reading it tells.
    capsys.readouterr()
    assert verify.main([str(copy), "--full"]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: 1 damaged file in {copy}: {name} (")
    assert "python -m pipeline.verify" in errors[0]
    assert [line.split()[0] for line in captured.out.splitlines() if not line.endswith(" ok")][1:2] == [name]


def test_a_truncated_shard_fails_the_size_check(shards, tmp_path, capsys):
    copy, name = damaged_copy(shards, tmp_path, lambda path: path.write_bytes(path.read_bytes()[:-100]))
    assert verify.main([str(copy)]) == 1
    assert f"{name} (" in capsys.readouterr().err and "metadata.json says" in str(verify.check(str(copy), shards[1]))
