from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from spark_trainer.db.reads import ReadConnection, read_columns
from spark_trainer.identity.viewer import Viewer
from spark_trainer.kit.pagination import PageQuery
from spark_trainer.models import Job, JobEvent, JobStatus
from spark_trainer.models.job import QUEUE_ORDER, ahead_in_queue


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, job_id: str) -> Job | None:
        return self.session.get(Job, job_id)

    def running_with_token(self, token_digest: str) -> Job | None:
        return self.session.scalar(
            select(Job).where(
                Job.ingest_token_digest == token_digest, Job.status == JobStatus.RUNNING
            )
        )

    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        return job

    def ahead_in_queue(self, job: Job) -> int:
        """Pending jobs the scheduler considers before this one."""
        return (
            self.session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status == JobStatus.PENDING, ahead_in_queue(job))
            )
            or 0
        )


_JOBS = Job.__table__
_EVENTS = JobEvent.__table__


@cache
def _page_query(fields: tuple[str, ...], *, owned: bool, by_status: bool) -> PageQuery:
    query = select(*read_columns(_JOBS, fields))
    if owned:
        query = query.where(_JOBS.c.owner_id == bindparam("owner_id"))
    if by_status:
        query = query.where(_JOBS.c.status == bindparam("status"))
    return PageQuery(query.order_by(_JOBS.c.created_at.desc(), _JOBS.c.id.desc()))


@cache
def _queue_places() -> Select[Any]:
    # One statement for a whole page: the pending queue numbered in the scheduler's order
    # (one sort in the database), instead of one count of the jobs ahead per pending job.
    order = [
        _JOBS.c[name].desc() if descending else _JOBS.c[name] for name, descending in QUEUE_ORDER
    ]
    queue = (
        select(_JOBS.c.id, (func.row_number().over(order_by=order) - 1).label("ahead"))
        .where(_JOBS.c.status == JobStatus.PENDING)
        .subquery()
    )
    return select(queue.c.id, queue.c.ahead).where(
        queue.c.id.in_(bindparam("job_ids", expanding=True))
    )


@cache
def _with_events(fields: tuple[str, ...], event_fields: tuple[str, ...]) -> Select[Any]:
    # One round trip for a job and its history: a row per event, the job's columns
    # repeated on each (a job has a handful of events), or one row with NULL events.
    return (
        select(*read_columns(_JOBS, fields), *read_columns(_EVENTS, event_fields, prefix="e_"))
        .select_from(_JOBS.outerjoin(_EVENTS, _EVENTS.c.job_id == _JOBS.c.id))
        .where(_JOBS.c.id == bindparam("job_id"))
        .order_by(_EVENTS.c.id)
    )


class JobRows:
    """The request path's reads of jobs (``db.reads``): the named fields' column values
    as dicts, through a Core connection; no ORM objects, no session. Each shape's
    statement is built once."""

    def __init__(self, conn: ReadConnection) -> None:
        self.conn = conn

    def page(
        self,
        viewer: Viewer,
        fields: tuple[str, ...],
        *,
        status: JobStatus | None,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """The jobs ``viewer`` may see (an admin: every job), newest first."""
        owned = not viewer.is_admin
        query = _page_query(fields, owned=owned, by_status=status is not None)
        params = {"owner_id": viewer.id} if owned else {}
        if status is not None:
            params["status"] = status
        return query.rows(self.conn, params, limit=limit, offset=offset)

    def with_events(
        self, job_id: str, fields: tuple[str, ...], event_fields: tuple[str, ...]
    ) -> dict[str, Any] | None:
        """The job's ``fields`` and, under ``events``, its events' ``event_fields``,
        oldest first."""
        rows = self.conn.execute(_with_events(fields, event_fields), {"job_id": job_id}).all()
        if not rows:
            return None
        width = len(fields)
        job = dict(zip(fields, rows[0][:width], strict=True))
        # An event's to_status is never NULL: a row without one is the job without events.
        job["events"] = [
            dict(zip(event_fields, row[width:], strict=True))
            for row in rows
            if row[width + event_fields.index("to_status")] is not None
        ]
        return job

    def ahead_in_queue(self, job_ids: list[str]) -> dict[str, int]:
        """For each pending job of ``job_ids``, the pending jobs the scheduler considers
        before it (its place in the queue order); other jobs are left out."""
        result = self.conn.execute(_queue_places(), {"job_ids": job_ids})
        return {job_id: ahead for job_id, ahead in result}
