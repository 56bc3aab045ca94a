"""Checks before any work: the CSV input, the output folder and the tokenizer.

Each failure is a `UsageError`, which the command line reports as one `error:` line with exit
status 2, before a worker starts: a missing or empty CSV, missing columns, an output folder
that cannot be written or holds an earlier run (unless --overwrite), a tokenizer that cannot
be loaded. A remote input is read only as far as its header.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import os
import shutil

from pipeline import features, rows
from pipeline.cli import UsageError
from pipeline.settings import DEFAULT_PREPROCESS_HANDLE, TEMP_PREFIX, TokenizerSource


def is_remote(path: str) -> bool:
    return "://" in path


def fetch_csv(url: str, out_dir: str) -> str:
    """Downloads an https:// CSV into the output folder so every worker can read it.

    Through `fetch.fetch` (resume, retries with backoff, one-line errors) into a local
    temporary file, then copied with Beam's FileSystems, so `--out gs://...` works too.
    """
    import tempfile

    from apache_beam.io.filesystems import FileSystems

    from pipeline import fetch

    target = FileSystems.join(out_dir, "source.csv")
    with tempfile.TemporaryDirectory(prefix="csv-download-") as scratch:
        local = os.path.join(scratch, "source.csv")
        try:
            fetch.fetch(url, local)
            with open(local, "rb") as source, FileSystems.create(target) as handle:
                shutil.copyfileobj(source, handle, 1 << 20)
        except (fetch.FetchError, OSError) as error:
            raise UsageError(f"cannot download --csv {url}: {error}") from None
    return target


def match_csv(pattern: str) -> list[str]:
    """The CSV files a path or glob names, sorted; a usage error when there are none."""
    from apache_beam.io.filesystems import FileSystems

    try:
        matched = sorted(m.path for result in FileSystems.match([pattern]) for m in result.metadata_list)
    except Exception as error:  # noqa: BLE001  Each file system reports a bad path its own way.
        raise UsageError(f"cannot list --csv {pattern}: {str(error).splitlines()[0]}") from None
    if not matched:
        raise UsageError(f"--csv {pattern} {'matches no files' if any(c in pattern for c in '*?[') else 'does not exist'}")
    return matched


def inspect_csv(path: str, only_file: bool, columns=rows.CSV_COLUMNS) -> None:
    """Checks the first CSV's header (every column there) from its first MiB, before any work."""
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as raw:
            head = raw.read(1 << 20)
    except Exception as error:  # noqa: BLE001  Missing, unreadable, or not gzip despite the name.
        raise UsageError(f"cannot read --csv {path}: {str(error).splitlines()[0]}") from None
    reader = csv.reader(io.StringIO(head.decode("utf-8-sig", errors="replace"), newline=""))
    try:
        header = next(reader, None)
        first_row = next(reader, None)
    except csv.Error:
        first_row = True  # A row too long for the first MiB: the job reads it properly.
    if not header:
        raise UsageError(f"--csv {path} is empty")
    missing = [column for column in columns if column not in header]
    if missing:
        raise UsageError(f"--csv {path} lacks columns {missing} (needs {', '.join(columns)})")
    if first_row is None and only_file:
        raise UsageError(f"--csv {path} has a header but no rows")


SHARDS_OUTPUTS = (f"*{features.SHARD_SUFFIX}", features.METADATA_FILE, "rejected.jsonl", f"{TEMP_PREFIX}*/*")


def _outputs_in(out_dir: str, names=SHARDS_OUTPUTS) -> list[str]:
    """Files an earlier run left in `out_dir`: shards, metadata, rejected rows, temporary parts."""
    from apache_beam.io.filesystems import FileSystems

    patterns = [FileSystems.join(out_dir, name) for name in names]
    return sorted({m.path for result in FileSystems.match(patterns) for m in result.metadata_list})


def prepare_output(out_dir: str, overwrite: bool, outputs=SHARDS_OUTPUTS, complete: str = features.METADATA_FILE) -> None:
    """Fails early if --out cannot be written or holds an earlier run's output (unless --overwrite).

    `outputs` are the globs of a job's files, `complete` the one it writes last (the shards
    job's metadata.json, the scoring job's summary.json). With --overwrite, `complete` goes
    first, so that a rerun that fails half-way never leaves a folder that looks complete;
    then the other old files and the temporary folders of runs that crashed.
    """
    from apache_beam.io.filesystems import FileSystems

    try:
        if not is_remote(out_dir):
            os.makedirs(out_dir, exist_ok=True)
        probe = FileSystems.join(out_dir, ".write-test")
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except Exception as error:  # noqa: BLE001  Any failure here means "cannot write".
        raise UsageError(f"--out {out_dir} is not writable: {error}") from None
    existing = _outputs_in(out_dir, outputs)
    if existing and not overwrite:
        raise UsageError(
            f"--out {out_dir} already holds {len(existing)} files of an earlier run; pass --overwrite to replace them"
        )
    metadata = FileSystems.join(out_dir, complete)
    for batch in ([path for path in existing if path == metadata], [path for path in existing if path != metadata]):
        if batch:
            FileSystems.delete(batch)
    if not is_remote(out_dir):  # Local folders outlive their files; gs:// has no folders.
        for folder in glob.glob(os.path.join(glob.escape(out_dir), TEMP_PREFIX + "*")):
            shutil.rmtree(folder, ignore_errors=True)


def load_tokenizer_source(args: argparse.Namespace) -> tuple[TokenizerSource, str]:
    """Reads the vocabulary (or loads the Hub model) once here, so a bad source fails before workers try."""
    try:
        source = TokenizerSource.from_flags(args.vocab, not args.cased, args.preprocess_handle, args.text_encoder)
        fingerprint = source.fingerprint(args.seq_length)
    except Exception as error:  # noqa: BLE001  Hub/IO/format errors all mean "cannot tokenize".
        handle = args.text_encoder or ("" if args.vocab else args.preprocess_handle or DEFAULT_PREPROCESS_HANDLE)
        remote = handle.startswith(("http://", "https://"))
        hint = " (no network? pass --text-encoder or --vocab with a local copy)" if remote else ""
        raise UsageError(f"cannot load the tokenizer: {str(error).splitlines()[0]}{hint}") from None
    return source, fingerprint
