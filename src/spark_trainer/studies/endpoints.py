from __future__ import annotations

from fastapi import status

from spark_trainer.deps import Context, CurrentUser, DbSession
from spark_trainer.kit.pagination import PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.routing import api_router
from spark_trainer.studies import service
from spark_trainer.studies.schemas import StudyCreate, StudyDetail, StudyRead

router = api_router(prefix="/api/hpo/studies", tags=["hpo"])


@router.get("", response_model=Page[StudyRead], summary="List HPO studies, newest first")
def list_studies(user: CurrentUser, session: DbSession, paging: PagingParams) -> Page[StudyRead]:
    items, total = service.list_studies(session, user, limit=paging.limit, offset=paging.offset)
    return Page[StudyRead].of(items, total, paging)


@router.post(
    "",
    response_model=StudyDetail,
    status_code=status.HTTP_201_CREATED,
    summary="Create an HPO study",
    description="Each trial runs `command` as a job, with `@@name@@` replaced by the trial's "
    "value of parameter `name`; the trial reports `metric` with `sparktrainer.log()`.",
)
def create_study(
    body: StudyCreate, user: CurrentUser, session: DbSession, ctx: Context
) -> StudyDetail:
    study = service.create(session, ctx.jobs, user, body, ctx.wake_studies)
    return service.detail(session, study)


@router.get("/{study_id}", response_model=StudyDetail, summary="A study, with its trials")
def get_study(study_id: str, user: CurrentUser, session: DbSession) -> StudyDetail:
    return service.detail(session, service.get_owned(session, user, study_id))


@router.post(
    "/{study_id}/cancel",
    response_model=StudyDetail,
    summary="Cancel a study",
    description="Cancels its pending trials and stops its running ones.",
    responses={409: {"description": "The study has already ended"}},
)
def cancel_study(study_id: str, user: CurrentUser, session: DbSession, ctx: Context) -> StudyDetail:
    study = service.cancel(session, ctx.jobs, user, study_id)
    return service.detail(session, study)
