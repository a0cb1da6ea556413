from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import StreamingResponse

from spark_trainer.deps import Context, CurrentUser, DbSession
from spark_trainer.jobs import service as jobs
from spark_trainer.kit.pagination import PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.registry import service
from spark_trainer.registry.schemas import (
    ModelDetail,
    ModelRead,
    RegisterFromJob,
    TagRequest,
)
from spark_trainer.storage.http import blob_response, safe_filename

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=Page[ModelRead], summary="List model versions, newest first")
def list_models(
    user: CurrentUser,
    session: DbSession,
    paging: PagingParams,
    name: Annotated[str | None, Query(max_length=200, description="Versions of this model")] = None,
    tag: Annotated[
        str | None, Query(max_length=64, description="Only the version tagged so")
    ] = None,
) -> Page[ModelRead]:
    models, total = service.list_models(
        session, user, name=name, tag=tag, limit=paging.limit, offset=paging.offset
    )
    return Page[ModelRead].of([service.read(m) for m in models], total, paging)


@router.post(
    "",
    response_model=ModelDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Register a completed job's output as a new model version",
    responses={409: {"description": "The job has not completed"}},
)
def register_model(
    body: RegisterFromJob, user: CurrentUser, ctx: Context, session: DbSession
) -> ModelDetail:
    job = jobs.get_owned(session, user, body.job_id)
    model = service.register_from_job(
        session, ctx.artifacts, job, name=body.name, description=body.description
    )
    return service.detail(session, model)


@router.get("/{model_id}", response_model=ModelDetail, summary="A model version, with lineage")
def get_model(model_id: str, user: CurrentUser, session: DbSession) -> ModelDetail:
    return service.detail(session, service.get_owned(session, user, model_id))


@router.post(
    "/{model_id}/tag",
    response_model=ModelDetail,
    summary="Tag a model version",
    description="A tag names at most one version of a model name: tagging another version "
    "moves the tag there.",
)
def tag_model(
    model_id: str, body: TagRequest, user: CurrentUser, session: DbSession
) -> ModelDetail:
    model = service.get_owned(session, user, model_id)
    return service.detail(session, service.tag(session, model, body.tag))


@router.delete("/{model_id}/tag/{tag}", response_model=ModelDetail, summary="Remove a tag")
def untag_model(model_id: str, tag: str, user: CurrentUser, session: DbSession) -> ModelDetail:
    model = service.get_owned(session, user, model_id)
    return service.detail(session, service.untag(session, model, tag))


@router.get(
    "/{model_id}/files/{path:path}",
    summary="Download one of a model version's files",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "Range"}},
)
def download_model_file(
    model_id: str,
    path: str,
    user: CurrentUser,
    ctx: Context,
    session: DbSession,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> StreamingResponse:
    model = service.get_owned(session, user, model_id)
    model_file = service.find_file(model, path)
    return blob_response(
        ctx.artifacts,
        model_file.hash,
        model_file.size,
        range_header=range_header,
        filename=safe_filename(model_file.path, "model-file"),
    )
