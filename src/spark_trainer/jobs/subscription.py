"""One subscriber's view of a job's stream: stored history first, then live, then the end.

Shared by the SSE and WebSocket endpoints. The subscriber registers with the hub before
reading history, so nothing published meanwhile is missed; every message carries its
``seq``, so nothing is sent twice; and ``after`` (from ``Last-Event-ID``) resumes a
reconnecting client exactly where it left off.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from spark_trainer.context import AppContext
from spark_trainer.metrics import store
from spark_trainer.metrics.frames import Chunk, Frame, end_payload
from spark_trainer.metrics.hub import KEEPALIVE_SECONDS, JobStream
from spark_trainer.models import Job, JobStatus

HISTORY_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class Batch:
    # Consecutive chunks: read from storage, or one or more ticks of the live stream.
    chunks: list[Chunk]
    end: str | None = None
    # The server is shutting down: the stream ends here, without the job's end (a client
    # reconnects, with its last event id, to another process or after the restart).
    closing: bool = False

    @property
    def keepalive(self) -> bool:
        return not self.chunks and self.end is None and not self.closing


def _history(ctx: AppContext, job_id: str, after: int) -> list[Frame]:
    with ctx.engine.connect() as conn:
        return store.history_frames(conn, job_id, after=after, limit=HISTORY_BATCH)


def _final_end(ctx: AppContext, job_id: str) -> str | None:
    with ctx.engine.connect() as conn:
        row = conn.execute(
            select(Job.status, Job.exit_code, Job.status_reason).where(Job.id == job_id)
        ).one_or_none()
    if row is None or not JobStatus(row.status).is_final:
        return None
    return end_payload(row.status, row.exit_code, row.status_reason)


async def _quiet_end(ctx: AppContext, stream: JobStream, job_id: str) -> str | None:
    """Whether a quiet job has ended out of our sight (on another process while the bus
    was down): one database look per job and keep-alive period, whatever the number of
    subscribers, so a subscriber holds no connection once its history is sent."""
    now = time.monotonic()
    if stream.quiet_check is None or now - stream.quiet_check[0] >= KEEPALIVE_SECONDS / 2:
        stream.quiet_check = (now, None)  # claimed: the others reuse the last answer
        stream.quiet_check = (now, await run_in_threadpool(_final_end, ctx, job_id))
    return stream.quiet_check[1]


async def job_messages(ctx: AppContext, job_id: str, after: int) -> AsyncIterator[Batch]:
    stream = ctx.hub.subscribe(job_id)
    cursor = after
    try:
        while True:
            if ctx.hub.closing.is_set():
                yield Batch([], closing=True)
                return
            # Catch up from storage: at the start, and whenever this subscriber fell so far
            # behind that the live buffer no longer reaches back to it.
            while True:
                frames = await run_in_threadpool(_history, ctx, job_id, cursor)
                if frames:
                    cursor = frames[-1].seq
                    yield Batch([Chunk(frames)])
                if len(frames) < HISTORY_BATCH:
                    break
            end = await run_in_threadpool(_final_end, ctx, job_id)
            while True:
                if ctx.hub.closing.is_set():
                    yield Batch([], closing=True)
                    return
                live, covered = stream.since(cursor)
                if not covered:
                    break
                if live:
                    cursor = live[-1].last
                    yield Batch(live)
                    continue
                end = end or stream.end
                if end is not None:
                    # Everything before the end is stored by now: one last look, then close.
                    rest = await run_in_threadpool(_history, ctx, job_id, cursor)
                    if rest:
                        yield Batch([Chunk(rest)])
                    yield Batch([], end)
                    return
                if await stream.wait():
                    # A tick (whose frames the history may already have sent): back to the
                    # buffer, no keep-alive and no database query.
                    continue
                yield Batch([])
                end = await _quiet_end(ctx, stream, job_id)
    finally:
        ctx.hub.unsubscribe(job_id, stream)
