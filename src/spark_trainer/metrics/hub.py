"""In-process fan-out of job streams to SSE and WebSocket subscribers.

Each job with subscribers has one :class:`JobStream`: an append-only buffer of pre-encoded
frames. Publishing appends once, whatever the number of subscribers, and wakes them all;
each subscriber then takes every frame past its cursor in one write. A slow subscriber
therefore never holds a queue of its own, and a burst costs one write per subscriber per
wake-up instead of one per event.

Publishers may call from any thread; subscribers live on the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Sequence

from spark_trainer.metrics.frames import Frame

# Frames kept per job for live subscribers; older ones are read back from the database.
BUFFER_FRAMES = 20_000


class JobStream:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._frames: list[Frame] = []
        self._seqs: list[int] = []
        self._end: str | None = None
        self._event = asyncio.Event()
        self.subscribers = 0
        # The last look at the database for a quiet stream (has the job ended out of our
        # sight?), shared by every subscriber: (monotonic time, the end or None).
        self.quiet_check: tuple[float, str | None] | None = None

    def append(self, frames: Sequence[Frame]) -> None:
        with self._lock:
            last = self._seqs[-1] if self._seqs else 0
            fresh = [f for f in frames if f.seq > last]
            if not fresh:
                return
            self._frames.extend(fresh)
            self._seqs.extend(f.seq for f in fresh)
            if len(self._frames) > BUFFER_FRAMES:
                del self._frames[: len(self._frames) - BUFFER_FRAMES]
                del self._seqs[: len(self._seqs) - BUFFER_FRAMES]
        self._loop.call_soon_threadsafe(self._wake)

    def finish(self, end_payload: str) -> None:
        with self._lock:
            self._end = end_payload
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def since(self, cursor: int) -> tuple[list[Frame], bool, str | None]:
        """Frames after ``cursor``; whether the buffer still reaches back to it; the end."""
        with self._lock:
            covered = not self._seqs or self._seqs[0] <= cursor + 1
            start = bisect.bisect_right(self._seqs, cursor)
            return self._frames[start:], covered, self._end

    async def wait(self, seconds: float) -> bool:
        """Returns True when something is published, False after ``seconds`` of quiet."""
        event = self._event
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            return False
        return True


class StreamHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, JobStream] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set when the server starts shutting down: every open stream ends cleanly at once
        # instead of holding the shutdown for its whole grace period.
        self.closing = asyncio.Event()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attaches the hub to the event loop its subscribers run on."""
        self._loop = loop
        self.closing = asyncio.Event()

    def shut_down(self) -> None:
        """Ends every stream, now and for any subscriber still to come. Thread-safe, and
        safe from a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close_all)

    def _close_all(self) -> None:
        self.closing.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream._wake()

    def subscribe(self, job_id: str) -> JobStream:
        assert self._loop is not None, "StreamHub.bind() must run at startup"
        with self._lock:
            stream = self._streams.get(job_id)
            if stream is None:
                stream = self._streams[job_id] = JobStream(self._loop)
            stream.subscribers += 1
            return stream

    def unsubscribe(self, job_id: str, stream: JobStream) -> None:
        with self._lock:
            stream.subscribers -= 1
            if stream.subscribers <= 0 and self._streams.get(job_id) is stream:
                del self._streams[job_id]

    def publish(self, job_id: str, frames: Sequence[Frame]) -> None:
        stream = self._streams.get(job_id)
        if stream is not None:
            stream.append(frames)

    def finish(self, job_id: str, end_payload: str) -> None:
        stream = self._streams.get(job_id)
        if stream is not None:
            stream.finish(end_payload)

    def subscriber_count(self, job_id: str) -> int:
        stream = self._streams.get(job_id)
        return stream.subscribers if stream else 0

    def total_subscribers(self) -> int:
        """Live SSE and WebSocket subscribers of this process, all jobs together."""
        with self._lock:
            return sum(stream.subscribers for stream in self._streams.values())
