"""A CSV file's bytes → rows, where a broken record costs that record only (no Beam, no TF).

Python's `csv` module parses (quoted newlines, doubled quotes, CRLF), but on its own one
bad byte or one unclosed quote stops or swallows the rest of a file. So the file is fed to it
line by line through `_Lines`, which knows which physical lines each record used, and every
fault becomes a `CsvFault` for that record while reading goes on:

| fault | reason | what happens next |
|---|---|---|
| bytes that are not UTF-8, or NUL bytes, in a record | `bad_encoding` | next record |
| a record with more or fewer cells than the header | `bad_cell_count` | next record; a record spanning several lines is re-read from its second line, since an unclosed quote may have swallowed good rows |
| a quote error, or the file ends inside a quoted field | `malformed_csv` | re-read from the record's second line |
| a record longer than `MAX_RECORD_CHARS` or `MAX_RECORD_LINES` | `record_too_large` | re-read from its second line (an overlong single line is skipped) |
| a header without the required columns | `bad_header` | every record of that file is refused with it |

A UTF-8 byte-order mark, CRLF or CR line ends, blank lines (not records) and fields beyond
Python's default limit of 131,072 characters are all read normally. Memory per file is one
record, at most `MAX_RECORD_CHARS`, whatever the file's size.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import re
from typing import BinaryIO, Iterator, Sequence

# A tweet pair is well under 10 KB; a record this long is a broken file, not a row.
MAX_RECORD_CHARS = 1 << 20
MAX_RECORD_LINES = 1000
_SHOWN_CHARS = 2000
_NOT_TEXT = re.compile("[\x00\udc80-\udcff]")  # NUL, or a byte `surrogateescape` kept.


@dataclasses.dataclass(frozen=True)
class CsvRow:
    """One record that parsed into the header's cells.

    `row_number` counts the file's data records from 1 (blank lines are not records);
    `line` is the physical line the record starts on (the header is usually line 1).
    """

    source: str
    row_number: int
    line: int
    row: dict[str, str]


@dataclasses.dataclass(frozen=True)
class CsvFault:
    """A record that could not be read as a row; `text` is its first line, as far as readable."""

    source: str
    row_number: int
    line: int
    reason: str
    message: str
    text: str


def printable(text: str) -> str:
    """`text` with undecodable bytes shown as U+FFFD, so it can be written as UTF-8 JSON."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _TooLarge(Exception):
    pass


class _Lines:
    """Physical lines for `csv.reader`, remembering those the current record consumed.

    `csv.reader` pulls exactly the lines a record needs (it never reads ahead), so after each
    record `take()` returns that record's lines, and `push_back` lets a new reader start
    again from any of them.
    """

    def __init__(self, text: io.TextIOBase):
        self._text = text
        self._pushed: collections.deque[tuple[int, str]] = collections.deque()
        self._next_number = 1
        self._consumed: list[tuple[int, str]] = []
        self._chars = 0
        self._overlong: set[int] = set()  # Lines cut short: never read again.

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self._pushed:
            number, line = self._pushed.popleft()
        else:
            line = self._text.readline(MAX_RECORD_CHARS + 1)
            if not line:
                raise StopIteration
            number, self._next_number = self._next_number, self._next_number + 1
            if len(line) > MAX_RECORD_CHARS and not line.endswith(("\n", "\r")):
                while (rest := self._text.readline(MAX_RECORD_CHARS)) and not rest.endswith(("\n", "\r")):
                    pass  # The rest of an overlong line is skipped, never held.
                self._consumed.append((number, line[:_SHOWN_CHARS]))
                self._overlong.add(number)
                raise _TooLarge(f"line {number} is longer than {MAX_RECORD_CHARS} characters")
        self._consumed.append((number, line))
        self._chars += len(line)
        if self._chars > MAX_RECORD_CHARS or len(self._consumed) > MAX_RECORD_LINES:
            raise _TooLarge(
                f"record runs over {len(self._consumed)} lines and {self._chars} characters"
                " (an unclosed quote?)"
            )
        return line

    def take(self) -> list[tuple[int, str]]:
        consumed, self._consumed, self._chars = self._consumed, [], 0
        return consumed

    def push_back(self, lines: Sequence[tuple[int, str]]) -> None:
        self._pushed.extendleft(reversed([(n, line) for n, line in lines if n not in self._overlong]))


def _fault_of(cells: list[str], header: list[str]) -> tuple[str, str] | None:
    """(reason, message) when a parsed record is not a row of this header."""
    for index, cell in enumerate(cells):
        match = _NOT_TEXT.search(cell)
        if match:
            column = header[index] if index < len(header) else f"cell {index + 1}"
            what = "a NUL byte" if match.group() == "\x00" else "bytes that are not UTF-8"
            return "bad_encoding", f"{column} holds {what} at character {match.start()}"
    if len(cells) != len(header):
        return "bad_cell_count", f"{len(cells)} cells where the header has {len(header)}"
    return None


def read_records(stream: BinaryIO, source: str, required: Sequence[str]) -> Iterator[CsvRow | CsvFault]:
    """Every record of one CSV file after its header, in order, as a `CsvRow` or a `CsvFault`.

    Sets the `csv` module's (process-wide) field size limit to `MAX_RECORD_CHARS`, which
    this reader enforces per record itself.
    """
    csv.field_size_limit(MAX_RECORD_CHARS + 1)
    lines = _Lines(io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline=""))
    header: list[str] | None = None
    header_problem = None
    row_number = 0

    def fault(consumed, reason, message) -> CsvFault:
        number, text = consumed[0] if consumed else (0, "")
        return CsvFault(source, row_number, number, reason, f"line {number}: {message}", printable(text[:_SHOWN_CHARS]))

    while True:
        # A fresh reader after each fault: csv.reader keeps no state between records.
        reader = csv.reader(lines, strict=True)
        try:
            for cells in reader:
                consumed = lines.take()
                if not cells:
                    continue  # A blank line: not a record.
                if header is None:
                    header = cells
                    missing = [column for column in required if column not in header]
                    if missing:
                        header_problem = f"the file's header {printable(','.join(header))!r} lacks columns {missing}"
                    elif any(_NOT_TEXT.search(cell) for cell in header):
                        header_problem = f"the file's header {printable(','.join(header))!r} is not UTF-8 text"
                    continue
                row_number += 1
                if header_problem:
                    yield fault(consumed, "bad_header", header_problem)
                    continue
                problem = _fault_of(cells, header)
                if problem is None:
                    yield CsvRow(source, row_number, consumed[0][0], dict(zip(header, cells)))
                    continue
                yield fault(consumed, *problem)
                if problem[0] == "bad_cell_count" and len(consumed) > 1:
                    lines.push_back(consumed[1:])
                    break
            else:
                return
        except (csv.Error, _TooLarge) as error:
            consumed = lines.take()
            message = str(error)
            if message == "unexpected end of data":
                message = "the file ends inside a quoted field (a quote is not closed)"
            if header is None:  # Without a header no record of the file can be read.
                header, header_problem = [], f"the file's header cannot be read: {message}"
                lines.push_back(consumed[1:])
                continue
            row_number += 1
            reason = "record_too_large" if isinstance(error, _TooLarge) else "malformed_csv"
            yield fault(consumed, reason, message)
            lines.push_back(consumed[1:])
