from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response, status

from spark_trainer.datasets import service
from spark_trainer.datasets.schemas import (
    NAME_PATTERN,
    DatasetDetail,
    DatasetRead,
    DatasetVersionList,
    validate_name,
)
from spark_trainer.datasets.upload import receive_upload
from spark_trainer.deps import Context, CurrentUser, DbSession, UploadUser, in_session
from spark_trainer.kit.pagination import PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.models import User
from spark_trainer.registry.endpoints import get_model_reader
from spark_trainer.routing import api_router
from spark_trainer.storage.http import blob_response

router = api_router(prefix="/api/datasets", tags=["datasets"])

# The caller, or for a running job's own token its owner: a recipe reads the dataset its
# config names by id the way it reads a registered base model.
DatasetReader = Annotated[User, Depends(get_model_reader)]

# Routes that stream bodies far above the JSON body limit and enforce a limit of their own
# (SPARKTRAINER_MAX_UPLOAD_BYTES); the app exempts them from BodySizeLimitMiddleware.
UPLOAD_ROUTES = frozenset({("POST", "/api/datasets")})

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "file"],
                    "properties": {
                        "name": {"type": "string", "pattern": NAME_PATTERN},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}


@router.get("", response_model=Page[DatasetRead], summary="List datasets, newest first")
def list_datasets(
    user: CurrentUser,
    session: DbSession,
    paging: PagingParams,
    name: Annotated[str | None, Query(max_length=128, description="Only this name")] = None,
) -> Page[DatasetRead]:
    items, total = service.list_datasets(
        session, user, name=name, limit=paging.limit, offset=paging.offset
    )
    return Page[DatasetRead].of(items, total, paging)


@router.post(
    "",
    response_model=DatasetDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a dataset, or a new version of one",
    description="Multipart form with `name` and `file` (`curl -F name=my-dataset "
    "-F file=@dataset.jsonl`). A name you already have gets its next version (v1.1.0, "
    "v1.2.0, …), answered 201 like a new dataset; a file identical to the latest version "
    "adds nothing and answers 200. Files above SPARKTRAINER_MAX_UPLOAD_BYTES answer 413.",
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": DatasetDetail, "description": "Same bytes as the latest version"},
        413: {"description": "The file exceeds the upload limit"},
    },
)
async def upload_dataset(
    request: Request, response: Response, user: UploadUser, ctx: Context
) -> DatasetDetail:
    # No request session while the body arrives (see deps.UploadUser): the rows are
    # written once the file is stored, in a short transaction of their own.
    upload = await receive_upload(
        request,
        ctx.artifacts,
        fields={"name": validate_name},
        max_file_bytes=ctx.settings.max_upload_bytes,
    )
    outcome = await in_session(ctx, lambda session: service.record_upload(session, user, upload))
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    return outcome.dataset


@router.get(
    "/{dataset_id}",
    response_model=DatasetDetail,
    summary="A dataset, with its latest version's format, size, record count and preview",
)
def get_dataset(dataset_id: str, user: DatasetReader, session: DbSession) -> DatasetDetail:
    return service.detail(session, user, dataset_id)


@router.get(
    "/{dataset_id}/versions",
    response_model=DatasetVersionList,
    summary="A dataset's versions with their DVC (md5) hashes, oldest first",
)
def list_versions(dataset_id: str, user: DatasetReader, session: DbSession) -> DatasetVersionList:
    return service.versions(session, user, dataset_id)


@router.get(
    "/{dataset_id}/versions/{version}/download",
    summary="Download a version's file",
    description="`version` is `v1.0.0`, … or `latest`. Streams the file; a single "
    "`Range: bytes=…` range answers 206 with `Content-Range`, one outside the file 416.",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        206: {"content": {"application/octet-stream": {}}, "description": "The range asked"},
        416: {"description": "The range lies outside the file"},
    },
)
def download_version(
    dataset_id: str,
    version: str,
    request: Request,
    user: DatasetReader,
    ctx: Context,
    session: DbSession,
) -> Response:
    found = service.download(session, user, dataset_id, version)
    return blob_response(
        ctx.artifacts,
        found.hash,
        found.size,
        range_header=request.headers.get("range"),
        filename=found.filename,
    )
