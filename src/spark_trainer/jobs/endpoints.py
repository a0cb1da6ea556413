from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from spark_trainer.context import AppContext
from spark_trainer.deps import (
    BearerHeader,
    Context,
    CurrentReader,
    CurrentUser,
    DbSession,
    authenticate_request_async,
    bearer_credential,
)
from spark_trainer.errors import BadRequest
from spark_trainer.jobs import service
from spark_trainer.jobs.schemas import (
    JobCreate,
    JobDetail,
    JobRead,
    MetricsAccepted,
    MetricsHistory,
    MetricsIngest,
)
from spark_trainer.kit.pagination import MAX_INT64, PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.metrics import store
from spark_trainer.metrics.pipeline import InvalidPoint, parse_points
from spark_trainer.models import Job, JobStatus
from spark_trainer.routing import Route, api_router
from spark_trainer.runtime.jobfiles import JOB_TOKEN_PREFIX

router = api_router(prefix="/api/jobs", tags=["jobs"])

MAX_LOG_BYTES = 8 * 1024 * 1024


@router.post(
    "",
    response_model=JobRead,
    status_code=status.HTTP_201_CREATED,
    summary="Submit a job",
    responses={404: {"description": "No such experiment or dataset (version) of yours"}},
)
def submit_job(body: JobCreate, user: CurrentUser, ctx: Context, session: DbSession) -> JobRead:
    job = service.submit(session, ctx.jobs, user, body)
    return service.read(session, job)


@router.get("", response_model=Page[JobRead], summary="List jobs, newest first")
async def list_jobs(
    reader: CurrentReader,
    paging: PagingParams,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
) -> Response:
    return await reader.respond(
        partial(service.job_page, viewer=reader.viewer, status=status, paging=paging)
    )


@router.get("/{job_id}", response_model=JobDetail, summary="A job, with its status history")
async def get_job(job_id: str, reader: CurrentReader) -> Response:
    return await reader.respond(partial(service.job_detail, viewer=reader.viewer, job_id=job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    summary="Cancel a job",
    description="A pending job is cancelled at once. A running job gets SIGTERM on its whole "
    "process group, then SIGKILL after the grace period; the answer comes when it has exited "
    "or after 5 s, whichever is first. A job that has already ended answers 409.",
    responses={409: {"description": "The job has already ended"}},
)
def cancel_job(job_id: str, user: CurrentUser, ctx: Context, session: DbSession) -> JobRead:
    return service.read(session, service.cancel(session, ctx.jobs, user, job_id))


@router.get(
    "/{job_id}/logs",
    summary="A job's stdout or stderr",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "The log text"}},
    description="Plain text. `offset` reads from a byte offset, `tail` the last lines. "
    "`X-Log-Offset` gives where the text starts and `X-Log-Next-Offset` where to continue. "
    "`follow=true` keeps the response open and streams new output until the job ends.",
)
def job_logs(
    job_id: str,
    user: CurrentUser,
    ctx: Context,
    session: DbSession,
    stream: Annotated[service.LogStream, Query()] = "stdout",
    offset: Annotated[
        int | None, Query(ge=0, le=MAX_INT64, description="Byte offset to read from")
    ] = None,
    tail: Annotated[
        int | None, Query(ge=1, le=100_000, description="Only the last N lines")
    ] = None,
    follow: Annotated[bool, Query(description="Stream new output until the job ends")] = False,
) -> Response:
    if offset is not None and tail is not None:
        raise BadRequest("offset and tail cannot be combined")
    job = service.get_owned(session, user, job_id)
    path = service.log_path(job, stream)
    content, start, _ = service.read_log(
        path, offset=offset, tail_lines=tail, max_bytes=MAX_LOG_BYTES
    )
    headers = {"X-Log-Offset": str(start), "X-Log-Next-Offset": str(start + len(content))}
    if not follow:
        return Response(content, media_type="text/plain; charset=utf-8", headers=headers)
    return StreamingResponse(
        _follow(ctx, job_id, stream, content, start + len(content)),
        media_type="text/plain; charset=utf-8",
        headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow(
    ctx: AppContext,
    job_id: str,
    stream: service.LogStream,
    first: bytes,
    offset: int,
) -> AsyncIterator[bytes]:
    if first:
        yield first
    while not ctx.hub.closing.is_set():  # a shutdown ends the follow, cleanly
        job_path, finished = await run_in_threadpool(
            _log_state, ctx.session_factory, job_id, stream
        )
        content, start, _ = await run_in_threadpool(
            service.read_log, job_path, offset=offset, tail_lines=None, max_bytes=MAX_LOG_BYTES
        )
        if content:
            offset = start + len(content)
            yield content
            continue
        if finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.hub.closing.wait(), service.LOG_POLL_SECONDS)


