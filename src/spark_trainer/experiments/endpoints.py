from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

import orjson
from fastapi import Query, Response, status
from pydantic import StringConstraints

from spark_trainer.deps import CurrentReader, CurrentUser, DbSession, read_on_loop
from spark_trainer.experiments import service
from spark_trainer.experiments.schemas import (
    ExperimentCreate,
    ExperimentDetail,
    ExperimentMetrics,
    ExperimentRead,
    RunRead,
)
from spark_trainer.experiments.service import RUN_SORT_PATTERN, TAG_FILTER_PATTERN
from spark_trainer.kit.pagination import MAX_INT64, PagingParams
from spark_trainer.kit.schemas import Page
from spark_trainer.routing import api_router

router = api_router(prefix="/api/experiments", tags=["experiments"])


@router.get("", response_model=Page[ExperimentRead], summary="List experiments, newest first")
@read_on_loop
def list_experiments(
    user: CurrentUser,
    session: DbSession,
    paging: PagingParams,
    name: Annotated[str | None, Query(max_length=200, description="Name contains")] = None,
    tag: Annotated[
        list[Annotated[str, StringConstraints(pattern=TAG_FILTER_PATTERN)]] | None,
        Query(description="key:value; repeat to require several tags"),
    ] = None,
) -> Page[ExperimentRead]:
    experiments, total = service.list_experiments(
        session,
        user,
        name=name,
        tags=service.parse_tag_filters(tag or []),
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page[ExperimentRead].of(
        [ExperimentRead.model_validate(e) for e in experiments], total, paging
    )


@router.post(
    "",
    response_model=ExperimentRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create an experiment",
    responses={409: {"description": "You already have an experiment of that name"}},
)
def create_experiment(
    body: ExperimentCreate, user: CurrentUser, session: DbSession
) -> ExperimentRead:
    return ExperimentRead.model_validate(service.create(session, user, body))


@router.get("/{experiment_id}", response_model=ExperimentDetail, summary="An experiment")
@read_on_loop
def get_experiment(experiment_id: str, user: CurrentUser, session: DbSession) -> ExperimentDetail:
    return service.detail(session, service.get_owned(session, user, experiment_id))


@router.get(
    "/{experiment_id}/runs",
    response_model=Page[RunRead],
    summary="The experiment's runs, side by side",
    description="Each run is a job submitted with this `experiment_id`, with its parameters "
    "and the latest and best value of every metric it logged. `sort` is `created_at` "
    "(default), `started_at`, `finished_at`, `name`, `status` or `metric:<name>`, which "
    "orders by the metric's best value, best first unless `order` says otherwise.",
)
async def list_runs(
    experiment_id: str,
    reader: CurrentReader,
    paging: PagingParams,
    sort: Annotated[str, Query(max_length=140, pattern=RUN_SORT_PATTERN)] = "created_at",
    order: Annotated[Literal["asc", "desc"] | None, Query()] = None,
) -> Response:
    return await reader.respond(
        partial(
            service.run_page,
            viewer=reader.viewer,
            experiment_id=experiment_id,
            sort=sort,
            order=order,
            paging=paging,
        )
    )


@router.get(
    "/{experiment_id}/metrics",
    summary="Several runs' metrics in one request, for comparison",
    response_class=Response,
    responses={200: {"model": ExperimentMetrics}},
    description="For each run (the `job_ids` given, or the experiment's first 50), the "
    "`name`d metrics as column-oriented series like `GET /api/jobs/{id}/metrics`. "
    "`max_points` downsamples each series on the server, keeping each bucket's minimum and "
    "maximum. A job id that is not a run of this experiment answers 404.",
)
def experiment_metrics(
    experiment_id: str,
    user: CurrentUser,
    session: DbSession,
    name: Annotated[list[str], Query(min_length=1, description="Metric names (repeatable)")],
    job_ids: Annotated[
        list[str] | None, Query(description="Runs to compare (repeatable); default: all")
    ] = None,
    step_min: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
    step_max: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
    max_points: Annotated[int | None, Query(ge=2, le=100_000)] = None,
) -> Response:
    experiment = service.get_owned(session, user, experiment_id)
    payload = service.run_metrics(
        session,
        experiment,
        names=name,
        job_ids=job_ids,
        step_min=step_min,
        step_max=step_max,
        max_points=max_points,
    )
    return Response(orjson.dumps(payload), media_type="application/json")
