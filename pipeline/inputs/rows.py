"""CSV rows → validated `Record`s or `Rejection`s with a reason code (no Beam, no TF).

Every row read ends up as exactly one of the two; nothing is dropped here. Reason codes are
stable strings users can count and grep in `rejected.jsonl`:

| reason | meaning |
|---|---|
| `bad_encoding` | the record holds bytes that are not UTF-8, or NUL bytes (see `csv_records`) |
| `bad_cell_count` | more or fewer cells than the header has |
| `malformed_csv` | a quote error, or the file ends inside a quoted field |
| `record_too_large` | a record longer than 1 Mi characters or 1,000 lines |
| `bad_header` | the row's file has a header without the required columns |
| `bad_id` | an id is not a positive 64-bit integer (tweet ids are; at most 9223372036854775807) |
| `empty_text` | a text is empty or only whitespace |
| `unknown_label` | the label is not one of `features.LABELS` |
| `bad_image_url` | the URL has no .jpg/.jpeg/.png/.gif/.webp/.bmp file name |
| `path_traversal` | the URL's path or the derived file name would leave the images folder |
| `duplicate_pair` | the same (id_1, id_2) pair appeared earlier in the CSV |
| `missing_image` | no file `<id>.<ext>` in the images folder |
| `empty_image` | the image file has zero bytes |
| `image_too_large` | the image header announces more pixels than allowed |
| `undecodable_image` | the bytes are not a decodable image (garbage, truncated) |
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import urllib.parse
from typing import Mapping

from pipeline.features import CSV_COLUMNS, LABEL_INDEX
from pipeline.inputs.csv_records import CsvFault, CsvRow, printable

# Every reason code above, in the table's order (the scoring job adds `inference_failed`).
REASONS = ("bad_encoding", "bad_cell_count", "malformed_csv", "record_too_large", "bad_header", "bad_id", "empty_text",
           "unknown_label", "bad_image_url", "path_traversal", "duplicate_pair", "missing_image", "empty_image",
           "image_too_large", "undecodable_image")
# What the scoring job needs: the same columns, with `label` optional.
PAIR_COLUMNS = CSV_COLUMNS[:-1]
REJECTED_FILE = "rejected.jsonl"  # Where both jobs write their `Rejection`s, one JSON line each.
NO_LABEL = -1  # A `Record.label` when the row has no label to score against.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "webp", "bmp")
_ID_PATTERN = re.compile(r"^[0-9]{1,19}$")


@dataclasses.dataclass(frozen=True)
class Record:
    """One valid CSV row of file `source`: its `row_number`-th data record, starting on `line`."""

    row_number: int
    ids: tuple[str, str]
    texts: tuple[str, str]
    image_files: tuple[str, str]
    label: int
    row: Mapping[str, str] = dataclasses.field(compare=False, repr=False, default_factory=dict)
    source: str = ""
    line: int = 0

    @property
    def pair_key(self) -> str:
        return f"{self.ids[0]}-{self.ids[1]}"

    @property
    def order(self) -> tuple[str, int]:
        """Reading order across files: the first of two duplicate rows is the one kept."""
        return self.source, self.row_number


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A row that cannot become an example, with its original fields (or its text) and why."""

    row_number: int
    reason: str
    message: str
    row: Mapping[str, str]
    source: str = ""
    line: int = 0
    text: str = ""

    @classmethod
    def of(cls, record: Record, reason: str, message: str) -> "Rejection":
        return cls(record.row_number, reason, message, record.row, record.source, record.line)

    @classmethod
    def of_fault(cls, fault: CsvFault) -> "Rejection":
        return cls(fault.row_number, fault.reason, fault.message, {}, fault.source, fault.line, fault.text)

    def to_json_dict(self) -> dict:
        result = {
            "file": self.source,
            "line": self.line,
            "row_number": self.row_number,
            "id_1": self.row.get("id_1"),
            "id_2": self.row.get("id_2"),
            "reason": self.reason,
            "message": self.message,
            "row": {key: printable(value) for key, value in self.row.items()},
        }
        if self.text:
            result["text"] = self.text  # The record's first line, when it has no fields.
        return result

    def to_json_line(self) -> str:
        """The rejection as one line of rejected.jsonl (both jobs write the same format)."""
        return json.dumps(self.to_json_dict(), ensure_ascii=False, sort_keys=True)


class RowError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def parse_id(value: str | None, column: str) -> str:
    text = (value or "").strip()
    if not _ID_PATTERN.match(text) or not 0 < int(text) < 2**63:
        raise RowError("bad_id", f"{column} {value!r} is not a positive 64-bit integer")
    return str(int(text))


def image_file_name(url: str | None, tweet_id: str, column: str) -> str:
    """`<id>.<ext>` for a tweet image URL; the extension comes from the URL's path."""
    parsed = urllib.parse.urlparse((url or "").strip())
    path = urllib.parse.unquote(parsed.path)
    if any(part == ".." for part in re.split(r"[/\\]", path)):
        raise RowError("path_traversal", f"{column} URL {url!r} contains '..'")
    base = posixpath.basename(path)
    extension = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if extension not in IMAGE_EXTENSIONS:
        raise RowError("bad_image_url", f"{column} URL {url!r} does not name a .jpg/.png/.gif/.webp/.bmp file")
    name = f"{tweet_id}.{extension}"
    if posixpath.normpath(name) != name or "/" in name or "\\" in name:
        raise RowError("path_traversal", f"{column} would read outside the images folder")
    return name


def parse_row(row_number: int, row: Mapping[str, str], source: str = "", line: int = 0,
              label_required: bool = True) -> Record | Rejection:
    """Validates one CSV row; never raises for bad content.

    Without `label_required` (scoring), a row without a label (no column, or an empty cell)
    gets `NO_LABEL`; a label that is there must still be one of `features.LABELS`.
    """
    try:
        ids = (parse_id(row.get("id_1"), "id_1"), parse_id(row.get("id_2"), "id_2"))
        texts = (row.get("text_1") or "", row.get("text_2") or "")
        for column, text in zip(("text_1", "text_2"), texts):
            if not text.strip():
                raise RowError("empty_text", f"{column} is empty")
        label_name = (row.get("label") or "").strip()
        if not label_name and not label_required:
            label_name = None
        elif label_name not in LABEL_INDEX:
            raise RowError("unknown_label", f"label {row.get('label')!r} is not one of {sorted(LABEL_INDEX)}")
        files = (
            image_file_name(row.get("image_1"), ids[0], "image_1"),
            image_file_name(row.get("image_2"), ids[1], "image_2"),
        )
    except RowError as error:
        return Rejection(row_number, error.reason, str(error), row, source, line)
    label = NO_LABEL if label_name is None else LABEL_INDEX[label_name]
    return Record(row_number, ids, texts, files, label, dict(row), source, line)


def parse_record(item: CsvRow | CsvFault, label_required: bool = True) -> Record | Rejection:
    """What `csv_records.read_records` yields → a `Record`, or the `Rejection` of a bad row."""
    if isinstance(item, CsvFault):
        return Rejection.of_fault(item)
    return parse_row(item.row_number, item.row, item.source, item.line, label_required)
