"""In-process fan-out of job streams to SSE and WebSocket subscribers.

Each job with subscribers has one :class:`JobStream`. Publishers (any thread) add frames to
its pending list; a tick on the event loop then turns everything pending into one
:class:`Chunk`, appends it to the stream's buffer and wakes every subscriber once. Each
subscriber writes the chunks past its cursor in one write; one that is caught up writes
the tick's bytes, joined once for all.

Ticks are at least ``TICK_PER_SUBSCRIBER`` times the subscribers apart (at most ``MAX_TICK``): a
wake-up costs a task step and a socket write per subscriber, so with many subscribers
fewer, larger wake-ups keep the loop ahead of the points instead of queueing behind
them. The first point after a quiet spell goes out at once.

One keep-alive timer per stream, not one per subscriber: after ``KEEPALIVE_SECONDS``
without a tick it wakes every subscriber with nothing new, and each sends a ping.

Publishers may call from any thread; ticks and subscribers run on the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Sequence

from spark_trainer.metrics.frames import Chunk, Frame

# Frames kept per job for live subscribers; older ones are read back from the database.
BUFFER_FRAMES = 20_000
# About what one wake-up of one subscriber costs the loop, and the longest a point waits
# for its tick.
TICK_PER_SUBSCRIBER = 20e-6
MAX_TICK = 0.05
KEEPALIVE_SECONDS = 15.0


class _Wake(asyncio.Event):
    """One wake-up of a stream's subscribers: a tick, or the keep-alive (``ping``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ping = False


class JobStream:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # The publishers' side, under the lock.
        self._lock = threading.Lock()
        self._pending: list[Frame] = []
        self._pending_end: str | None = None
        self._last_seq = 0
        self._tick_due = False
        # The loop's side.
        self._chunks: list[Chunk] = []
        self._lasts: list[int] = []  # each chunk's last seq, for bisect
        self._buffered = 0
        self._last_wake = loop.time()
        self._wake_event = _Wake()
        self._keepalive = loop.call_later(KEEPALIVE_SECONDS, self._keepalive_due)
        self._tick_handle: asyncio.Handle | None = None
        self.end: str | None = None
        self.subscribers = 0
        # The last look at the database for a quiet stream (has the job ended out of our
        # sight?), shared by every subscriber: (monotonic time, the end or None).
        self.quiet_check: tuple[float, str | None] | None = None

    # --- publishers (any thread) -----------------------------------------------------------

    def append(self, frames: Sequence[Frame]) -> None:
        with self._lock:
            fresh = [f for f in frames if f.seq > self._last_seq]
            if not fresh:
                return
            self._last_seq = fresh[-1].seq
            self._pending.extend(fresh)
            if self._tick_due:
                return
            self._tick_due = True
        self._loop.call_soon_threadsafe(self._schedule_tick)

    def finish(self, end_payload: str) -> None:
        with self._lock:
            self._pending_end = end_payload
            if self._tick_due:
                return
            self._tick_due = True
        self._loop.call_soon_threadsafe(self._schedule_tick)

    # --- the loop ----------------------------------------------------------------------------

    def tick_seconds(self) -> float:
        return min(MAX_TICK, TICK_PER_SUBSCRIBER * self.subscribers)

    def _schedule_tick(self) -> None:
        delay = self._last_wake + self.tick_seconds() - self._loop.time()
        if delay <= 0:
            self._tick()
        else:
            self._tick_handle = self._loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        with self._lock:
            frames, self._pending = self._pending, []
            end, self._pending_end = self._pending_end, None
            self._tick_due = False
        if frames:
            chunk = Chunk(frames)
            self._chunks.append(chunk)
            self._lasts.append(chunk.last)
            self._buffered += len(frames)
            drop = 0
            while self._buffered - len(self._chunks[drop].frames) >= BUFFER_FRAMES:
                self._buffered -= len(self._chunks[drop].frames)
                drop += 1
            if drop:
                del self._chunks[:drop]
                del self._lasts[:drop]
        if end is not None:
            self.end = end
        self.wake()

    def wake(self, *, ping: bool = False) -> None:
        self._last_wake = self._loop.time()
        event, self._wake_event = self._wake_event, _Wake()
        event.ping = ping
        event.set()

    def _keepalive_due(self) -> None:
        quiet = self._loop.time() - self._last_wake
        if quiet >= KEEPALIVE_SECONDS:
            self.wake(ping=True)
            quiet = 0.0
        self._keepalive = self._loop.call_later(KEEPALIVE_SECONDS - quiet, self._keepalive_due)

    def close(self) -> None:
        """Stops the stream's timers (its last subscriber left)."""
        self._keepalive.cancel()
        if self._tick_handle is not None:
            self._tick_handle.cancel()

    def since(self, cursor: int) -> tuple[list[Chunk], bool]:
        """Chunks after ``cursor``; whether the buffer still reaches back to it."""
        if not self._chunks:
            return [], True
        covered = self._chunks[0].first <= cursor + 1
        chunks = self._chunks[bisect.bisect_right(self._lasts, cursor) :]
        if chunks and chunks[0].first <= cursor:
            chunks[0] = chunks[0].after(cursor)
        return chunks, covered

    async def wait(self) -> bool:
        """Waits for the next wake-up: True for a tick (or the server closing), False for
        the keep-alive."""
        event = self._wake_event
        await event.wait()
        return not event.ping


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
            stream.wake()

    def subscribe(self, job_id: str) -> JobStream:
        """Called on the loop."""
        assert self._loop is not None, "StreamHub.bind() must run at startup"
        with self._lock:
            stream = self._streams.get(job_id)
            if stream is None:
                stream = self._streams[job_id] = JobStream(self._loop)
            stream.subscribers += 1
            return stream

    def unsubscribe(self, job_id: str, stream: JobStream) -> None:
        """Called on the loop."""
        with self._lock:
            stream.subscribers -= 1
            if stream.subscribers > 0 or self._streams.get(job_id) is not stream:
                return
            del self._streams[job_id]
        stream.close()

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
