"""`python -m pipeline.download --out data/real`: the real data set, fetched, verified, extracted.

The two files of the keras.io "Multimodal entailment" example: `tweets.csv` and the
`tweet_images.tar.gz` archive (344,273,442 bytes). The result is what `make shards` reads:
`OUT/tweets.csv` and `OUT/images/<id>.<ext>`; the archive stays in OUT so a rerun can verify
it instead of downloading it again.

No SHA-256 of either file is published, so none is pinned here (the archive's size is). The
first download records each digest in `OUT/download.lock.json`, and every later run checks the
files against it: trust on first use, which is honest about what is known. Share the lock file
(or commit it) and every copy of the data is checked against the same digests.

The images the CSV names and the archive lacks are counted, and listed in
`OUT/missing_images.txt`: the shards job rejects those rows (`missing_image`), and this
report says so before it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pipeline import cli, features
from pipeline.download import fetch, untar
from pipeline.inputs import csv_records, rows

CSV_URL = "https://github.com/sayakpaul/Multimodal-Entailment-Baseline/raw/main/csvs/tweets.csv"
IMAGES_URL = "https://github.com/sayakpaul/Multimodal-Entailment-Baseline/releases/download/v1.0.0/tweet_images.tar.gz"
PINNED = {IMAGES_URL: {"bytes": 344_273_442}}  # What the example states; no digest is published.
LOCK_FILE = "download.lock.json"
MISSING_FILE = "missing_images.txt"
CSV_NAME, ARCHIVE_NAME, IMAGES_DIR = "tweets.csv", "tweet_images.tar.gz", "images"


def _read_lock(path: str) -> dict:
    if not os.path.exists(path):
        return {"files": {}}
    try:
        with open(path, encoding="utf-8") as handle:
            lock = json.load(handle)
        if not isinstance(lock.get("files"), dict):
            raise ValueError("no 'files' object")
        return lock
    except ValueError as error:
        raise fetch.FetchError(f"{path} is not a lock file this tool wrote ({error}); move it away to start over") from None


def _write_lock(path: str, lock: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(lock, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def obtain(name: str, url: str, out_dir: str, lock: dict, settings: argparse.Namespace) -> str:
    """The verified file `out_dir/name` from `url` (recorded in `lock`); returns its sha256."""
    target = os.path.join(out_dir, name)
    entry = lock["files"].get(name)
    if entry and entry.get("url") != url:
        raise fetch.FetchError(f"{LOCK_FILE} records {name} from {entry.get('url')}, not {url}: "
                               f"use another --out, or delete its entry to accept the new file")
    expected_sha = entry["sha256"] if entry else None
    expected_bytes = entry["bytes"] if entry else PINNED.get(url, {}).get("bytes")
    if os.path.exists(target):
        digest = fetch.file_sha256(target)
        size = os.path.getsize(target)
        if (expected_sha is None or digest == expected_sha) and expected_bytes in (None, size):
            print(f"{name}: already here, {size:,} bytes, sha256 {digest}" + (" (matches the lock)" if entry else ""))
            lock["files"][name] = {"url": url, "sha256": digest, "bytes": size}
            return digest
        print(f"{name}: the file here does not match {LOCK_FILE if entry else 'the size expected'}; downloading it again",
              file=sys.stderr)
        os.remove(target)
    fetched = fetch.fetch(url, target, expected_sha, expected_bytes, retries=settings.retries,
                          backoff_seconds=settings.backoff, timeout=settings.timeout)
    how = "matches the lock" if entry else f"recorded in {LOCK_FILE}"
    print(f"{name}: {fetched.bytes:,} bytes, sha256 {fetched.sha256} ({how})")
    lock["files"][name] = {"url": url, "sha256": fetched.sha256, "bytes": fetched.bytes}
    return fetched.sha256


def check_against_csv(csv_path: str, images_dir: str) -> dict:
    """Rows of the CSV and the images they name that the folder lacks (the shards job's rules)."""
    present = set(os.listdir(images_dir)) if os.path.isdir(images_dir) else set()
    report = {"rows": 0, "rows_complete": 0, "rows_missing_images": 0, "missing_images": [], "rows_invalid": {}}
    with open(csv_path, "rb") as handle:
        for item in csv_records.read_records(handle, csv_path, features.CSV_COLUMNS):
            report["rows"] += 1
            parsed = rows.parse_record(item)
            if isinstance(parsed, rows.Rejection):
                report["rows_invalid"][parsed.reason] = report["rows_invalid"].get(parsed.reason, 0) + 1
                continue
            missing = [name for name in parsed.image_files if name not in present]
            report["missing_images"] += [(name, parsed.row_number) for name in missing]
            report["rows_missing_images" if missing else "rows_complete"] += 1
    return report


def report_text(report: dict, out_dir: str) -> str:
    lines = [f"{CSV_NAME}: {report['rows']:,} rows; {report['rows_complete']:,} are valid and have both images here"]
    if report["missing_images"]:
        lines.append(f"  {len(report['missing_images']):,} images named by {report['rows_missing_images']:,} rows are not "
                     f"in the archive (listed in {os.path.join(out_dir, MISSING_FILE)}); the shards job rejects "
                     f"those rows as missing_image")
    if report["rows_invalid"]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(report["rows_invalid"].items()))
        lines.append(f"  rows the shards job will reject for other reasons: {reasons}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    out = args.out
    os.makedirs(out, exist_ok=True)
    lock_path = os.path.join(out, LOCK_FILE)
    lock = _read_lock(lock_path)
    recorded = json.dumps(lock, sort_keys=True)
    try:
        obtain(CSV_NAME, args.csv_url, out, lock, args)
        archive_sha = obtain(ARCHIVE_NAME, args.images_url, out, lock, args)
    finally:  # What was verified stays recorded, even if the other file failed.
        if json.dumps(lock, sort_keys=True) != recorded:
            _write_lock(lock_path, lock)
    images_dir = os.path.join(out, IMAGES_DIR)
    extracted = lock.get("extracted", {})
    if extracted.get("archive_sha256") == archive_sha and os.path.isdir(images_dir):
        print(f"{IMAGES_DIR}/: already extracted from this archive ({extracted['files']:,} files)")
    else:
        started = time.monotonic()
        files = untar.extract_images(os.path.join(out, ARCHIVE_NAME), images_dir, args.max_member_mb * 2**20)
        print(f"{IMAGES_DIR}/: extracted {files:,} files in {time.monotonic() - started:.1f} s")
        lock["extracted"] = {"archive_sha256": archive_sha, "files": files}
        _write_lock(lock_path, lock)
    report = check_against_csv(os.path.join(out, CSV_NAME), images_dir)
    with open(os.path.join(out, MISSING_FILE), "w", encoding="utf-8") as handle:
        handle.writelines(f"{name}\trow {row}\n" for name, row in report["missing_images"])
    print(report_text(report, out))
    print(f"next: make shards DATA={out}   (or python -m pipeline.shards --csv {os.path.join(out, CSV_NAME)} "
          f"--images {images_dir} ...)")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m pipeline.download", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/real", help="folder for the data (default: %(default)s)")
    parser.add_argument("--csv-url", default=CSV_URL, help="the pairs CSV (default: the keras.io example's)")
    parser.add_argument("--images-url", default=IMAGES_URL, help="the images tarball (default: the keras.io example's)")
    parser.add_argument("--retries", type=int, default=5, help="retries of a transient error per file (default: %(default)s)")
    parser.add_argument("--backoff", type=float, default=2.0,
                        help="seconds before the first retry, doubled each time (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry (default: %(default)s)")
    parser.add_argument("--max-member-mb", type=int, default=untar.DEFAULT_MAX_MEMBER_BYTES // 2**20,
                        help="refuse archive members larger than this (default: %(default)s)")
    args = cli.parse(parser, argv, lambda args: (
        "--retries and --backoff must not be negative; --timeout and --max-member-mb must be positive"
        if args.retries < 0 or args.backoff < 0 or args.timeout <= 0 or args.max_member_mb < 1 else None))
    if isinstance(args, int):
        return args
    try:
        run(args)
    except (fetch.FetchError, untar.UnsafeArchive, OSError) as error:
        return cli.report(error, status=1)
    return 0
