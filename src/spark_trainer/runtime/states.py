"""The job status machine: which transitions exist, and the one function that makes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from spark_trainer.activity.record import record
from spark_trainer.kit.time import utcnow
from spark_trainer.models import GpuAllocation, Job, JobEvent, JobOutbox, JobStatus

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

    GPU allocations follow the status in the same transaction: moving to ``running`` with
    ``node`` and ``gpus`` inserts one row per GPU (a GPU already held makes the flush
    raise ``IntegrityError``, so the caller's transaction must roll back); leaving
    ``running`` deletes them. A final status also writes the job's end to the outbox, so
    no end is ever committed without its event (``runtime.events`` delivers it). Every
    transition is announced to the dashboards' event streams once it commits.
    """
    if to not in ALLOWED[expected]:
        raise ValueError(f"no transition {expected} → {to}")
    now = utcnow()
    if to == JobStatus.RUNNING:
        values.update(started_at=now, pending_reason=None)
    elif to == JobStatus.PENDING:
        values.update(started_at=None, node=None, gpus=[], handle=None, job_dir=None)
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
    kind, parent_id, owner_id, name = session.execute(
        select(Job.kind, Job.parent_id, Job.owner_id, Job.name).where(Job.id == job_id)
    ).one()
    record(
        session,
        kind="job.status",
        job_id=job_id,
        owner_id=owner_id,
        name=name,
        status=to,
        previous=expected,
        reason=reason,
    )
    if to == JobStatus.RUNNING and values.get("gpus"):
        session.add_all(
            GpuAllocation(node=values["node"], gpu_index=gpu, job_id=job_id, allocated_at=now)
            for gpu in values["gpus"]
        )
        session.flush()
    elif expected == JobStatus.RUNNING:
        free_gpus(session, [job_id])
    if to.is_final:
        session.add(
            JobOutbox(
                job_id=job_id,
                kind=kind,
                parent_id=parent_id,
                status=to,
                exit_code=values.get("exit_code"),
                reason=reason,
                created_at=now,
            )
        )
    return True


def free_gpus(session: Session, job_ids: Sequence[str]) -> None:
    session.execute(delete(GpuAllocation).where(GpuAllocation.job_id.in_(job_ids)))