def _log_state(
    session_factory: sessionmaker[Session], job_id: str, stream: service.LogStream
) -> tuple[Path | None, bool]:
    with session_factory() as session:
        job = session.get_one(Job, job_id)
        return service.log_path(job, stream), JobStatus(job.status).is_final


@router.get(
    "/{job_id}/metrics",
    summary="A job's stored metrics, whole or downsampled",
    response_class=Response,
    responses={200: {"model": MetricsHistory}},
    description="Column-oriented series per metric name. `max_points` downsamples on the "
    "server, keeping each bucket's minimum and maximum so spikes stay visible. `last_seq` "
    "is the newest stored point's event id when the read began: a stream opened with "
    "`?after=<last_seq>` continues this history without gaps (a point may come twice).",
)
def job_metrics(
    job_id: str,
    user: CurrentUser,
    ctx: Context,
    session: DbSession,
    name: Annotated[list[str] | None, Query(description="Metric names (repeatable)")] = None,
    step_min: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
    step_max: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
    max_points: Annotated[int | None, Query(ge=2, le=100_000)] = None,
) -> Response:
    job = service.get_owned(session, user, job_id)
    with ctx.engine.connect() as conn:
        # Read first: points stored meanwhile may then come twice, but never not at all.
        seq = store.last_seq(conn, job.id)
        names = name or store.metric_names(conn, job.id)
        series = store.read_series(
            conn, job.id, names, step_min=step_min, step_max=step_max, max_points=max_points
        )
    # Serialized straight from the columns: a million points would spend most of their
    # time in per-item validation otherwise.
    payload = {
        "job_id": job.id,
        "last_seq": seq,
        "metrics": [
            {
                "name": s.name,
                "count": s.count,
                "downsampled": s.downsampled,
                "steps": s.steps,
                "values": s.values,
                "wall_times": s.wall_times,
            }
            for s in series
        ],
    }
    return Response(orjson.dumps(payload), media_type="application/json")


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # orjson's error is a json.JSONDecodeError: FastAPI answers it as any other.
            self._json = orjson.loads(await self.body())
        return self._json


class _OrjsonRoute(Route):
    """Decodes the body with orjson: for a batch of metric points, the standard library's
    decoder took a quarter of the request's time."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decoding(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return decoding


# A coroutine: nothing here blocks. The job's state is read, and the points stored, by the
# metrics writer for a whole group of concurrent requests at once (group commit).
async def ingest_metrics(
    job_id: str,
    body: MetricsIngest,
    request: Request,
    ctx: Context,
    header: BearerHeader,
) -> MetricsAccepted:
    # A job token is checked before the job is looked up, and a user's credential before
    # anything: an unknown job id answers like any failed authentication.
    credential = header.credentials if header else bearer_credential(request)
    user = (
        None
        if credential.startswith(JOB_TOKEN_PREFIX)
        else await authenticate_request_async(request, ctx, credential)
    )
    authorize = service.ingest_authorizer(job_id, credential, user)
    try:
        # The points as decoded: validating them as models cost more than storing them.
        points = parse_points(body.points, now=time.time())
    except InvalidPoint as exc:
        # Who may not post here at all learns that first, as before any other check.
        await ctx.jobs.pipeline.submit(job_id, [], authorize)
        raise BadRequest(str(exc)) from None
    frames = await ctx.jobs.pipeline.submit(job_id, points, authorize)
    return MetricsAccepted(accepted=len(frames), last_seq=frames[-1].seq)


router.add_api_route(
    "/{job_id}/metrics",
    ingest_metrics,
    methods=["POST"],
    route_class_override=_OrjsonRoute,
    response_model=MetricsAccepted,
    summary="Report metric points for a running job",
    description="For jobs that run outside SparkTrainer's executor. Authenticate with the "
    "job's own token (`SPARKTRAINER_JOB_TOKEN`, `stj_…`) or as the job's owner. A 200 "
    "means every point is stored. A 503 means none was (the event bus or the database is "
    "unavailable): retry it.",
    responses={
        409: {"description": "The job is not running"},
        503: {"description": "The event bus (Redis) or the database is down; nothing was stored"},
    },
)
