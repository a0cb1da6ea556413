from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    UnaryExpression,
    and_,
    bindparam,
    func,
    select,
    true,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from spark_trainer.db.reads import ReadConnection, json_text, parse_json, read_columns
from spark_trainer.kit.pagination import PageQuery, page_of
from spark_trainer.models import Experiment, Job, MetricSummary, User

RUN_SORT_COLUMNS: dict[str, Any] = {
    "created_at": Job.created_at,
    "started_at": Job.started_at,
    "finished_at": Job.finished_at,
    "name": Job.name,
    "status": Job.status,
}


class ExperimentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, experiment_id: str) -> Experiment | None:
        return self.session.get(Experiment, experiment_id)

    def get_by_name(self, owner_id: str, name: str) -> Experiment | None:
        return self.session.scalar(
            select(Experiment).where(Experiment.owner_id == owner_id, Experiment.name == name)
        )

    def add(self, experiment: Experiment) -> Experiment:
        self.session.add(experiment)
        self.session.flush()
        return experiment

    def page(
        self,
        user: User,
        *,
        name: str | None,
        tags: dict[str, str],
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Experiment], int]:
        query = select(Experiment)
        if not user.is_admin:
            query = query.where(Experiment.owner_id == user.id)
        if name:
            query = query.where(Experiment.name.contains(name, autoescape=True))
        for key, value in tags.items():
            query = query.where(Experiment.tags[key].as_string() == value)
        return page_of(
            self.session,
            query.order_by(Experiment.created_at.desc(), Experiment.id.desc()),
            limit=limit,
            offset=offset,
        )

    def run_jobs(self, experiment_id: str, job_ids: Sequence[str] | None, limit: int) -> list[Job]:
        """The experiment's runs, oldest first: those named, or the first ``limit``."""
        query = select(Job).where(Job.experiment_id == experiment_id)
        if job_ids is not None:
            query = query.where(Job.id.in_(job_ids))
        return list(self.session.scalars(query.order_by(Job.created_at, Job.id).limit(limit)))

    def status_counts(self, experiment_id: str) -> dict[str, int]:
        rows = self.session.execute(
            select(Job.status, func.count())
            .where(Job.experiment_id == experiment_id)
            .group_by(Job.status)
        ).all()
        return {str(status): count for status, count in rows}


_EXPERIMENTS = Experiment.__table__
_JOBS = Job.__table__
_SUMMARIES = MetricSummary.__table__
_RUN_FIELDS = (
    "id",
    "name",
    "status",
    "environment",
    "command",
    "gpu_count",
    "created_at",
    "started_at",
    "finished_at",
    "exit_code",
)
_SUMMARY_FIELDS = ("job_id", "name", "latest", "latest_step", "min", "max", "count")
_OWNER_AND_GOALS = select(_EXPERIMENTS.c.owner_id, _EXPERIMENTS.c.metric_goals).where(
    _EXPERIMENTS.c.id == bindparam("experiment_id")
)
# By name: a run's metrics come in one order every time.
_RUN_SUMMARIES = (
    select(*read_columns(_SUMMARIES, _SUMMARY_FIELDS))
    .where(_SUMMARIES.c.job_id.in_(bindparam("job_ids", expanding=True)))
    .order_by(_SUMMARIES.c.job_id, _SUMMARIES.c.name)
)


@cache
def _runs_by_metric(*, maximize: bool, descending: bool) -> PageQuery:
    """Runs ordered by a metric's best value (its max, or its min)."""
    summary = _SUMMARIES.alias()
    key = summary.c.max if maximize else summary.c.min
    query = (
        select(*read_columns(_JOBS, _RUN_FIELDS))
        .outerjoin(
            summary,
            and_(summary.c.job_id == _JOBS.c.id, summary.c.name == bindparam("metric")),
        )
        .where(_JOBS.c.experiment_id == bindparam("experiment_id"))
    )
    # Runs that never logged the metric go last, whatever the direction.
    ordering = [key.is_(None), key.desc() if descending else key.asc()]
    return PageQuery(query.order_by(*ordering, _JOBS.c.created_at, _JOBS.c.id))


def _page_order(
    columns: ReadOnlyColumnCollection[str, ColumnElement[Any]], sort: str, *, descending: bool
) -> list[UnaryExpression[Any]]:
    """``sort``, then creation and id to break ties, all one way: the index on (experiment,
    created_at, id) then reads a newest-first page in order, and stops after it, where a
    tie broken the other way had it sort all the experiment's runs for every page."""
    keys = [sort, *(key for key in ("created_at", "id") if key != sort)]
    return [columns[key].desc() if descending else columns[key].asc() for key in keys]


