"""Live job metrics: SSE at ``/api/jobs/{id}/stream`` and WebSocket at ``/ws/jobs/{id}/stream``.

Each message is one metrics object as the spec shows it. SSE events carry ``id: <seq>`` so
``Last-Event-ID`` resumes without gaps or duplicates; when the job ends, SSE sends a named
``end`` event and WebSocket a final ``{"event": "end", ...}`` message, then both close.
Browsers cannot set headers on either, so both accept ``?access_token=…``. WebSocket resumes
with ``?after=<seq>``; ``?ids=true`` sends each point's seq with it; ``?batch=true`` sends
the points of one wake-up as one message, a JSON array of what would otherwise be one
message each (the end stays a single object).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Query, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from spark_trainer.context import AppContext
from spark_trainer.deps import Context, DbSession, StreamUser, count_request
from spark_trainer.errors import SparkTrainerError, Unauthorized, ValidationFailed
from spark_trainer.jobs import service
from spark_trainer.jobs.subscription import job_messages
from spark_trainer.kit.pagination import MAX_INT64
from spark_trainer.metrics.frames import (
    SSE_CLOSING,
    SSE_OPEN,
    SSE_PING,
    array_of,
    sse_end,
    sse_of,
)
from spark_trainer.routing import TEXT_RULE, api_router

router = api_router(tags=["jobs"])


@router.get(
    "/api/jobs/{job_id}/stream",
    summary="Stream a job's metrics (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
)
def stream_job(
    job_id: str,
    user: StreamUser,
    ctx: Context,
    session: DbSession,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_INT64, description="Resume after this event id")
    ] = None,
) -> StreamingResponse:
    cursor = after if after is not None else _event_id(last_event_id, "Last-Event-ID")
    service.get_owned(session, user, job_id)
    return StreamingResponse(
        _sse(ctx, job_id, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event_id(value: str | None, field: str) -> int:
    if not value:
        return 0
    try:
        parsed = int(value)
    except ValueError:
        parsed = -1
    if not 0 <= parsed <= MAX_INT64:
        raise ValidationFailed(f"{field}: must be an event id from 0 to {MAX_INT64}")
    return parsed


async def _sse(ctx: AppContext, job_id: str, cursor: int) -> AsyncIterator[bytes]:
    yield SSE_OPEN
    async for batch in job_messages(ctx, job_id, cursor):
        if batch.closing:
            # A clean end of the response; the browser reconnects after `retry`, with
            # Last-Event-ID, and loses nothing.
            yield SSE_CLOSING
        elif batch.keepalive:
            yield SSE_PING
        elif batch.end is not None:
            yield sse_end(batch.end)
        else:
            # Every frame of this wake-up in one write, encoded once for every subscriber.
            yield sse_of(batch.chunks)


def _authorize_socket(ctx: AppContext, websocket: WebSocket, job_id: str) -> int:
    """Authenticates and counts the connection like any request; answers the cursor."""
    cursor = _event_id(websocket.query_params.get("after"), "after")
    credential = websocket.query_params.get("access_token")
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        credential = header[7:].strip()
    if not credential:
        raise Unauthorized("Missing access_token")
    user = ctx.users.get(credential)
    with ctx.session_factory() as session:
        count_request(ctx, user)
        service.get_owned(session, user, job_id)
    return cursor


@router.websocket("/ws/jobs/{job_id}/stream", dependencies=[TEXT_RULE])
async def stream_job_ws(websocket: WebSocket, job_id: str) -> None:
    ctx: AppContext = websocket.app.state.ctx
    try:
        cursor = await run_in_threadpool(_authorize_socket, ctx, websocket, job_id)
    except SparkTrainerError as exc:
        # 1008 policy violation: the handshake is refused before any data is sent (a
        # rate-limited user too, with the limit's message as the reason).
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    # `?ids=true` wraps each point as {"id": <seq>, "data": {...}}: a WebSocket message has no
    # id field of its own, and a client needs the seq to resume with `?after=` (or SSE's
    # Last-Event-ID) without repeating or skipping a point.
    with_ids = _flag(websocket, "ids")
    # `?batch=true`: one message (one socket write) per wake-up instead of one per point.
    batched = _flag(websocket, "batch")
    await websocket.accept()
    try:
        async for batch in job_messages(ctx, job_id, cursor):
            if batch.closing:
                # 1012 "service restart": clients reconnect (with ?after=<last seq>).
                await websocket.close(code=1012, reason="server shutting down")
                return
            if batch.end is not None:
                await websocket.send_text(batch.end)
                await websocket.close(code=1000, reason="job ended")
                return
            if batch.keepalive:
                continue  # the protocol's own pings keep a WebSocket alive
            if batched:
                await websocket.send_text(array_of(batch.chunks, with_ids=with_ids))
                continue
            for chunk in batch.chunks:
                for frame in chunk.frames:
                    await websocket.send_text(frame.with_id if with_ids else frame.data)
    except WebSocketDisconnect:
        return


def _flag(websocket: WebSocket, name: str) -> bool:
    return websocket.query_params.get(name, "").lower() in {"1", "true"}
