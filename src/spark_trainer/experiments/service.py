"""Experiments: named groups of runs, and the side-by-side view of those runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spark_trainer.db.reads import ReadConnection
from spark_trainer.errors import BadRequest, Conflict, NotFound, resource_not_found
from spark_trainer.experiments.repository import (
    RUN_SORT_COLUMNS,
    ExperimentRepository,
    ExperimentRows,
)
from spark_trainer.experiments.schemas import (
    ExperimentCreate,
    ExperimentDetail,
    ExperimentRead,
)
from spark_trainer.identity import service as identity
from spark_trainer.identity.viewer import Viewer
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.kit.pagination import Paging, page_payload
from spark_trainer.kit.time import utcnow
from spark_trainer.metrics import store
from spark_trainer.models import Experiment, User

METRIC_SORT_PREFIX = "metric:"
# Declared on the query parameters, so the OpenAPI document states what is enforced.
RUN_SORT_PATTERN = "^(" + "|".join([*RUN_SORT_COLUMNS, METRIC_SORT_PREFIX + ".+"]) + ")$"
TAG_FILTER_PATTERN = "^[^:]+:.*$"
# Runs compared in one request: more curves than this on one chart are unreadable anyway.
MAX_COMPARED_RUNS = 50


def create(session: Session, user: User, data: ExperimentCreate) -> Experiment:
    repo = ExperimentRepository(session)
    if repo.get_by_name(user.id, data.name) is not None:
        raise Conflict(f"Experiment '{data.name}' already exists")
    now = utcnow()
    try:
        return repo.add(
            Experiment(
                id=new_id(IdPrefix.EXPERIMENT),
                # One instant for both: separate defaults put updated_at before created_at.
                created_at=now,
                updated_at=now,
                owner_id=user.id,
                name=data.name,
                description=data.description,
                tags=data.tags,
                metric_goals=dict(data.metric_goals),
            )
        )
    except IntegrityError:
        raise Conflict(f"Experiment '{data.name}' already exists") from None


def get_owned(session: Session, user: User, experiment_id: str) -> Experiment:
    return identity.get_owned(session, user, Experiment, experiment_id, "Experiment")


def detail(session: Session, experiment: Experiment) -> ExperimentDetail:
    counts = ExperimentRepository(session).status_counts(experiment.id)
    return ExperimentDetail(
        **ExperimentRead.model_validate(experiment).model_dump(),
        run_count=sum(counts.values()),
        runs_by_status=counts,
    )


def list_experiments(
    session: Session,
    user: User,
    *,
    name: str | None,
    tags: dict[str, str],
    limit: int,
    offset: int,
) -> tuple[Sequence[Experiment], int]:
    return ExperimentRepository(session).page(
        user, name=name, tags=tags, limit=limit, offset=offset
    )


def parse_tag_filters(values: Sequence[str]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, tag_value = value.partition(":")
        if not sep or not key:
            raise BadRequest(f"tag filter '{value}' must be key:value")
        tags[key] = tag_value
    return tags


def run_page(
    conn: ReadConnection,
    *,
    viewer: Viewer,
    experiment_id: str,
    sort: str,
    order: str | None,
    paging: Paging,
) -> dict[str, Any]:
    """``Page[RunRead]``: the experiment's runs side by side (the request path's read)."""
    repo = ExperimentRows(conn)
    if sort in RUN_SORT_COLUMNS:  # the default: one query
        page = repo.runs_with_summaries(
            experiment_id,
            sort=sort,
            descending=order != "asc",  # newest (or last) first by default
            limit=paging.limit,
            offset=paging.offset,
        )
        if page is None:
            raise resource_not_found("Experiment", experiment_id)
        identity.ensure_owner(viewer, page.owner_id, "Experiment", experiment_id)
        runs = [_run(job, page.summaries[job["id"]], page.goals) for job in page.runs]
        return page_payload(runs, page.total, paging)
    found = repo.owner_and_goals(experiment_id)
    if found is None:
        raise resource_not_found("Experiment", experiment_id)
    owner_id, goals = found
    identity.ensure_owner(viewer, owner_id, "Experiment", experiment_id)
    if not sort.startswith(METRIC_SORT_PREFIX):
        choices = ", ".join([*RUN_SORT_COLUMNS, "metric:<name>"])
        raise BadRequest(f"sort must be one of {choices}")
    metric = sort.removeprefix(METRIC_SORT_PREFIX)
    maximize = goals.get(metric) == "maximize"
    # Best first by default: the smallest loss, the largest accuracy.
    descending = maximize if order is None else order == "desc"
    jobs, total = repo.runs_by_metric(
        experiment_id,
        metric,
        maximize=maximize,
        descending=descending,
        limit=paging.limit,
        offset=paging.offset,
    )
    summaries = repo.summaries([job["id"] for job in jobs])
    return page_payload([_run(job, summaries[job["id"]], goals) for job in jobs], total, paging)


def _run(
    job: dict[str, Any], summaries: list[dict[str, Any]], goals: dict[str, str]
) -> dict[str, Any]:
    """A ``RunRead``, field for field."""
    started, finished = job["started_at"], job["finished_at"]
    return {
        "id": job["id"],
        "name": job["name"],
        "status": job["status"],
        "params": job["environment"],
        "command": job["command"],
        "gpu_count": job["gpu_count"],
        "created_at": job["created_at"],
        "started_at": started,
        "finished_at": finished,
        "duration_seconds": (finished - started).total_seconds()
        if started is not None and finished is not None
        else None,
        "exit_code": job["exit_code"],
        "metrics": {
            s["name"]: {
                "latest": s["latest"],
                "latest_step": s["latest_step"],
                "best": s["max"] if goals.get(s["name"]) == "maximize" else s["min"],
                "min": s["min"],
                "max": s["max"],
                "count": s["count"],
            }
            for s in summaries
        },
    }


def run_metrics(
    session: Session,
    experiment: Experiment,
    *,
    names: Sequence[str],
    job_ids: Sequence[str] | None,
    step_min: int | None,
    step_max: int | None,
    max_points: int | None,
) -> dict[str, Any]:
    """The named metrics of several runs, each series downsampled like a job's own.

    Answered as plain columns (not a validated schema): a comparison of a few long runs is
    millions of numbers, which per-item validation would spend most of its time on.
    """
    if job_ids is not None:
        if len(set(job_ids)) > MAX_COMPARED_RUNS:
            raise BadRequest(f"job_ids: at most {MAX_COMPARED_RUNS} runs at once")
        job_ids = list(dict.fromkeys(job_ids))
    jobs = ExperimentRepository(session).run_jobs(experiment.id, job_ids, MAX_COMPARED_RUNS)
    if job_ids is not None:
        missing = set(job_ids) - {job.id for job in jobs}
        if missing:
            raise NotFound(f"Run {sorted(missing)[0]} not found in experiment {experiment.id}")
    conn = session.connection()
    return {
        "experiment_id": experiment.id,
        "runs": [
            {
                "job_id": job.id,
                "name": job.name,
                "status": job.status,
                "metrics": [
                    {
                        "name": s.name,
                        "count": s.count,
                        "downsampled": s.downsampled,
                        "steps": s.steps,
                        "values": s.values,
                        "wall_times": s.wall_times,
                    }
                    for s in store.read_series(
                        conn,
                        job.id,
                        names,
                        step_min=step_min,
                        step_max=step_max,
                        max_points=max_points,
                    )
                ],
            }
            for job in jobs
        ],
    }
