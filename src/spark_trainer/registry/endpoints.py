from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header
from sqlalchemy.orm import Session

from spark_trainer.context import AppContext
from spark_trainer.deps import (
    BearerHeader,
    Context,
    CurrentUser,
    DbSession,
    UploadUser,
    authenticate_request,
    bearer_credential,
    in_session,
)
from spark_trainer.errors import PayloadTooLarge, ValidationFailed
from spark_trainer.jobs import service as jobs
from spark_trainer.kit.pagination import PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.models import User
from spark_trainer.registry import service
from spark_trainer.registry.schemas import (
    NAME_PATTERN,
    ModelDetail,
    ModelRead,
    RegisterFromJob,
    TagRequest,
)
from spark_trainer.registry.upload import ARCHIVE_FIELD, FILE_FIELD, ReceivedModel, receive_model
from spark_trainer.routing import api_router
from spark_trainer.runtime.jobfiles import JOB_TOKEN_PREFIX
from spark_trainer.storage.http import blob_response, safe_filename

router = api_router(prefix="/api/models", tags=["models"])


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


# POST /api/models streams multipart uploads far above the JSON body limit, enforcing the
# upload limit itself (and the JSON limit on JSON bodies); the app exempts it from
# BodySizeLimitMiddleware.
UPLOAD_ROUTES = frozenset({("POST", "/api/models")})

_REGISTER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            # Inline: a $ref here would name a component FastAPI never adds (no route takes
            # the model as a parameter), leaving the document with a dangling reference.
            "application/json": {"schema": RegisterFromJob.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": NAME_PATTERN},
                        "description": {"type": "string", "maxLength": 10_000},
                        FILE_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One part per file; its filename is the file's "
                            "relative path in the model.",
                        },
                        ARCHIVE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "Instead of files: one tar (.tar, .tar.gz, …) "
                            "or zip archive of the model directory.",
                        },
                    },
                }
            },
        },
    }
}


def _name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValidationFailed(f"name: must match {NAME_PATTERN}")
    return value


def _description(value: str) -> str:
    return "".join(c for c in value if c.isprintable() or c in "\n\t")


def get_model_reader(
    request: Request, ctx: Context, session: DbSession, header: BearerHeader
) -> User:
    """The caller as a user, or, for a running job's own token (``stj_…``), the job's
    owner: a job reads its owner's models (a recipe's registered base model) with it."""
    credential = header.credentials if header else bearer_credential(request)
    if credential.startswith(JOB_TOKEN_PREFIX):
        return jobs.job_token_owner(session, credential)
    return authenticate_request(request, ctx, credential)


ModelReader = Annotated[User, Depends(get_model_reader)]


@router.post(
    "",
    response_model=ModelDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Register a model: a completed job's output, or uploaded files",
    description='`application/json` `{"job_id": …, "name": …}` registers a completed '
    "job's output. `multipart/form-data` with `name`, optional `description`, and either "
    "one `file` part per file (its filename is the path inside the model) or one "
    "`archive` (tar or zip) uploads a model you already have; it has no lineage.",
    openapi_extra=_REGISTER_BODY,
    responses={
        404: {"description": "No such job"},
        409: {"description": "The job has not completed, or the version exists"},
        413: {"description": "The files exceed the upload limit"},
    },
)
async def register_model(request: Request, user: UploadUser, ctx: Context) -> ModelDetail:
    # As for datasets: the body may take minutes, and no request session is held while it
    # arrives (see deps.UploadUser); the rows are written in a short transaction after.
    kind, _ = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data":
        body = await _json_body(request, ctx.settings.max_request_bytes)
        return await in_session(ctx, lambda session: _register_from_job(body, user, ctx, session))
    upload = await receive_model(
        request,
        ctx.artifacts,
        fields={"name": _name, "description": _description},
        max_total_bytes=ctx.settings.max_upload_bytes,
        spool_dir=ctx.settings.data_dir / "uploads",
    )
    return await in_session(ctx, lambda session: _record_upload(session, user, upload))


async def _json_body(request: Request, limit: int) -> RegisterFromJob:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
    try:
        return RegisterFromJob.model_validate_json(bytes(raw))
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def _register_from_job(
    body: RegisterFromJob, user: User, ctx: AppContext, session: Session
) -> ModelDetail:
    job = jobs.get_owned(session, user, body.job_id)
    model = service.register_from_job(
        session, ctx.artifacts, job, name=body.name, description=body.description
    )
    return service.detail(session, model)


def _record_upload(session: Session, user: User, upload: ReceivedModel) -> ModelDetail:
    return service.detail(session, service.register_upload(session, user, upload))


@router.get("/{model_id}", response_model=ModelDetail, summary="A model version, with lineage")
def get_model(model_id: str, user: ModelReader, session: DbSession) -> ModelDetail:
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
    user: ModelReader,
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
