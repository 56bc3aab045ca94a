"""A downloaded image archive → a folder, refusing any member that could do harm.

`tarfile`'s `filter="data"` (PEP 706) does the extraction, and would stop at the first bad
member with part of the archive already written. So every member is checked first and, if
any is refused, nothing is extracted and the error lists them all: a member whose path leaves
the output folder (absolute, or through `..`), a symbolic or hard link, a device or FIFO, or a
file larger than `max_member_bytes`. A good archive is extracted into a temporary folder
beside the destination and renamed into place, so the destination is complete or absent.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile

DEFAULT_MAX_MEMBER_BYTES = 64 * 2**20  # Tweet images are a few MB; 64 MiB is no image.
_SHOWN = 5


class UnsafeArchive(Exception):
    """The archive holds members this tool will not extract (nothing was extracted)."""


def refusal(member: tarfile.TarInfo, max_member_bytes: int) -> str | None:
    """Why `member` is refused, or None when it is a plain file or folder inside the output."""
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "its path leaves the output folder"
    if member.issym() or member.islnk():
        return f"it is a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r})"
    if member.ischr() or member.isblk() or member.isfifo():
        return "it is a device or FIFO"
    if not (member.isfile() or member.isdir()):
        return "it is not a regular file or folder"
    if member.size > max_member_bytes:
        return f"it is {member.size:,} bytes, over the {max_member_bytes:,}-byte limit"
    return None


def _checked_members(archive: tarfile.TarFile, max_member_bytes: int) -> list[tarfile.TarInfo]:
    members = archive.getmembers()
    refused = [(m.name, reason) for m in members if (reason := refusal(m, max_member_bytes))]
    if refused:
        shown = "; ".join(f"{name!r}: {reason}" for name, reason in refused[:_SHOWN])
        more = f" and {len(refused) - _SHOWN} more" if len(refused) > _SHOWN else ""
        raise UnsafeArchive(f"refused {len(refused)} of {len(members)} members ({shown}{more}); nothing was extracted")
    return members


def extract_images(archive_path: str, destination: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> int:
    """Extracts the archive's files into `destination`; returns the number of files.

    An archive with one top folder (the real data's `tweet_images/`) has that folder's
    contents placed in `destination`, so the images are always at `destination/<id>.<ext>`.
    An existing `destination` is replaced only once the new one is complete.
    """
    parent = os.path.dirname(os.path.abspath(destination))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".extracting-", dir=parent)
    try:
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                members = _checked_members(archive, max_member_bytes)
                archive.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:  # Truncated or not a tarball.
            raise UnsafeArchive(f"cannot read {os.path.basename(archive_path)}: {error}") from None
        tops = {posixpath.normpath(m.name).split("/")[0] for m in members} - {"."}
        root = staging
        if len(tops) == 1 and os.path.isdir(os.path.join(staging, next(iter(tops)))):
            root = os.path.join(staging, next(iter(tops)))
        files = sum(len(names) for _, _, names in os.walk(root))
        if os.path.exists(destination):
            shutil.rmtree(destination)
        os.replace(root, destination)
        return files
    finally:
        shutil.rmtree(staging, ignore_errors=True)
