"""``GET /api/events/stream``: the signed-in user's job activity, live (Server-Sent Events).

History-free: a subscriber hears what commits after it connects; a dashboard loads the
current state with the ordinary list calls and keeps it current from here. Admins hear
every user's jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from spark_trainer.context import AppContext
from spark_trainer.deps import Context, StreamUser
from spark_trainer.metrics.frames import SSE_CLOSING, SSE_OPEN, SSE_PING
from spark_trainer.models import Role
from spark_trainer.routing import api_router

router = api_router(tags=["events"])

KEEPALIVE_SECONDS = 15.0
# Sent when a subscriber fell so far behind that messages were dropped: refetch.
SSE_RESYNC = b'event: resync\ndata: {"type": "resync"}\n\n'


@router.get(
    "/api/events/stream",
    summary="Stream your jobs' status changes (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
    description='One message per committed change: `{"type": "job.submitted" | '
    '"job.status" | "job.pending_reason", "job_id", "owner_id", "name", "status", '
    '"previous_status", "reason", "pending_reason", "at"}`. Your own jobs; an admin\'s '
    "stream has everyone's. No history: load the current state with `GET /api/jobs`. A "
    "named `resync` event means messages were dropped for a slow reader. Takes the token "
    "as `?access_token=` too, for `EventSource`.",
)
async def stream_events(user: StreamUser, ctx: Context) -> StreamingResponse:
    return StreamingResponse(
        _sse(ctx, user.id, sees_all=user.role == Role.ADMIN),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(ctx: AppContext, user_id: str, *, sees_all: bool) -> AsyncIterator[bytes]:
    # Subscribed before the first byte: a client that has read it misses nothing after.
    subscriber = ctx.activity.subscribe(user_id, sees_all=sees_all)
    try:
        yield SSE_OPEN
        while True:
            if ctx.hub.closing.is_set():
                yield SSE_CLOSING
                return
            wait_ready = asyncio.ensure_future(subscriber.ready.wait())
            wait_closing = asyncio.ensure_future(ctx.hub.closing.wait())
            try:
                await asyncio.wait(
                    {wait_ready, wait_closing},
                    timeout=KEEPALIVE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for waiter in (wait_ready, wait_closing):
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
            messages, overflowed = subscriber.take()
            if not messages and not overflowed:
                if not ctx.hub.closing.is_set():
                    yield SSE_PING
                continue
            head = SSE_RESYNC if overflowed else b""
            yield head + b"".join(f"data: {m}\n\n".encode() for m in messages)
    finally:
        ctx.activity.unsubscribe(subscriber)
