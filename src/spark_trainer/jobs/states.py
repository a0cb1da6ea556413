"""The job status machine: which transitions exist, and the one function that makes them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from spark_trainer.kit.time import utcnow
from spark_trainer.models import Job, JobEvent, JobStatus

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # running → pending: a job the server marked running but never started (it stopped in
    # between) goes back to the queue on recovery.
    JobStatus.RUNNING: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def change_status(
    session: Session,
    job_id: str,
    expected: JobStatus,
    to: JobStatus,
    reason: str | None = None,
    **values: Any,
) -> bool:
    """Moves a job from ``expected`` to ``to`` and records the event.

    A compare-and-set: it changes nothing and returns False when the job is no longer in
    ``expected`` (say, cancelled by a user while the scheduler was starting it), so two
    actors can never both win a transition.
    """
    if to not in ALLOWED[expected]:
        raise ValueError(f"no transition {expected} → {to}")
    now = utcnow()
    if to == JobStatus.RUNNING:
        values.update(started_at=now, pending_reason=None)
    elif to == JobStatus.PENDING:
        values.update(started_at=None, node=None, gpus=[], pid=None, process_started_at=None)
    else:
        values.update(finished_at=now, pending_reason=None)
    if reason is not None or to.is_final:
        values["status_reason"] = reason
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == expected)
        .values(status=to, **values)
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(JobEvent(job_id=job_id, from_status=expected, to_status=to, reason=reason, at=now))
    return True
