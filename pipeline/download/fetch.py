"""One file over HTTP(S): resumed with Range requests, retried with backoff, checked by SHA-256.

Why not `keras.utils.get_file`, which the notebook uses: it restarts an interrupted download
from byte 0 (344 MB of images over a flaky link), checks a hash only when the caller already
knows it, and leaves a half-written file under the final name when it is killed. This module
writes `<name>.part`, continues it with `Range: bytes=N-` after a cut or a restart, and moves
it to `<name>` only once its digest is the one expected. Nothing else is left in place: a
digest mismatch deletes the part.

Errors that may pass (a cut connection, a timeout, HTTP 408/429/5xx) are retried with
exponential backoff, continuing where the cut left off. Errors that will not pass (no such
host, connection refused, HTTP 404) fail at once, as one `FetchError` line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CHUNK_BYTES = 1 << 20
USER_AGENT = "multimodal-entailment-download/1 (+python urllib)"
RETRYABLE_STATUS = (408, 425, 429, 500, 502, 503, 504)


class FetchError(Exception):
    """A download that cannot succeed now: one line for the user."""


class _Transient(Exception):
    """A failure worth retrying (the part file keeps what arrived)."""


@dataclasses.dataclass(frozen=True)
class Fetched:
    path: str
    sha256: str
    bytes: int


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _size(count: float) -> str:
    return f"{count / 2**20:,.1f} MiB"


class _Progress:
    """Bytes, rate and time left on stderr: rewritten in place on a terminal, a line every 5 s otherwise."""

    def __init__(self, name: str, start: int, total: int | None):
        self._name, self._start, self._total = name, start, total
        self._tty = sys.stderr.isatty()
        self._began = self._last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.5 if self._tty else 5.0):
            return
        self._last = now
        rate = (done - self._start) / max(now - self._began, 1e-6)
        text = f"{self._name}: {_size(done)}"
        if self._total:
            left = (self._total - done) / rate if rate > 0 else float("inf")
            text += f" of {_size(self._total)} ({100 * done / self._total:.0f}%)"
            text += f", {_size(rate)}/s" + (f", {left:.0f} s left" if not final and left != float("inf") else "")
        else:
            text += f", {_size(rate)}/s"
        if self._tty:
            print("\r" + text.ljust(79), end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


def _request(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _classify(error: Exception, url: str) -> Exception:
    """A `_Transient` to retry, or the `FetchError` to stop with."""
    host = urllib.parse.urlparse(url).netloc or url
    if isinstance(error, urllib.error.HTTPError):
        if error.code in RETRYABLE_STATUS:
            return _Transient(f"HTTP {error.code} {error.reason}")
        return FetchError(f"{url}: HTTP {error.code} {error.reason}")
    reason = getattr(error, "reason", error)
    if isinstance(reason, socket.gaierror):
        return FetchError(f"cannot reach {host}: the name does not resolve (offline? behind a proxy?)")
    if isinstance(reason, ConnectionRefusedError):
        return FetchError(f"cannot reach {host}: connection refused")
    if isinstance(error, (urllib.error.URLError, OSError, http.client.HTTPException)):
        return _Transient(f"{type(reason).__name__}: {reason}")
    return error


def _transfer(url: str, part: str, timeout: float, progress_name: str) -> int:
    """One request: appends to `part` from its current size. Returns the bytes now in `part`."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        response = _request(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # Nothing after `offset`: the part may be complete already.
            total = (error.headers.get("Content-Range") or "").rpartition("/")[2]
            if total.isdigit() and int(total) == offset:
                return offset
            os.remove(part)  # Larger than the file the server has now: start over.
            raise _Transient("the partial download is longer than the file; starting again") from None
        raise
    with response:
        if offset and response.status != 206:  # The server ignored the Range header: start over.
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        progress = _Progress(progress_name, offset, total)
        done = offset
        with open(part, "ab" if offset else "wb") as handle:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except http.client.IncompleteRead as error:
                    handle.write(error.partial)
                    done += len(error.partial)
                    raise _Transient(f"connection cut after {done} bytes") from None
                if not chunk:
                    break
                handle.write(chunk)
                done += len(chunk)
                progress.update(done)
        if total is not None and done < total:
            raise _Transient(f"connection cut after {done} of {total} bytes")
        progress.update(done, final=True)
    return done


def fetch(url: str, target: str, expected_sha256: str | None = None, expected_bytes: int | None = None,
          retries: int = 5, backoff_seconds: float = 2.0, timeout: float = 60.0) -> Fetched:
    """Downloads `url` to `target` (continuing `target.part`); checks size and digest when given.

    Raises `FetchError` when it cannot finish, or when the file is not the one expected; then
    `target` is untouched and a mismatched part is deleted (a cut one is kept for the next run).
    """
    part = target + ".part"
    name = os.path.basename(target)
    started_with = os.path.getsize(part) if os.path.exists(part) else 0
    if started_with:
        print(f"{name}: continuing a partial download at {_size(started_with)}", file=sys.stderr)
    attempt = 0
    while True:
        try:
            done = _transfer(url, part, timeout, name)
            break
        except Exception as error:  # noqa: BLE001  Sorted into retry or stop by `_classify`.
            problem = error if isinstance(error, (_Transient, FetchError)) else _classify(error, url)
            if not isinstance(problem, _Transient):
                raise problem from None
            attempt += 1
            if attempt > retries:
                raise FetchError(f"{url}: gave up after {retries} retries: {problem}") from None
            delay = backoff_seconds * 2 ** (attempt - 1)
            print(f"{name}: {problem}; retry {attempt}/{retries} in {delay:.0f} s", file=sys.stderr, flush=True)
            time.sleep(delay)
    digest = file_sha256(part)
    mismatch = None
    if expected_bytes is not None and done != expected_bytes:
        mismatch = f"{done} bytes, expected {expected_bytes}"
    elif expected_sha256 and digest != expected_sha256:
        mismatch = f"sha256 {digest}, expected {expected_sha256}"
    if mismatch:
        os.remove(part)
        raise FetchError(f"{url} is not the file expected ({mismatch}); nothing was kept")
    os.replace(part, target)
    return Fetched(target, digest, done)
