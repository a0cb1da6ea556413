"""What the blocking and the asyncio clients share: everything that does no I/O."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sparktrainer.errors import parse_retry_after

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total)``; the total is None when unknown."""

# Status codes worth retrying: the request was refused before it did anything.
RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
CHUNK = 256 * 1024

SyncLock = threading.Lock
AsyncLock = asyncio.Lock
sync_sleep = time.sleep
async_sleep = asyncio.sleep


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    Retries 429 and 503 answers and connection failures; a failure after a non-idempotent
    request was sent (a POST that may have run) is never retried. ``Retry-After`` is
    honoured: the wait is at least what the server asked, unless that exceeds
    ``max_retry_after``, in which case the error is raised at once.
    """

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float | None:
        """Seconds before retry number ``attempt`` (1-based), or None to give up."""
        if attempt > self.max_retries:
            return None
        asked = parse_retry_after(retry_after)
        if asked is not None:
            if asked > self.max_retry_after:
                return None
            # A little on top, so clients told the same instant do not return together.
            return asked + random.uniform(0, min(1.0, self.backoff_base))  # noqa: S311
        backoff = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        return backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311 - jitter, not crypto


@dataclass
class TokenState:
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float = 0.0
    lifetime: float = 0.0

    def fresh(self) -> bool:
        # Refresh a fifth of the lifetime early (at most a minute), so a request never
        # leaves with a token that expires on its way.
        margin = min(60.0, self.lifetime / 5)
        return self.access_token is not None and time.time() < self.expires_at - margin

    def update(self, payload: dict[str, Any]) -> None:
        self.access_token = str(payload["access_token"])
        self.refresh_token = str(payload["refresh_token"])
        self.lifetime = float(payload.get("expires_in", 3600))
        self.expires_at = time.time() + self.lifetime


class MetricPoint:
    """One point of a job's metrics stream: ``point.step``, ``point.loss``, ``point["lr"]``."""

    __slots__ = ("event_id", "step", "values")

    def __init__(self, step: int, values: dict[str, float], event_id: int | None = None) -> None:
        self.step = step
        self.values = values
        self.event_id = event_id

    @classmethod
    def from_json(cls, data: str, event_id: int | None = None) -> MetricPoint:
        payload = json.loads(data)
        step = int(payload.pop("step"))
        return cls(step, payload, event_id)

    def __getattr__(self, name: str) -> float:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"this point has no metric {name!r}") from None

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, **self.values}

    def __repr__(self) -> str:
        return f"MetricPoint(step={self.step}, {self.values})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricPoint):
            return NotImplemented
        return (self.step, self.values) == (other.step, other.values)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class JobEnd:
    """The last message of a stream: how the job ended."""

    status: str
    exit_code: int | None
    reason: str | None

    @classmethod
    def from_json(cls, data: str) -> JobEnd:
        payload = json.loads(data)
        return cls(str(payload["status"]), payload.get("exit_code"), payload.get("reason"))


@dataclass
class SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class SSEParser:
    """Server-Sent Events, fed line by line (the WHATWG event-stream format)."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and not self._event:
                self._id = None
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None


@dataclass
class Multipart:
    """A multipart/form-data body whose file part is read from disk as it is sent."""

    fields: dict[str, str]
    path: Path
    filename: str
    progress: ProgressCallback | None = None
    boundary: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _head(self) -> bytes:
        parts = [
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in self.fields.items()
        ]
        safe = self.filename.replace('"', "%22").replace("\r", "").replace("\n", "")
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{safe}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        )
        return b"".join(parts)

    def _tail(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def length(self) -> int:
        return len(self._head()) + self.path.stat().st_size + len(self._tail())

    def chunks(self) -> Iterator[bytes]:
        total = self.path.stat().st_size
        yield self._head()
        sent = 0
        with self.path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                sent += len(chunk)
                yield chunk
                if self.progress is not None:
                    self.progress(sent, total)
        if self.progress is not None and total == 0:
            self.progress(0, 0)
        yield self._tail()


async def aiterate(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    # Reading a local file a chunk at a time is quick; the socket write is what waits.
    for chunk in chunks:
        yield chunk


def iterate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield from chunks


def etag_md5(etag: str | None) -> str | None:
    if not etag:
        return None
    value = etag.removeprefix("W/").strip('"')
    return value if len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None


def open_part(path: Path, append: bool) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab" if append else "wb")


def env_base_url() -> str | None:
    return os.environ.get("SPARKTRAINER_URL")
