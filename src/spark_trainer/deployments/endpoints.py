from __future__ import annotations

from fastapi import Request, Response, status
from fastapi.responses import StreamingResponse

from spark_trainer.deployments import service
from spark_trainer.deployments.schemas import (
    DeploymentCreate,
    DeploymentKeyCreate,
    DeploymentKeyCreated,
    DeploymentKeyRead,
    DeploymentRead,
    DeploymentUpdate,
)
from spark_trainer.deps import Context, CurrentUser, DbSession, bearer_credential
from spark_trainer.kit.pagination import PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.routing import api_router

router = api_router(prefix="/api/deployments", tags=["deployments"])
# The endpoint's routes on a router of their own. Most calls never reach them:
# ``DeploymentProxy.dispatch`` serves the endpoint ahead of the middleware and router;
# these serve what it leaves to the app (cross-origin calls when CORS is configured, a
# ``root_path``) and describe the endpoint in the API document.
proxy_router = api_router(prefix="/api/deployments", tags=["deployments"])


@router.get("", response_model=Page[DeploymentRead], summary="List deployments, newest first")
def list_deployments(
    user: CurrentUser, ctx: Context, session: DbSession, paging: PagingParams
) -> Page[DeploymentRead]:
    items, total = service.list_deployments(session, user, limit=paging.limit, offset=paging.offset)
    rates = ctx.deployment_proxy.rates.rates(session, [d.id for d in items])
    reads = [service.read(session, d, ctx.settings.api_url, rates[d.id]) for d in items]
    return Page[DeploymentRead].of(reads, total, paging)


@router.post(
    "",
    response_model=DeploymentRead,
    status_code=status.HTTP_201_CREATED,
    summary="Deploy a registered model",
    description="Starts `replicas` long-running jobs serving the model with `backend`, behind "
    "one endpoint. A backend whose executable is missing on the node fails the deployment "
    "at once, with that reason.",
    responses={404: {"description": "No such model"}},
)
def create_deployment(
    body: DeploymentCreate, user: CurrentUser, ctx: Context, session: DbSession
) -> DeploymentRead:
    deployment = service.create(
        session, ctx.jobs, ctx.artifacts, user, body, ctx.deployment_supervisor.wake
    )
    return service.read(session, deployment, ctx.settings.api_url, 0.0)


@router.get("/{deployment_id}", response_model=DeploymentRead, summary="A deployment's status")
def get_deployment(
    deployment_id: str, user: CurrentUser, ctx: Context, session: DbSession
) -> DeploymentRead:
    deployment = service.get_owned(session, user, deployment_id)
    rate = ctx.deployment_proxy.rates.rate(session, deployment.id)
    return service.read(session, deployment, ctx.settings.api_url, rate)


@router.patch(
    "/{deployment_id}",
    response_model=DeploymentRead,
    summary="Scale a deployment",
    description="New replicas get requests once healthy; replicas scaled away get no new "
    "requests, finish the ones they have, then stop.",
    responses={409: {"description": "The deployment is stopping or has ended"}},
)
def scale_deployment(
    deployment_id: str,
    body: DeploymentUpdate,
    user: CurrentUser,
    ctx: Context,
    session: DbSession,
) -> DeploymentRead:
    deployment = service.scale(
        session, user, deployment_id, body.replicas, ctx.deployment_supervisor.wake
    )
    rate = ctx.deployment_proxy.rates.rate(session, deployment.id)
    return service.read(session, deployment, ctx.settings.api_url, rate)


@router.delete(
    "/{deployment_id}",
    response_model=DeploymentRead,
    summary="Stop a deployment",
    description="Every replica stops gracefully (in-flight requests finish) and its GPUs are "
    "freed; the status goes `stopping` → `stopped`.",
)
def stop_deployment(
    deployment_id: str, user: CurrentUser, ctx: Context, session: DbSession
) -> DeploymentRead:
    deployment = service.stop(session, user, deployment_id, ctx.deployment_supervisor.wake)
    rate = ctx.deployment_proxy.rates.rate(session, deployment.id)
    return service.read(session, deployment, ctx.settings.api_url, rate)


@router.post(
    "/{deployment_id}/keys",
    response_model=DeploymentKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a key that calls this deployment's endpoint only",
)
def create_deployment_key(
    deployment_id: str, body: DeploymentKeyCreate, user: CurrentUser, session: DbSession
) -> DeploymentKeyCreated:
    return service.create_key(session, user, deployment_id, body.name)


@router.get(
    "/{deployment_id}/keys",
    response_model=list[DeploymentKeyRead],
    summary="The deployment's keys (never their secrets)",
)
def list_deployment_keys(
    deployment_id: str, user: CurrentUser, session: DbSession
) -> list[DeploymentKeyRead]:
    return service.list_keys(session, user, deployment_id)


@router.delete(
    "/{deployment_id}/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a deployment key",
)
def revoke_deployment_key(
    deployment_id: str, key_id: str, user: CurrentUser, session: DbSession
) -> Response:
    service.revoke_key(session, user, deployment_id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


_PROXY_DESCRIPTION = (
    "The deployment's endpoint: forwarded to a healthy replica (OpenAI API under `/v1`, "
    "Triton's KServe API under `/v2`), streamed back as produced. Takes the owner's token "
    "or API key, or a deployment key."
)


@proxy_router.get(
    "/{deployment_id}/v1/{path:path}",
    summary="Call the deployment (OpenAI-compatible API)",
    description=_PROXY_DESCRIPTION,
    response_class=StreamingResponse,
    operation_id="deployments-call_deployment_get",
)
@proxy_router.post(
    "/{deployment_id}/v1/{path:path}",
    summary="Call the deployment (OpenAI-compatible API)",
    description=_PROXY_DESCRIPTION,
    response_class=StreamingResponse,
    operation_id="deployments-call_deployment_post",
)
async def call_deployment(
    deployment_id: str, path: str, request: Request, ctx: Context
) -> Response:
    credential = bearer_credential(request)
    return await ctx.deployment_proxy.forward(request, credential, deployment_id, f"v1/{path}")


@proxy_router.get(
    "/{deployment_id}/v2/{path:path}",
    summary="Call the deployment (Triton's KServe v2 API)",
    description=_PROXY_DESCRIPTION,
    response_class=StreamingResponse,
    operation_id="deployments-call_deployment_v2_get",
)
@proxy_router.post(
    "/{deployment_id}/v2/{path:path}",
    summary="Call the deployment (Triton's KServe v2 API)",
    description=_PROXY_DESCRIPTION,
    response_class=StreamingResponse,
    operation_id="deployments-call_deployment_v2_post",
)
async def call_deployment_v2(
    deployment_id: str, path: str, request: Request, ctx: Context
) -> Response:
    credential = bearer_credential(request)
    return await ctx.deployment_proxy.forward(request, credential, deployment_id, f"v2/{path}")
