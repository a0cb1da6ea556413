"""The request path's fast reads answer, byte for byte, what pydantic answers for the rows.

The list and detail GETs of users, jobs and runs build plain dicts from Core rows and
encode them with orjson (``kit.responses``). Each response here is compared with the
pydantic serialization of the same rows loaded through the ORM: timestamps with and
without microseconds, ``None``, nested lists and dicts, non-ASCII text, floats small and
large, and a pending job's computed reason.

The app runs without its lifespan, so no scheduler starts the pending jobs seeded here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import select

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.experiments.schemas import MetricSummaryRead, RunRead
from spark_trainer.identity.schemas import UserRead
from spark_trainer.jobs import service as jobs
from spark_trainer.jobs.schemas import JobDetail, JobEventRead, JobRead
from spark_trainer.kit.responses import encode
from spark_trainer.kit.schemas import Page, UTCDatetime
from spark_trainer.models import Experiment, Job, JobEvent, JobStatus, MetricSummary, User
from spark_trainer.settings import Settings
from tests.conftest import Account

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def bare_client(settings: Settings, ctx: AppContext) -> Iterator[TestClient]:
    yield TestClient(create_app(settings, ctx))


def _seed(ctx: AppContext, owner: User) -> tuple[str, list[str]]:
    """An experiment with three runs: finished, pending with a reason, pending without."""
    experiment_id = "exp-fastreads"
    with ctx.session_factory.begin() as session:
        session.add(
            Experiment(
                id=experiment_id,
                owner_id=owner.id,
                name="fast",
                description=None,
                tags={"team": "ü"},
                metric_goals={"accuracy": "maximize"},
                created_at=T0,
                updated_at=T0,
            )
        )
        finished = Job(
            id="job-finished",
            owner_id=owner.id,
            name="finished — ünïcode",
            command="python train.py --lr 0.1",
            gpu_count=2,
            environment={"LR": "0.1", "NOTE": '日本語 "quoted"'},
            experiment_id=experiment_id,
            status=JobStatus.COMPLETED,
            gpus=[0, 3],
            node="vm",
            created_at=T0,  # no microseconds: written without a fraction
            started_at=T0 + timedelta(seconds=1, microseconds=7),
            finished_at=T0 + timedelta(seconds=61, microseconds=120_000),
            exit_code=0,
            status_reason="exited with code 0",
        )
        waiting = Job(
            id="job-waiting",
            owner_id=owner.id,
            name="waiting",
            command="true",
            gpu_count=4,
            priority=5,
            environment={},
            experiment_id=experiment_id,
            status=JobStatus.PENDING,
            gpus=[],
            pending_reason="needs 4 GPUs; the largest free block is 0",
            created_at=T0 + timedelta(seconds=2, microseconds=500),
            timeout_seconds=3600,
            working_dir="/tmp",
        )
        queued = Job(
            id="job-queued",
            owner_id=owner.id,
            name="queued",
            command="true",
            gpu_count=0,
            environment={},
            experiment_id=experiment_id,
            status=JobStatus.PENDING,
            gpus=[],
            created_at=T0 + timedelta(seconds=3),
        )
        session.add_all([finished, waiting, queued])
        session.flush()
        session.add_all(
            [
                JobEvent(
                    job_id=finished.id,
                    from_status=None,
                    to_status="pending",
                    reason=None,
                    at=T0,
                ),
                JobEvent(
                    job_id=finished.id,
                    from_status="running",
                    to_status="completed",
                    reason="exit 0",
                    at=T0 + timedelta(seconds=61, microseconds=120_000),
                ),
                MetricSummary(
                    job_id=finished.id,
                    name="loss",
                    latest=1e-7,
                    latest_step=100,
                    latest_seq=7,
                    min=1e-7,
                    max=2.5,
                    count=100,
                ),
                MetricSummary(
                    job_id=finished.id,
                    name="accuracy",
                    latest=0.1,
                    latest_step=100,
                    latest_seq=7,
                    min=0.0,
                    max=1e20,
                    count=3,
                ),
            ]
        )
    return experiment_id, [queued.id, waiting.id, finished.id]


def _job_read(ctx: AppContext, job_id: str) -> JobRead:
    with ctx.session_factory() as session:
        return jobs.read(session, session.get_one(Job, job_id))


def _run_read(ctx: AppContext, job_id: str) -> RunRead:
    with ctx.session_factory() as session:
        job = session.get_one(Job, job_id)
        summaries = session.scalars(
            select(MetricSummary).where(MetricSummary.job_id == job_id).order_by(MetricSummary.name)
        ).all()
        goals = session.get_one(Experiment, job.experiment_id).metric_goals
        duration = (
            (job.finished_at - job.started_at).total_seconds()
            if job.started_at and job.finished_at
            else None
        )
        return RunRead(
            id=job.id,
            name=job.name,
            status=job.status,
            params=job.environment,
            command=job.command,
            gpu_count=job.gpu_count,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_seconds=duration,
            exit_code=job.exit_code,
            metrics={
                s.name: MetricSummaryRead(
                    latest=s.latest,
                    latest_step=s.latest_step,
                    best=s.max if goals.get(s.name) == "maximize" else s.min,
                    min=s.min,
                    max=s.max,
                    count=s.count,
                )
                for s in summaries
            },
        )


def test_job_list_and_detail_match_pydantic(
    bare_client: TestClient, ctx: AppContext, alice: Account
) -> None:
    _, job_ids = _seed(ctx, alice.user)
    expected = Page[JobRead](
        items=[_job_read(ctx, job_id) for job_id in job_ids], total=3, limit=20, offset=0
    )
    response = bare_client.get("/api/jobs", headers=alice.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == TypeAdapter(Page[JobRead]).dump_json(expected)
    queued, waiting, _ = response.json()["items"]
    # The queue runs higher priority first: the older job waits behind the other.
    assert waiting["pending_reason"] == "needs 4 GPUs; the largest free block is 0"
    assert queued["pending_reason"] == (
        "waiting for the scheduler's next pass; 1 job ahead in the queue"
    )

    with ctx.session_factory() as session:
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == "job-finished").order_by(JobEvent.id)
        ).all()
        detail = JobDetail(
            **_job_read(ctx, "job-finished").model_dump(),
            events=[JobEventRead.model_validate(e) for e in events],
        )
    response = bare_client.get("/api/jobs/job-finished", headers=alice.headers)
    assert response.content == detail.model_dump_json().encode()
    assert response.json()["started_at"] == "2026-12-04T12:00:01.000007Z"
    assert response.json()["created_at"] == "2026-12-04T12:00:00Z"

    # Job and events come in one query; a job without events is still found.
    detail = JobDetail(**_job_read(ctx, "job-waiting").model_dump(), events=[])
    response = bare_client.get("/api/jobs/job-waiting", headers=alice.headers)
    assert response.content == detail.model_dump_json().encode()


def test_runs_and_users_match_pydantic(
    bare_client: TestClient, ctx: AppContext, alice: Account, admin: Account
) -> None:
    experiment_id, job_ids = _seed(ctx, alice.user)
    response = bare_client.get(f"/api/experiments/{experiment_id}/runs", headers=alice.headers)
    expected = Page[RunRead](
        items=[_run_read(ctx, job_id) for job_id in job_ids], total=3, limit=20, offset=0
    )
    assert response.content == TypeAdapter(Page[RunRead]).dump_json(expected)

    # Owner, page, total and summaries come in one query for a sort by a job's column.
    runs = f"/api/experiments/{experiment_id}/runs"
    for query, ids, offset in [
        ("?sort=name&order=asc", sorted(job_ids, key=lambda i: _run_read(ctx, i).name), 0),
        ("?limit=2&offset=1", job_ids[1:], 1),
        ("?offset=5", [], 5),
    ]:
        page = Page[RunRead](
            items=[_run_read(ctx, job_id) for job_id in ids][: 2 if "limit" in query else 20],
            total=3,
            limit=2 if "limit" in query else 20,
            offset=offset,
        )
        response = bare_client.get(runs + query, headers=alice.headers)
        assert response.content == TypeAdapter(Page[RunRead]).dump_json(page), query
    with ctx.session_factory.begin() as session:
        session.add(Experiment(id="exp-empty", owner_id=alice.user.id, name="empty"))
    response = bare_client.get("/api/experiments/exp-empty/runs", headers=alice.headers)
    assert response.json() == {"items": [], "total": 0, "limit": 20, "offset": 0}

    response = bare_client.get(
        f"/api/experiments/{experiment_id}/runs?sort=metric:accuracy&limit=1",
        headers=alice.headers,
    )
    page = response.json()
    assert [run["id"] for run in page["items"]] == ["job-finished"]
    assert page["total"] == 3
    assert page["items"][0]["metrics"]["accuracy"]["best"] == 1e20

    with ctx.session_factory() as session:
        users = session.scalars(select(User).order_by(User.created_at, User.id)).all()
        expected_users = Page[UserRead](
            items=[UserRead.model_validate(u) for u in users], total=2, limit=20, offset=0
        )
    response = bare_client.get("/api/users", headers=admin.headers)
    assert response.content == TypeAdapter(Page[UserRead]).dump_json(expected_users)


def test_a_page_past_the_end_still_counts_the_total(
    bare_client: TestClient, ctx: AppContext, alice: Account
) -> None:
    _seed(ctx, alice.user)
    page = bare_client.get("/api/jobs?offset=10&limit=5", headers=alice.headers).json()
    assert page == {"items": [], "total": 3, "limit": 5, "offset": 10}
    page = bare_client.get("/api/jobs?status=completed", headers=alice.headers).json()
    assert [job["id"] for job in page["items"]] == ["job-finished"]
    assert page["total"] == 1


def test_others_and_non_admins_are_refused_as_before(
    bare_client: TestClient, ctx: AppContext, alice: Account, bob: Account
) -> None:
    experiment_id, _ = _seed(ctx, alice.user)
    for path, kind, ident in (
        ("/api/jobs/job-finished", "Job", "job-finished"),
        (f"/api/experiments/{experiment_id}/runs", "Experiment", experiment_id),
    ):
        response = bare_client.get(path, headers=bob.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "Not Found"
        assert ident in response.json()["message"]
        assert kind in response.json()["message"]
    assert bare_client.get("/api/jobs", headers=bob.headers).json()["total"] == 0
    response = bare_client.get("/api/users", headers=bob.headers)
    assert response.status_code == 403
    assert response.json() == {
        "error": "Forbidden",
        "message": "Administrator role required",
        "status": 403,
    }
    response = bare_client.get("/api/jobs")
    assert response.status_code == 401


def test_the_encoder_writes_what_pydantic_writes() -> None:
    moments = [
        datetime(2026, 1, 2, 3, 4, 5),  # a SQLite timestamp as the read path gets it
        datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 120_000, tzinfo=UTC),
    ]
    assert encode(moments) == TypeAdapter(list[UTCDatetime]).dump_json(moments)
    assert encode(moments) == (
        b'["2026-01-02T03:04:05Z","2026-01-02T03:04:05.000007Z","2026-01-02T03:04:05.120000Z"]'
    )
    values = {
        "floats": [0.1, 1e-5, 1e-7, 1e16, 1e20, -0.0, 123456789.0, float("inf"), float("nan")],
        "nested": [{"a": None, "b": [1, [2, {"c": "ü 日本"}]], "d": True}],
    }
    assert encode(values) == TypeAdapter(Any).dump_json(values)