@cache
def _runs_with_summaries(sort: str, *, descending: bool) -> Select[Any]:
    """A page of runs ordered by a job column, with the experiment's owner and goals, the
    total and each run's summaries: one round trip where three were (owner, page,
    summaries). A row per (run, summary); one row with NULL runs when the page is empty
    (no runs, or a page past the end); no row when there is no such experiment."""
    experiment_id: BindParameter[str] = bindparam("experiment_id")
    page = (
        select(*read_columns(_JOBS, _RUN_FIELDS))
        .where(_JOBS.c.experiment_id == experiment_id)
        .order_by(*_page_order(_JOBS.c, sort, descending=descending))
        .limit(bindparam("page_limit"))
        .offset(bindparam("page_offset"))
        .subquery("page")
    )
    total = (
        select(func.count())
        .select_from(_JOBS)
        .where(_JOBS.c.experiment_id == experiment_id)
        .scalar_subquery()
    )
    return (
        select(
            _EXPERIMENTS.c.owner_id,
            json_text(_EXPERIMENTS.c.metric_goals, "metric_goals"),
            total.label("total"),
            # JSON as text: the join repeats these on every summary's row; each is parsed
            # once (see runs_with_summaries).
            *(
                json_text(page.c[name], name) if name == "environment" else page.c[name]
                for name in _RUN_FIELDS
            ),
            *read_columns(_SUMMARIES, _SUMMARY_FIELDS[1:], prefix="summary_"),
        )
        .select_from(
            _EXPERIMENTS.outerjoin(page, true()).outerjoin(
                _SUMMARIES, _SUMMARIES.c.job_id == page.c.id
            )
        )
        .where(_EXPERIMENTS.c.id == experiment_id)
        # The page's own order, then a run's metrics by name, as ``summaries`` gives them.
        .order_by(*_page_order(page.c, sort, descending=descending), _SUMMARIES.c.name)
    )


@dataclass(frozen=True, slots=True)
class RunsPage:
    owner_id: str
    goals: dict[str, str]
    runs: list[dict[str, Any]]
    total: int
    summaries: dict[str, list[dict[str, Any]]]


class ExperimentRows:
    """The request path's reads of experiments and their runs (``db.reads``): plain
    dicts through a Core connection, each shape's statement built once."""

    def __init__(self, conn: ReadConnection) -> None:
        self.conn = conn

    def owner_and_goals(self, experiment_id: str) -> tuple[str, dict[str, str]] | None:
        row = self.conn.execute(_OWNER_AND_GOALS, {"experiment_id": experiment_id}).first()
        return (row[0], row[1]) if row is not None else None

    def runs_by_metric(
        self,
        experiment_id: str,
        metric: str,
        *,
        maximize: bool,
        descending: bool,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the experiment's runs (their jobs' fields), by ``metric``'s best."""
        query = _runs_by_metric(maximize=maximize, descending=descending)
        params = {"experiment_id": experiment_id, "metric": metric}
        return query.rows(self.conn, params, limit=limit, offset=offset)

    def runs_with_summaries(
        self, experiment_id: str, *, sort: str, descending: bool, limit: int, offset: int
    ) -> RunsPage | None:
        """What :meth:`owner_and_goals`, :meth:`runs` and :meth:`summaries` answer for a
        sort by a job column (``RUN_SORT_COLUMNS``), in one query; None: no such
        experiment."""
        rows = self.conn.execute(
            _runs_with_summaries(sort, descending=descending),
            {"experiment_id": experiment_id, "page_limit": limit, "page_offset": offset},
        ).all()
        if not rows:
            return None
        first = len(_RUN_FIELDS) + 3  # the first summary column
        runs: list[dict[str, Any]] = []
        summaries: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            job_id = row[3]
            if job_id is None:  # the empty page's one row
                break
            if not runs or runs[-1]["id"] != job_id:
                run = dict(zip(_RUN_FIELDS, row[3:first], strict=True))
                run["environment"] = parse_json(run["environment"])
                runs.append(run)
                summaries[job_id] = []
            if row[first] is not None:  # a summary's name; NULL: a run without metrics
                summaries[job_id].append(dict(zip(_SUMMARY_FIELDS[1:], row[first:], strict=True)))
        owner_id, goals, total = rows[0][:3]
        return RunsPage(owner_id, parse_json(goals), runs, int(total), summaries)

    def summaries(self, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each job's metric summaries (name, latest, latest_step, min, max, count)."""
        result: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
        if job_ids:
            for row in self.conn.execute(_RUN_SUMMARIES, {"job_ids": job_ids}):
                result[row[0]].append(dict(zip(_SUMMARY_FIELDS[1:], row[1:], strict=True)))
        return result
