"""`python -m pipeline.verify SHARDS_DIR [--full]`: are the files the ones the job wrote?

A shard damaged after the job (bit rot, a half-finished `gsutil cp`) would otherwise surface
hours into training as a `DataLossError` that names no file. metadata.json records each file's
size, record count and SHA-256 (`stage4_write.WrittenFile`), so this checks every file it
lists: present and of its recorded size (one `stat` per file, no file read: what the trainer
checks before it starts); with `--full`, also every record read (TFRecord checks each record's CRC, GZIP its
stream), counted, and the SHA-256 recomputed. It prints a table and exits 1 naming the bad
files; the way out is to rebuild the shards. Shards written before the sizes were recorded
can only be checked with `--full` (records read, nothing to compare the counts with).
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import NamedTuple

from pipeline import cli, features

CHUNK = 16 << 20


class FileCheck(NamedTuple):
    """One file's verdict: `problem` is "" for a good file."""

    name: str
    expected_bytes: int | None
    found_bytes: int | None
    problem: str


def recorded_files(data_dir: str, metadata: dict) -> dict[str, dict]:
    """The files metadata.json lists (name → bytes, records, sha256), or, for older shards, the
    shard files found, with nothing recorded."""
    if "output_files" in metadata:
        return metadata["output_files"]
    return {os.path.basename(path): {} for split in features.SPLITS for path in features.shard_files(data_dir, split)}


def _read_fully(path: str) -> tuple[int, str]:
    """(records, SHA-256) of a file: TFRecords through TF's reader, which checks every record."""
    import tensorflow as tf

    digest, lines = hashlib.sha256(), 0
    with tf.io.gfile.GFile(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    if path.endswith(features.SHARD_SUFFIX):  # A second read, through TF's reader: it checks each record's CRC.
        return sum(1 for _ in tf.data.TFRecordDataset(path, compression_type=features.COMPRESSION)), digest.hexdigest()
    return lines, digest.hexdigest()  # rejected.jsonl: one record per line.


def check(data_dir: str, metadata: dict, full: bool = False) -> list[FileCheck]:
    """Every recorded file's verdict: sizes only, or (`full`) every record and the digest too.
    A file that cannot be looked at for another reason than its absence (no permission, no
    network) is a ValueError: the folder, not the file, is what is wrong then."""
    import tensorflow as tf

    checks = []
    for name, recorded in sorted(recorded_files(data_dir, metadata).items()):
        path = os.path.join(data_dir, name)
        try:
            size = tf.io.gfile.stat(path).length
        except tf.errors.NotFoundError:
            checks.append(FileCheck(name, recorded.get("bytes"), None, "missing"))
            continue
        except tf.errors.OpError as error:
            raise ValueError(f"cannot look at {path}: {cli.tf_error_summary(error.message)}") from None
        if recorded.get("bytes") not in (None, size):
            checks.append(FileCheck(name, recorded["bytes"], size, f"{size:,} bytes, metadata.json says {recorded['bytes']:,}"))
            continue
        problem = ""
        if full:
            try:
                records, digest = _read_fully(path)
            except tf.errors.OpError as error:
                problem = f"unreadable: {cli.tf_error_summary(error.message)}"
            else:
                if recorded.get("records") not in (None, records):
                    problem = f"{records:,} records, metadata.json says {recorded['records']:,}"
                elif recorded.get("sha256") not in (None, digest):
                    problem = "its SHA-256 differs from metadata.json's (the bytes changed)"
        checks.append(FileCheck(name, recorded.get("bytes"), size, problem))
    return checks


def damage_line(data_dir: str, bad: list[FileCheck]) -> str:
    """One line naming the damaged files and what to do."""
    named = "; ".join(f"{item.name} ({item.problem})" for item in bad[:3]) + (" ..." if len(bad) > 3 else "")
    return (f"{len(bad)} damaged file{'s' * (len(bad) != 1)} in {data_dir}: {named}. Check them with "
            f"`python -m pipeline.verify {data_dir} --full`, then rebuild the shards (python -m pipeline.shards "
            "... --overwrite) or copy them again")


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m pipeline.verify", description=__doc__.split("\n")[0])
    parser.add_argument("shards_dir", help="a folder the shards job wrote (local or gs://)")
    parser.add_argument("--full", action="store_true", help="also read every record and recompute each SHA-256")
    args = cli.parse(parser, argv)
    if isinstance(args, int):
        return args
    cli.configure_logs(False)
    cli.import_tensorflow()
    try:
        metadata = features.read_metadata(args.shards_dir)
        checks = check(args.shards_dir, metadata, args.full)
    except (ValueError, OSError) as error:
        return cli.report(error)
    print(f"{'file':<40}{'bytes recorded':>16}{'bytes found':>14}  verdict")
    for item in checks:
        recorded = "-" if item.expected_bytes is None else f"{item.expected_bytes:,}"
        found = "-" if item.found_bytes is None else f"{item.found_bytes:,}"
        print(f"{item.name:<40}{recorded:>16}{found:>14}  {item.problem or 'ok'}")
    bad = [item for item in checks if item.problem]
    if bad:
        print(f"error: {damage_line(args.shards_dir, bad)}", file=sys.stderr)
        return 1
    what = "sizes, records and digests" if args.full else "sizes (add --full to read every record)"
    print(f"{len(checks)} files, all as the job wrote them: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
