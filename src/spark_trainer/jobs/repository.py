from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spark_trainer.kit.pagination import page_of
from spark_trainer.models import Job, JobEvent, JobStatus, User
from spark_trainer.models.job import ahead_in_queue


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

    def page(
        self, user: User, *, status: JobStatus | None, limit: int, offset: int
    ) -> tuple[Sequence[Job], int]:
        query = select(Job)
        if not user.is_admin:
            query = query.where(Job.owner_id == user.id)
        if status is not None:
            query = query.where(Job.status == status)
        return page_of(
            self.session,
            query.order_by(Job.created_at.desc(), Job.id.desc()),
            limit=limit,
            offset=offset,
        )

    def events(self, job_id: str) -> Sequence[JobEvent]:
        return self.session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()

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
