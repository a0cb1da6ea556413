"""The metrics writer under a poisoned batch and a second writer for the same job."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from spark_trainer.context import AppContext
from spark_trainer.metrics.bus import LocalBus
from spark_trainer.metrics.hub import StreamHub
from spark_trainer.metrics.pipeline import MetricsPipeline, Point
from spark_trainer.models import Job, JobStatus, MetricPoint
from tests.conftest import Account
from tests.jobs.helpers import wait_until


def _job(ctx: AppContext, owner: Account, job_id: str) -> None:
    with ctx.session_factory.begin() as session:
        session.add(
            Job(
                id=job_id,
                owner_id=owner.user.id,
                name=job_id,
                command="true",
                gpu_count=0,
                environment={},
                gpus=[],
                status=JobStatus.RUNNING,
            )
        )


def _stored(ctx: AppContext, job_id: str) -> list[int]:
    with ctx.engine.connect() as conn:
        return list(
            conn.scalars(
                select(MetricPoint.step)
                .where(MetricPoint.job_id == job_id)
                .order_by(MetricPoint.step)
            )
        )


def test_a_poisoned_point_is_set_aside_and_other_jobs_keep_flowing(
    ctx: AppContext, alice: Account
) -> None:
    _job(ctx, alice, "job-000000000000000a")
    _job(ctx, alice, "job-000000000000000b")
    pipeline = ctx.jobs.pipeline
    pipeline.start()
    try:
        now = time.time()
        pipeline.ingest("job-000000000000000a", [Point(0, {"loss": 1.0}, now)])
        # A step no database column holds: every write of this batch fails.
        pipeline.ingest(
            "job-000000000000000b",
            [
                Point(1, {"loss": 1.0}, now),
                Point(2**63, {"loss": 2.0}, now),
                Point(3, {"x": 1}, now),
            ],
        )
        for step in range(1, 20):
            pipeline.ingest("job-000000000000000a", [Point(step, {"loss": 1.0 / step}, now)])
        wait_until(
            lambda: (
                pipeline.rejected_points == 1 and _stored(ctx, "job-000000000000000b") == [1, 3]
            ),
            timeout=30,
            what="the poisoned point to be set aside",
        )
        assert len(_stored(ctx, "job-000000000000000a")) == 20
        # The writer is not wedged: later points of both jobs are stored at once.
        pipeline.ingest("job-000000000000000a", [Point(20, {"loss": 0.0}, now)])
        pipeline.ingest("job-000000000000000b", [Point(4, {"loss": 0.5}, now)])
        wait_until(
            lambda: (
                _stored(ctx, "job-000000000000000b") == [1, 3, 4]
                and len(_stored(ctx, "job-000000000000000a")) == 21
            ),
            timeout=10,
            what="points after the poisoned one",
        )
    finally:
        pipeline.stop()


def test_two_writers_for_one_job_never_collide(ctx: AppContext, alice: Account) -> None:
    """As a metrics POST on one API process and the file tailer on another would."""
    _job(ctx, alice, "job-00000000000000cc")
    first = ctx.jobs.pipeline
    second = MetricsPipeline(ctx.engine, LocalBus(StreamHub()))
    now = time.time()
    for step in range(0, 3000, 2):
        first.ingest("job-00000000000000cc", [Point(step, {"loss": 1.0}, now)])
        second.ingest("job-00000000000000cc", [Point(step + 1, {"loss": 2.0}, now)])
        if step % 500 == 0:
            first.flush()
            second.flush()
    first.flush()
    second.flush()
    assert _stored(ctx, "job-00000000000000cc") == list(range(3000))
    with ctx.engine.connect() as conn:
        distinct = conn.scalar(
            select(func.count(func.distinct(MetricPoint.seq))).where(
                MetricPoint.job_id == "job-00000000000000cc"
            )
        )
    assert distinct == 3000
