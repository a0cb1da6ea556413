from __future__ import annotations

from typing import Annotated

from fastapi import Query, status

from spark_trainer.deps import Context, CurrentUser, DbSession
from spark_trainer.evaluations import service
from spark_trainer.evaluations.schemas import EvaluationCreate, EvaluationRead
from spark_trainer.kit.pagination import PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.models import Benchmark
from spark_trainer.routing import api_router

router = api_router(prefix="/api/evaluations", tags=["evaluations"])


@router.get("", response_model=Page[EvaluationRead], summary="List evaluations, newest first")
def list_evaluations(
    user: CurrentUser,
    session: DbSession,
    paging: PagingParams,
    model_id: Annotated[str | None, Query(max_length=40)] = None,
    benchmark: Benchmark | None = None,
) -> Page[EvaluationRead]:
    items, total = service.list_evaluations(
        session,
        user,
        model_id=model_id,
        benchmark=benchmark,
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page[EvaluationRead].of(service.read_many(session, items), total, paging)


@router.post(
    "",
    response_model=EvaluationRead,
    status_code=status.HTTP_201_CREATED,
    summary="Run a benchmark on a model, as a job",
    responses={404: {"description": "The model or a dataset named in config"}},
)
def create_evaluation(
    body: EvaluationCreate, user: CurrentUser, ctx: Context, session: DbSession
) -> EvaluationRead:
    evaluation = service.create(session, ctx.jobs, ctx.artifacts, user, body, ctx.settings.api_url)
    return service.read(session, evaluation)


@router.get("/{evaluation_id}", response_model=EvaluationRead, summary="An evaluation's results")
def get_evaluation(evaluation_id: str, user: CurrentUser, session: DbSession) -> EvaluationRead:
    return service.read(session, service.get_owned(session, user, evaluation_id))
