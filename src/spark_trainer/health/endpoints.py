from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from spark_trainer.deps import Context

router = APIRouter(tags=["health"])


class Healthy(BaseModel):
    status: str = "healthy"


_HEALTHY = Healthy()


@router.get("/healthz", response_model=Healthy, summary="Liveness: the process answers")
async def healthz() -> Healthy:
    return _HEALTHY


@router.get(
    "/readyz",
    summary="Readiness: every dependency in use answers",
    responses={503: {"description": "A dependency is down"}},
)
async def readyz(ctx: Context) -> JSONResponse:
    checks: dict[str, Any] = await run_in_threadpool(ctx.dependency_status)
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", **checks},
        status_code=200 if ready else 503,
    )
