"""Progress lines from a worker (rows done and rows/s), every few seconds, on stderr.

Printed, not logged: worker logging is quiet by default, and stderr reaches the console on
the local runners and the worker logs on Dataflow.
"""

from __future__ import annotations

import os
import sys
import threading
import time

PROGRESS_SECONDS = 5.0


class Progress:
    """Counts rows of one stage in one worker thread and reports them every PROGRESS_SECONDS."""

    def __init__(self, what: str):
        self._what = what
        self._count = 0
        self._started = self._last = time.monotonic()

    def tick(self, rows: int = 1) -> None:
        self._count += rows
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS:
            self._last = now
            rate = self._count / (now - self._started)
            worker = f"{os.getpid()}/{threading.current_thread().name}"
            print(f"{self._what} (worker {worker}): {self._count} rows, {rate:.1f} rows/s", file=sys.stderr, flush=True)
