"""One subscriber's view of a job's stream: stored history first, then live, then the end.

Shared by the SSE and WebSocket endpoints. The subscriber registers with the hub before
reading history, so nothing published meanwhile is missed; every message carries its
``seq``, so nothing is sent twice; and ``after`` (from ``Last-Event-ID``) resumes a
reconnecting client exactly where it left off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from spark_trainer.context import AppContext
from spark_trainer.metrics import store
from spark_trainer.metrics.frames import Frame, end_payload
from spark_trainer.models import Job, JobStatus

HISTORY_BATCH = 5_000
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Batch:
    frames: list[Frame]
    end: str | None = None

    @property
    def keepalive(self) -> bool:
        return not self.frames and self.end is None


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


async def job_messages(ctx: AppContext, job_id: str, after: int) -> AsyncIterator[Batch]:
    stream = ctx.hub.subscribe(job_id)
    cursor = after
    try:
        while True:
            # Catch up from storage: at the start, and whenever this subscriber fell so far
            # behind that the live buffer no longer reaches back to it.
            while True:
                frames = await run_in_threadpool(_history, ctx, job_id, cursor)
                if frames:
                    cursor = frames[-1].seq
                    yield Batch(frames)
                if len(frames) < HISTORY_BATCH:
                    break
            end = await run_in_threadpool(_final_end, ctx, job_id)
            while True:
                live, covered, live_end = stream.since(cursor)
                if not covered:
                    break
                if live:
                    cursor = live[-1].seq
                    yield Batch(live)
                    continue
                end = end or live_end
                if end is not None:
                    # Everything before the end is stored by now: one last look, then close.
                    rest = await run_in_threadpool(_history, ctx, job_id, cursor)
                    if rest:
                        yield Batch(rest)
                    yield Batch([], end)
                    return
                if await stream.wait(KEEPALIVE_SECONDS):
                    # Woken by a publish (whose frames an earlier pass may already have
                    # sent): back to the buffer, no keep-alive and no database query.
                    continue
                live, _, live_end = stream.since(cursor)
                if not live and live_end is None:
                    yield Batch([])
                    # A quiet stream: make sure the job has not ended out of our sight
                    # (say, on another process while the bus was down).
                    end = await run_in_threadpool(_final_end, ctx, job_id)
    finally:
        ctx.hub.unsubscribe(job_id, stream)
