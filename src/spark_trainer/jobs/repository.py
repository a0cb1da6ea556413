from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from spark_trainer.models import Job, JobEvent, JobStatus, User


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
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items: Sequence[Job] = self.session.scalars(
            query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
        ).all()
        return items, total

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
                .where(
                    Job.status == JobStatus.PENDING,
                    or_(
                        Job.priority > job.priority,
                        (Job.priority == job.priority) & (Job.created_at < job.created_at),
                    ),
                )
            )
            or 0
        )
