"""Recording a trial's outcome once its job has ended.

:func:`record_trial_end` is an idempotent function of (session, job id), run in the
caller's transaction: by the durable job-end handler for ``trial`` jobs (any process, at
least once) and by the controller's reconcile pass for ends whose event is still on its
way. It writes only SparkTrainer's tables; the controller tells Optuna afterwards.
"""

from __future__ import annotations

import logging
import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from spark_trainer.models import Job, JobStatus, MetricSummary, Study, StudyTrial, TrialState

logger = logging.getLogger(__name__)


def record_trial_end(session: Session, job_id: str) -> bool:
    """Closes the trial run by ``job_id``: COMPLETE with the metric's value, or FAIL with
    why. Returns whether anything was recorded (False: no such trial, its job still runs,
    or the trial was already closed, pruned say)."""
    trial = session.scalars(
        select(StudyTrial).where(StudyTrial.job_id == job_id).with_for_update()
    ).one_or_none()
    if trial is None or trial.state != TrialState.RUNNING:
        return False
    job = session.get(Job, job_id)
    study = session.get(Study, trial.study_id)
    if job is None or study is None or not JobStatus(job.status).is_final:
        return False
    state, value, reason = _outcome(session, study, job)
    trial.state = state
    trial.value = value
    trial.reason = reason
    session.flush()
    logger.info(
        "trial ended",
        extra={"study_id": study.id, "trial": trial.number, "state": str(state), "job_id": job_id},
    )
    return True


def _outcome(
    session: Session, study: Study, job: Job
) -> tuple[TrialState, float | None, str | None]:
    if job.status != JobStatus.COMPLETED:
        return TrialState.FAIL, None, job.status_reason or f"job {job.status}"
    summary = session.get(MetricSummary, (job.id, study.metric))
    if summary is None:
        return TrialState.FAIL, None, f"reported no value of '{study.metric}'"
    if study.metric_value == "last":
        value = summary.latest
    else:
        value = summary.max if study.objective == "maximize" else summary.min
    if not math.isfinite(value):
        return TrialState.FAIL, None, f"reported a non-finite value of '{study.metric}'"
    return TrialState.COMPLETE, value, None
