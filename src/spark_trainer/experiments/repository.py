from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from spark_trainer.kit.pagination import page_of
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

    def runs(
        self,
        experiment_id: str,
        *,
        metric: str | None,
        metric_goal: str,
        sort: str,
        descending: bool,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Job], int]:
        query = select(Job).where(Job.experiment_id == experiment_id)
        if metric is not None:
            summary = aliased(MetricSummary)
            query = query.outerjoin(summary, and_(summary.job_id == Job.id, summary.name == metric))
            key: Any = summary.max if metric_goal == "maximize" else summary.min
            # Runs that never logged the metric go last, whatever the direction.
            ordering = [key.is_(None), key.desc() if descending else key.asc()]
        else:
            column = RUN_SORT_COLUMNS[sort]
            ordering = [column.desc() if descending else column.asc()]
        return page_of(
            self.session,
            query.order_by(*ordering, Job.created_at, Job.id),
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

    def summaries(self, job_ids: Sequence[str]) -> dict[str, list[MetricSummary]]:
        result: dict[str, list[MetricSummary]] = {job_id: [] for job_id in job_ids}
        if job_ids:
            for summary in self.session.scalars(
                select(MetricSummary).where(MetricSummary.job_id.in_(job_ids))
            ):
                result[summary.job_id].append(summary)
        return result
