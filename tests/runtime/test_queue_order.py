"""The queue order is written once (``models.job.QUEUE_ORDER``): the scheduler reads the
queue in it and each pending job's "N jobs ahead" count agrees with that order, ties
included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spark_trainer.context import AppContext
from spark_trainer.jobs.repository import JobRepository
from spark_trainer.kit.ids import IdPrefix, new_id
from spark_trainer.models import Job, JobStatus
from spark_trainer.runtime.repository import RuntimeRepository
from tests.conftest import Account

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_queue_and_the_jobs_ahead_agree(ctx: AppContext, alice: Account) -> None:
    # (priority, seconds after T0): same priority and time tie-break on the id.
    shapes = [(0, 0), (5, 2), (5, 1), (-1, 0), (5, 1), (0, 0), (2, 3)]
    ids = sorted(new_id(IdPrefix.JOB) for _ in shapes)
    with ctx.session_factory.begin() as session:
        for job_id, (priority, second) in zip(ids, shapes, strict=True):
            session.add(
                Job(
                    id=job_id,
                    owner_id=alice.user.id,
                    name="queued",
                    command="true",
                    gpu_count=1,
                    priority=priority,
                    status=JobStatus.PENDING,
                    created_at=T0 + timedelta(seconds=second),
                )
            )
    expected = sorted(
        zip(ids, shapes, strict=True), key=lambda item: (-item[1][0], item[1][1], item[0])
    )
    with ctx.session_factory() as session:
        queue = [row.id for row in RuntimeRepository(session).pending_queue()]
        assert queue == [job_id for job_id, _ in expected]
        jobs = JobRepository(session)
        ahead = {job_id: jobs.ahead_in_queue(session.get_one(Job, job_id)) for job_id in ids}
    assert [ahead[job_id] for job_id in queue] == list(range(len(queue)))
