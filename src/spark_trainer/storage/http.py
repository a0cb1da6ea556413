"""Serving a blob over HTTP: streamed, resumable with single byte ranges (RFC 9110 §14)."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from spark_trainer.errors import SparkTrainerError
from spark_trainer.storage.base import ArtifactStore

_BYTE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILENAME_CHARS = 200


class RangeNotSatisfiable(SparkTrainerError):
    status_code = 416
    error = "Range Not Satisfiable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` a ``Range`` header asks of ``size`` bytes.

    None means "send everything": no header, or one a server may ignore (another unit,
    several ranges, malformed syntax). A well-formed range that selects no byte of the
    representation raises :class:`RangeNotSatisfiable` (416).
    """
    if header is None:
        return None
    match = _BYTE_RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - suffix, 0), size
    start = int(first)
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    end = min(int(last) + 1, size) if last else size
    return start, end


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"Range not satisfiable for {size} bytes",
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
    )


def safe_filename(name: str | None, default: str) -> str:
    """A download name that cannot act as a path or break a header: the last path
    component, with control characters removed and at most 200 characters."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    return base[:MAX_FILENAME_CHARS] or default


def content_disposition(filename: str) -> str:
    # An ASCII stand-in for old clients, the exact name (RFC 6266 filename*) for the rest.
    ascii_name = _UNSAFE_IN_NAME.sub("_", filename).lstrip(".") or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def blob_response(
    store: ArtifactStore,
    blob_hash: str,
    size: int,
    *,
    range_header: str | None,
    filename: str,
) -> StreamingResponse:
    """200 with the whole blob, or 206 with the one range asked for; never in memory."""
    selected = parse_range(range_header, size)
    start, end = selected if selected is not None else (0, size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        "Content-Disposition": content_disposition(filename),
        "ETag": f'"{blob_hash}"',
        "X-Content-Type-Options": "nosniff",
    }
    if selected is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(
        store.open_range(blob_hash, start, end),
        status_code=206 if selected is not None else 200,
        headers=headers,
        media_type="application/octet-stream",
    )
