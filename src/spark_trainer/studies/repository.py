from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from spark_trainer.models import (
    ACTIVE_STUDY_STATUSES,
    FINAL_STATUSES,
    Job,
    MetricPoint,
    Study,
    StudyTrial,
    TrialState,
    User,
)


@dataclass(frozen=True, slots=True)
class TrialWithJob:
    trial: StudyTrial
    job: Job


class StudyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, study_id: str) -> Study | None:
        return self.session.get(Study, study_id)

    def add(self, study: Study) -> Study:
        self.session.add(study)
        self.session.flush()
        return study

    def page(self, user: User, *, limit: int, offset: int) -> tuple[Sequence[Study], int]:
        query = select(Study)
        if not user.is_admin:
            query = query.where(Study.owner_id == user.id)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = self.session.scalars(
            query.order_by(Study.created_at.desc(), Study.id.desc()).limit(limit).offset(offset)
        ).all()
        return items, total

    def trials(self, study_id: str) -> list[TrialWithJob]:
        rows = self.session.execute(
            select(StudyTrial, Job)
            .join(Job, Job.id == StudyTrial.job_id)
            .where(StudyTrial.study_id == study_id)
            .order_by(StudyTrial.number)
        ).all()
        return [TrialWithJob(trial, job) for trial, job in rows]

    def finished_counts(self, study_ids: Sequence[str]) -> dict[str, int]:
        if not study_ids:
            return {}
        rows = self.session.execute(
            select(StudyTrial.study_id, func.count())
            .where(StudyTrial.study_id.in_(study_ids), StudyTrial.state != TrialState.RUNNING)
            .group_by(StudyTrial.study_id)
        ).all()
        return {study_id: count for study_id, count in rows}

    def best_trials(self, studies: Sequence[Study]) -> dict[str, StudyTrial]:
        """Each study's best complete trial (the earliest among equals, as Optuna picks)."""
        best: dict[str, StudyTrial] = {}
        if not studies:
            return best
        maximize = {s.id for s in studies if s.objective == "maximize"}
        for trial in self.session.scalars(
            select(StudyTrial)
            .where(
                StudyTrial.study_id.in_([s.id for s in studies]),
                StudyTrial.state == TrialState.COMPLETE,
            )
            .order_by(StudyTrial.number)
        ):
            current = best.get(trial.study_id)
            assert trial.value is not None
            if current is None or (
                trial.value > current.value  # type: ignore[operator]
                if trial.study_id in maximize
                else trial.value < current.value  # type: ignore[operator]
            ):
                best[trial.study_id] = trial
        return best

    def ids_to_reconcile(self) -> list[str]:
        """Studies with work left: active ones, and ended ones with trials still open or
        not yet told to Optuna (a cancelled study's trials close once their jobs stop)."""
        open_trials = select(StudyTrial.study_id).where(
            or_(StudyTrial.state == TrialState.RUNNING, StudyTrial.optuna_told.is_(False))
        )
        stray_jobs = (
            select(StudyTrial.study_id)
            .join(Job, Job.id == StudyTrial.job_id)
            .where(Job.status.not_in(list(FINAL_STATUSES)))
        )
        return list(
            self.session.scalars(
                select(Study.id)
                .where(
                    or_(
                        Study.status.in_(list(ACTIVE_STUDY_STATUSES)),
                        Study.id.in_(open_trials),
                        Study.id.in_(stray_jobs),
                    )
                )
                .order_by(Study.created_at)
            )
        )

    def points_after(self, job_id: str, metric: str, step: int) -> list[tuple[int, float]]:
        """A metric's points past ``step``, in order: the intermediate values a pruner sees."""
        rows = self.session.execute(
            select(MetricPoint.step, MetricPoint.value)
            .where(
                MetricPoint.job_id == job_id, MetricPoint.name == metric, MetricPoint.step > step
            )
            .order_by(MetricPoint.step, MetricPoint.seq)
        ).all()
        return [(row.step, row.value) for row in rows]
