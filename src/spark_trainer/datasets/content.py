"""What a dataset file holds, learnt in the one pass that stores it.

The file may be many gigabytes and is never read twice: :class:`ContentInspector` sees
every chunk as it streams past, keeps only the first :data:`HEAD_BYTES` and a newline
count, and derives the format, the record count and a short parsed preview from those.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from spark_trainer.models import DatasetFormat

HEAD_BYTES = 16 * 1024
PREVIEW_RECORDS = 5
PARQUET_MAGIC = b"PAR1"

_BY_EXTENSION = {
    ".jsonl": DatasetFormat.JSONL,
    ".ndjson": DatasetFormat.JSONL,
    ".json": DatasetFormat.JSON,
    ".csv": DatasetFormat.CSV,
    ".tsv": DatasetFormat.TSV,
    ".parquet": DatasetFormat.PARQUET,
    ".txt": DatasetFormat.TEXT,
}
_LINE_FORMATS = {DatasetFormat.JSONL, DatasetFormat.CSV, DatasetFormat.TSV, DatasetFormat.TEXT}


@dataclass(frozen=True, slots=True)
class ContentSummary:
    format: DatasetFormat
    record_count: int | None
    """JSONL and text: lines; CSV and TSV: lines after the header (a quoted field that
    spans lines counts once per line). None where records are not lines."""
    preview: list[Any] | None
    """JSONL: the first records, parsed; CSV and TSV: the first rows as objects keyed by
    the header. Only lines complete within the first 16 KiB are shown."""


class ContentInspector:
    """Fed every chunk of one file in order; summarises it at the end. Not thread-safe.

    The format comes from the file name's extension, else from the first
    :data:`HEAD_BYTES`; once those show a format that is not line-based (binary,
    Parquet), lines are no longer counted, which spares model weights and the like the
    cost of a scan nobody needs.
    """

    def __init__(self, filename: str | None) -> None:
        self._format = _by_extension(filename)
        self._head = bytearray()
        self._newlines = 0
        self._size = 0
        self._last_byte = b""

    def feed(self, data: bytes, start: int, end: int) -> None:
        """Takes ``data[start:end]`` without copying it (the parser hands out such slices)."""
        if end <= start:
            return
        if len(self._head) < HEAD_BYTES:
            self._head += data[start : min(end, start + HEAD_BYTES - len(self._head))]
            if self._format is None and len(self._head) == HEAD_BYTES:
                self._format = _sniff(bytes(self._head), complete=False)
        if self._format is None or self._format in _LINE_FORMATS:
            self._newlines += data.count(b"\n", start, end)
        self._size += end - start
        self._last_byte = data[end - 1 : end]

    def summary(self) -> ContentSummary:
        # No format yet: the whole file fitted in the head.
        fmt = self._format or _sniff(bytes(self._head), complete=True)
        head = bytes(self._head)
        lines = self._newlines + (1 if self._size and self._last_byte != b"\n" else 0)
        if fmt == DatasetFormat.JSONL:
            return ContentSummary(fmt, lines, _jsonl_preview(head))
        if fmt in (DatasetFormat.CSV, DatasetFormat.TSV):
            delimiter = "," if fmt == DatasetFormat.CSV else "\t"
            return ContentSummary(fmt, max(lines - 1, 0), _csv_preview(head, delimiter))
        if fmt == DatasetFormat.TEXT:
            return ContentSummary(fmt, lines, None)
        return ContentSummary(fmt, None, None)


def _by_extension(filename: str | None) -> DatasetFormat | None:
    if not filename:
        return None
    return _BY_EXTENSION.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


def _complete_lines(head: bytes) -> list[str]:
    """The lines of ``head`` that end within it, decoded; a line cut off at the head's
    end (or split inside a UTF-8 sequence) is left out rather than shown half."""
    text = head[: head.rfind(b"\n") + 1].decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()]


def _jsonl_preview(head: bytes) -> list[Any]:
    records: list[Any] = []
    for line in _complete_lines(head)[:PREVIEW_RECORDS]:
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


def _csv_preview(head: bytes, delimiter: str) -> list[Any]:
    lines = _complete_lines(head)
    # Cells beyond the header go under "_extra" (a None key would not survive JSON).
    reader = csv.DictReader(io.StringIO("\n".join(lines)), delimiter=delimiter, restkey="_extra")
    try:
        return [dict(row) for _, row in zip(range(PREVIEW_RECORDS), reader, strict=False)]
    except csv.Error:
        return []


def _sniff(head: bytes, *, complete: bool) -> DatasetFormat:
    if head.startswith(PARQUET_MAGIC):
        return DatasetFormat.PARQUET
    text = _utf8(head, complete=complete)
    if text is None or "\x00" in text:
        return DatasetFormat.BINARY
    lines = _complete_lines(head)
    if lines and all(_is_json_object(line) for line in lines[:PREVIEW_RECORDS]):
        return DatasetFormat.JSONL
    if text.lstrip().startswith(("{", "[")):
        return DatasetFormat.JSON
    return DatasetFormat.TEXT


def _utf8(head: bytes, *, complete: bool) -> str | None:
    # A head cut from a longer file may end inside a multi-byte character (at most 3 of
    # its bytes); a whole file must decode as it is.
    for cut in range(1 if complete else 4):
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
