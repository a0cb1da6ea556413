"""The ASGI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from spark_trainer import __version__, docs, exception_handlers, routing, web
from spark_trainer.activity.endpoints import router as activity_router
from spark_trainer.context import AppContext
from spark_trainer.datasets.endpoints import UPLOAD_ROUTES as DATASET_UPLOAD_ROUTES
from spark_trainer.datasets.endpoints import router as datasets_router
from spark_trainer.deployments.endpoints import proxy_router as deployment_proxy_router
from spark_trainer.deployments.endpoints import router as deployments_router
from spark_trainer.deployments.proxy import ENDPOINT_PREFIX as DEPLOYMENT_ENDPOINT_PREFIX
from spark_trainer.deps import one_hop_routes
from spark_trainer.evaluations.endpoints import router as evaluations_router
from spark_trainer.experiments.endpoints import router as experiments_router
from spark_trainer.gpus.endpoints import router as gpus_router
from spark_trainer.health.endpoints import router as health_router
from spark_trainer.identity.endpoints import auth_router, users_router
from spark_trainer.jobs.endpoints import router as jobs_router
from spark_trainer.jobs.streams import router as streams_router
from spark_trainer.leaderboard.endpoints import router as leaderboard_router
from spark_trainer.middleware import (
    BodyReadTimeoutMiddleware,
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
)
from spark_trainer.registry.endpoints import UPLOAD_ROUTES as MODEL_UPLOAD_ROUTES
from spark_trainer.registry.endpoints import router as models_router
from spark_trainer.settings import Settings
from spark_trainer.studies.endpoints import router as studies_router


def _operation_id(route: APIRoute) -> str:
    # Stable, readable ids ("auth-login", "users-list_users") for the generated SDKs.
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


class _App(FastAPI):
    def include_router(self, router: APIRouter, **kwargs: Any) -> None:
        # A routing.Route solves its own dependency tree: dependencies added here would
        # not be part of it.
        if "dependencies" in kwargs:
            raise TypeError("add dependencies to the routes, not at inclusion")
        routing.check_router(router)
        # Every plain ``def`` handler runs with its commit in one thread hop (deps.one_hop).
        super().include_router(one_hop_routes(router), **kwargs)

    _described: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Inference calls to a deployment's endpoint skip the middleware stack and the
        # router, which cost most of the proxy's CPU (DeploymentProxy.dispatch).
        if scope["type"] == "http" and scope["path"].startswith(DEPLOYMENT_ENDPOINT_PREFIX):
            ctx: AppContext = self.state.ctx
            if await ctx.deployment_proxy.dispatch(scope, receive, send, ctx.settings):
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        # FastAPI caches the document (and rebuilds it when routes change); each build
        # gets its errors described once.
        schema = super().openapi()
        if schema is not self._described:
            docs.describe_errors(self, schema)
            self._described = schema
        return schema


def create_app(settings: Settings | None = None, context: AppContext | None = None) -> FastAPI:
    """Builds the API. The database must already be migrated (``bootstrap`` does it)."""
    settings = settings or Settings()
    ctx = context or AppContext.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            await ctx.deployment_proxy.aclose()
            ctx.stop()
            ctx.close()

    app = _App(
        title="SparkTrainer API",
        version=__version__,
        description="Queue, run and track GPU training jobs on your own machines.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    exception_handlers.install(app)

    app.add_middleware(BodyReadTimeoutMiddleware, timeout=settings.body_read_timeout_seconds)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        own_limit=DATASET_UPLOAD_ROUTES | MODEL_UPLOAD_ROUTES,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
        )
    app.add_middleware(RequestContextMiddleware)

    # First: matching walks the routes in order, and inference calls are the hot path.
    app.include_router(deployment_proxy_router)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(jobs_router)
    app.include_router(streams_router)
    app.include_router(activity_router)
    app.include_router(gpus_router)
    app.include_router(datasets_router)
    app.include_router(experiments_router)
    app.include_router(models_router)
    app.include_router(evaluations_router)
    app.include_router(leaderboard_router)
    app.include_router(deployments_router)
    app.include_router(studies_router)
    docs.install(app)
    # Last: the dashboard answers only what no API route does.
    web.install(app, settings.web_dir)
    return app
