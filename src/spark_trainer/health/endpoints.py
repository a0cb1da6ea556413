from __future__ import annotations

from typing import Literal

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from spark_trainer.deps import Context
from spark_trainer.observability.prometheus import exposition
from spark_trainer.routing import api_router

router = api_router(tags=["health"])


class Healthy(BaseModel):
    status: str = "healthy"


_HEALTHY = Healthy()


@router.get("/healthz", response_model=Healthy, summary="Liveness: the process answers")
async def healthz() -> Healthy:
    return _HEALTHY


class Backends(BaseModel):
    database: str = Field(description='"sqlite", or the PostgreSQL URL without credentials.')
    redis: str = Field(description='"in-process" (embedded), or the Redis URL without credentials.')
    celery: str = Field(
        description='"in-process": jobs run on the API process\'s executor; in distributed '
        "mode, Celery's broker URL without credentials."
    )


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: bool
    redis: bool = Field(description="Redis, or in embedded mode its in-process stand-in.")
    celery: bool = Field(
        description="The job executor: in-process in embedded mode; in distributed mode, "
        "whether the broker answers and at least one worker answers a Celery ping."
    )
    backends: Backends
    workers: dict[str, str] = Field(
        description='Distributed mode: each registered worker node → "live" (answers a '
        'Celery ping), or the state its heartbeats left: "up" (heartbeating but not '
        'answering through the broker), "down" (stopped) or "lost" (stopped '
        "heartbeating; its jobs failed or were requeued). Embedded mode: empty."
    )


@router.get(
    "/readyz",
    summary="Readiness: every dependency answers",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is down"}},
)
async def readyz(ctx: Context) -> JSONResponse:
    checks, workers = await run_in_threadpool(ctx.dependency_status)
    ready = all(checks.values())
    body = Readiness(
        status="ready" if ready else "not ready",
        backends=Backends(**ctx.backends()),
        workers=workers,
        **checks,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


# Unauthenticated, like /healthz, for Prometheus scrapers: counts and node names only, no
# job ids, users or commands. Left out of the API document (it is not JSON).
@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(ctx: Context) -> Response:
    body = await run_in_threadpool(exposition, ctx.session_factory, ctx.hub)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
