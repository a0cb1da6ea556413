"""Live streams that survive a dropped connection: job metrics (SSE) and followed logs.

Source of ``_sync/streams.py`` (``scripts/generate-sdks``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from sparktrainer._async.transport import AsyncTransport
from sparktrainer._common import JobEnd, MetricPoint, SSEParser, async_sleep
from sparktrainer.errors import StreamError


class AsyncMetricStream:
    """``async for point in client.jobs.stream_metrics(job_id)``: the job's stored points,
    then live ones, ending when the job ends (``stream.end`` then says how).

    A dropped connection is resumed with ``Last-Event-ID``; every point carries the
    server's event id, so none is repeated or skipped. After ``max_reconnects`` failed
    attempts in a row :class:`StreamError` is raised.
    """

    def __init__(
        self,
        transport: AsyncTransport,
        job_id: str,
        *,
        after: int = 0,
        max_reconnects: int = 10,
    ) -> None:
        self._t = transport
        self.job_id = job_id
        self.last_event_id = after
        self.max_reconnects = max_reconnects
        self.end: JobEnd | None = None
        self.reconnects = 0

    def __aiter__(self) -> AsyncIterator[MetricPoint]:
        return self._points()

    async def _points(self) -> AsyncIterator[MetricPoint]:
        failures = 0
        while self.end is None:
            headers = {"Accept": "text/event-stream"}
            if self.last_event_id:
                headers["Last-Event-ID"] = str(self.last_event_id)
            try:
                async with self._t.stream(
                    "GET",
                    "/api/jobs/{job_id}/stream",
                    path={"job_id": self.job_id},
                    headers=headers,
                ) as response:
                    parser = SSEParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        if event.event == "end":
                            self.end = JobEnd.from_json(event.data)
                            return
                        if event.event != "message" or not event.data:
                            continue
                        seq = int(event.id) if event.id and event.id.isdigit() else None
                        if seq is not None:
                            if seq <= self.last_event_id:
                                continue
                            self.last_event_id = seq
                        failures = 0
                        yield MetricPoint.from_json(event.data, seq)
            except httpx.TransportError as exc:
                failures += 1
                delay = self._t.retry.delay(failures) if failures <= self.max_reconnects else None
                if delay is None:
                    raise StreamError(
                        f"metrics stream of {self.job_id} lost after {failures} attempts: {exc}"
                    ) from exc
                self.reconnects += 1
                await async_sleep(delay)
                continue
            # The server closed without the end event (a restart, a proxy timeout): resume.
            self.reconnects += 1
            failures += 1
            if failures > self.max_reconnects:
                raise StreamError(f"metrics stream of {self.job_id} keeps closing early")


class AsyncLogStream:
    """``async for text in client.jobs.follow_logs(job_id)``: a job's log as it is written,
    until the job ends. Reconnects from the byte offset reached, so nothing repeats."""

    def __init__(
        self, transport: AsyncTransport, job_id: str, *, stream: str = "stdout", offset: int = 0
    ) -> None:
        self._t = transport
        self.job_id = job_id
        self.stream = stream
        self.offset = offset

    def __aiter__(self) -> AsyncIterator[str]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[str]:
        failures = 0
        decoder_tail = b""
        while True:
            params = {"stream": self.stream, "offset": self.offset, "follow": "true"}
            try:
                async with self._t.stream(
                    "GET", "/api/jobs/{job_id}/logs", path={"job_id": self.job_id}, params=params
                ) as response:
                    self.offset = int(response.headers.get("X-Log-Offset", self.offset))
                    async for chunk in response.aiter_bytes():
                        self.offset += len(chunk)
                        failures = 0
                        data = decoder_tail + chunk
                        # Hold back an incomplete UTF-8 sequence until its next bytes come.
                        cut = _utf8_boundary(data)
                        decoder_tail = data[cut:]
                        if cut:
                            yield data[:cut].decode("utf-8", "replace")
                if decoder_tail:
                    yield decoder_tail.decode("utf-8", "replace")
                return
            except httpx.TransportError as exc:
                failures += 1
                delay = self._t.retry.delay(failures)
                if delay is None:
                    raise StreamError(f"log stream of {self.job_id} lost: {exc}") from exc
                await async_sleep(delay)


def _utf8_boundary(data: bytes) -> int:
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        if byte & 0x80 == 0:
            return len(data)
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        return len(data) if back >= need else len(data) - back
    return len(data)
