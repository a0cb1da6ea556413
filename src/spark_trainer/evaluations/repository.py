from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from spark_trainer.models import FINAL_STATUSES, Benchmark, Evaluation, Job, MetricSummary, User

FINAL = tuple(str(s) for s in FINAL_STATUSES)
PROGRESS_METRICS = ("questions_done", "questions_total")


class EvaluationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, evaluation: Evaluation) -> Evaluation:
        self.session.add(evaluation)
        self.session.flush()
        return evaluation

    def for_job_locked(self, job_id: str) -> Evaluation | None:
        """The job's evaluation, row-locked on PostgreSQL so two collectors record once."""
        return self.session.scalar(
            select(Evaluation).where(Evaluation.job_id == job_id).with_for_update()
        )

    def page(
        self,
        user: User,
        *,
        model_id: str | None,
        benchmark: Benchmark | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Evaluation], int]:
        query = select(Evaluation)
        if not user.is_admin:
            query = query.where(Evaluation.owner_id == user.id)
        if model_id is not None:
            query = query.where(Evaluation.model_id == model_id)
        if benchmark is not None:
            query = query.where(Evaluation.benchmark == benchmark)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = self.session.scalars(
            query.order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return items, total

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        rows = self.session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids)))
        return {row.id: str(row.status) for row in rows}

    def progress(self, job_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        if not job_ids:
            return {}
        rows = self.session.execute(
            select(MetricSummary.job_id, MetricSummary.name, MetricSummary.latest).where(
                MetricSummary.job_id.in_(job_ids), MetricSummary.name.in_(PROGRESS_METRICS)
            )
        )
        found: dict[str, dict[str, int]] = {}
        for row in rows:
            found.setdefault(row.job_id, {})[row.name] = int(row.latest)
        return found

    def uncollected_ended_jobs(self, limit: int = 100) -> list[str]:
        """Jobs that have ended while their evaluation has not recorded the outcome."""
        return list(
            self.session.scalars(
                select(Evaluation.job_id)
                .join(Job, Job.id == Evaluation.job_id)
                .where(Evaluation.status.not_in(FINAL), Job.status.in_(FINAL))
                .limit(limit)
            )
        )

    def orphaned(self) -> Sequence[Evaluation]:
        """Unfinished evaluations whose job no longer exists."""
        return self.session.scalars(
            select(Evaluation).where(Evaluation.status.not_in(FINAL), Evaluation.job_id.is_(None))
        ).all()
