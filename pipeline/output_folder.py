"""The Beam jobs' output folder (local or gs://): checked before any work, cleared with
--overwrite in an order that never leaves a folder looking complete, and each run's temporary
folder (`TEMP_PREFIX` + run id, for partial files) removed after it.

Through Beam's `FileSystems`, which every runner's workers use too, so `gs://` works.
"""

from __future__ import annotations

import glob
import os
import shutil

from pipeline.cli import UsageError

TEMP_PREFIX = ".tmp-"


def is_remote(path: str) -> bool:
    return "://" in path


def prepare(out_dir: str, overwrite: bool, outputs: tuple[str, ...], complete: str) -> None:
    """Fails early if --out cannot be written or holds an earlier run's output (unless --overwrite).

    With --overwrite, the completion file goes first, so that a rerun that fails half-way
    never leaves a folder that looks complete; then the other old files and the temporary
    folders of runs that crashed.
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
    patterns = [FileSystems.join(out_dir, name) for name in outputs + (complete, f"{TEMP_PREFIX}*/*")]
    existing = sorted({m.path for result in FileSystems.match(patterns) for m in result.metadata_list})
    if existing and not overwrite:
        raise UsageError(
            f"--out {out_dir} already holds {len(existing)} files of an earlier run; pass --overwrite to replace them"
        )
    completion = FileSystems.join(out_dir, complete)
    for batch in ([path for path in existing if path == completion], [path for path in existing if path != completion]):
        if batch:
            FileSystems.delete(batch)
    if not is_remote(out_dir):  # Local folders outlive their files; gs:// has no folders.
        for folder in glob.glob(os.path.join(glob.escape(out_dir), TEMP_PREFIX + "*")):
            shutil.rmtree(folder, ignore_errors=True)


def delete_temp_dir(temp_dir: str) -> None:
    """Removes a run's temporary folder and everything in it (retried bundles' leftovers too)."""
    from apache_beam.io.filesystems import FileSystems

    leftovers = [m.path for result in FileSystems.match([f"{temp_dir}/*"]) for m in result.metadata_list]
    if leftovers:
        FileSystems.delete(leftovers)
    if FileSystems.exists(temp_dir):
        FileSystems.delete([temp_dir])
