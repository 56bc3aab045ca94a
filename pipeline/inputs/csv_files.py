"""The CSV input, checked before any work: matched, its header read, an https:// file fetched.

Each failure is a `UsageError`, which the command line reports as one `error:` line with exit
status 2, before a worker starts: a path or glob that matches nothing, an empty file, missing
columns. A remote input is read only as far as its header.
"""

from __future__ import annotations

import csv
import io
import os
import shutil

from pipeline import features
from pipeline.cli import UsageError, first_line


def fetch_csv(url: str, out_dir: str) -> str:
    """Downloads an https:// CSV into the output folder so every worker can read it.

    Through `fetch.fetch` (resume, retries with backoff, one-line errors) into a local
    temporary file, then copied with Beam's FileSystems, so `--out gs://...` works too.
    """
    import tempfile

    from apache_beam.io.filesystems import FileSystems

    from pipeline.download import fetch

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
        raise UsageError(f"cannot list --csv {pattern}: {first_line(error) or type(error).__name__}") from None
    if not matched:
        raise UsageError(f"--csv {pattern} {'matches no files' if any(c in pattern for c in '*?[') else 'does not exist'}")
    return matched


def inspect_csv(path: str, only_file: bool, columns=features.CSV_COLUMNS) -> None:
    """Checks the first CSV's header (every column there) from its first MiB, before any work."""
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as raw:
            head = raw.read(1 << 20)
    except Exception as error:  # noqa: BLE001  Missing, unreadable, or not gzip despite the name.
        raise UsageError(f"cannot read --csv {path}: {first_line(error) or type(error).__name__}") from None
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
