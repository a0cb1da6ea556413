"""Group commit of metrics POSTs: concurrent requests stored together, a 200 only once
stored, and a group whose storage fails answering errors to exactly its requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from spark_trainer.context import AppContext
from spark_trainer.errors import ServiceUnavailable
from spark_trainer.metrics.frames import Frame
from spark_trainer.metrics.group_commit import IngestState, Submission
from spark_trainer.metrics.pipeline import Point
from spark_trainer.models import MetricPoint, MetricSummary
from tests.conftest import Account
from tests.jobs.helpers import FINAL, wait_for
from tests.jobs.test_metrics import _running_job_with_token

# Stored by no database while the trigger below is in place.
POISON = 13.0


def _stored(ctx: AppContext, job_id: str) -> list[tuple[int, float]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(MetricPoint.step, MetricPoint.value)
            .where(MetricPoint.job_id == job_id)
            .order_by(MetricPoint.step)
        ).all()
    return [(step, value) for step, value in rows]


@contextlib.contextmanager
def _poisoned(ctx: AppContext) -> Iterator[None]:
    """A trigger that makes the database refuse any point whose value is POISON."""
    if ctx.engine.dialect.name == "sqlite":
        create = [
            "CREATE TRIGGER poison BEFORE INSERT ON metric_points "
            f"WHEN NEW.value = {POISON} BEGIN SELECT RAISE(ABORT, 'poisoned point'); END"
        ]
        drop = ["DROP TRIGGER poison"]
    else:
        create = [
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.value = {POISON} THEN RAISE EXCEPTION 'poisoned point'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER poison BEFORE INSERT ON metric_points "
            "FOR EACH ROW EXECUTE FUNCTION poison()",
        ]
        drop = ["DROP TRIGGER poison ON metric_points", "DROP FUNCTION poison()"]
    with ctx.engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with ctx.engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))


def test_concurrent_single_points_are_all_stored_when_answered(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    job, token, release = _running_job_with_token(client, alice, tmp_path)
    job_id = str(job["id"])
    url = f"/api/jobs/{job_id}/metrics"
    headers = {"Authorization": f"Bearer {token}"}

    def post(step: int) -> int:
        answer = client.post(
            url, json={"points": [{"step": step, "metrics": {"loss": step / 10}}]}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        seq: int = answer.json()["last_seq"]
        return seq

    try:
        with ThreadPoolExecutor(16) as pool:
            seqs = list(pool.map(post, range(200)))
        # Every answer came after its commit: all are stored now, with no flush asked for.
        assert _stored(ctx, job_id) == [(step, step / 10) for step in range(200)]
        assert sorted(seqs) == list(range(1, 201))
        with ctx.engine.connect() as conn:
            count = conn.scalar(select(MetricSummary.count).where(MetricSummary.job_id == job_id))
            assert count == 200
            assert conn.scalar(select(func.count()).select_from(MetricPoint)) == 200
    finally:
        release.touch()
    wait_for(client, alice.headers, job_id, FINAL)


def test_a_group_that_cannot_be_stored_fails_exactly_its_bad_requests(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    job, token, release = _running_job_with_token(client, alice, tmp_path)
    job_id = str(job["id"])
    pipeline = ctx.jobs.pipeline

    def allow(state: IngestState | None) -> None:
        assert state is not None and state.status == "running"

    def submission(step: int, value: float) -> Submission:
        return Submission(job_id, [Point(step, {"loss": value}, 1.0)], allow)

    try:
        with _poisoned(ctx):
            # One group, as the writer thread would take it: the poisoned request fails
            # the group's transaction, and only it is answered an error.
            group = [submission(1, 0.1), submission(2, POISON), submission(3, 0.3)]
            outcomes = pipeline._store_group(group)
            assert isinstance(outcomes[1], ServiceUnavailable)
            assert [type(o) for o in (outcomes[0], outcomes[2])] == [list, list]
            assert all(isinstance(f, Frame) for o in outcomes if isinstance(o, list) for f in o)
            assert _stored(ctx, job_id) == [(1, 0.1), (3, 0.3)]

            # Over HTTP, concurrently: each request is answered for its own points.
            url = f"/api/jobs/{job_id}/metrics"
            headers = {"Authorization": f"Bearer {token}"}

            def post(step: int) -> int:
                value = POISON if step % 5 == 0 else step / 100
                return client.post(
                    url,
                    json={"points": [{"step": step, "metrics": {"loss": value}}]},
                    headers=headers,
                ).status_code

            with ThreadPoolExecutor(8) as pool:
                statuses = dict(zip(range(10, 50), pool.map(post, range(10, 50)), strict=True))
            assert {s for s, code in statuses.items() if code != 200} == set(range(10, 50, 5))
            assert {code for s, code in statuses.items() if s % 5 == 0} == {503}

        # Not wedged: the next request is stored as usual.
        answer = client.post(
            url, json={"points": [{"step": 100, "metrics": {"loss": 1.0}}]}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        expected = [(1, 0.1), (3, 0.3)]
        expected += [(s, s / 100) for s in range(10, 50) if s % 5 != 0]
        assert _stored(ctx, job_id) == [*expected, (100, 1.0)]
    finally:
        release.touch()
    wait_for(client, alice.headers, job_id, FINAL)


def test_refusals_come_from_the_jobs_state_in_the_group(
    client: TestClient, ctx: AppContext, alice: Account, bob: Account, tmp_path: Path
) -> None:
    job, token, release = _running_job_with_token(client, alice, tmp_path)
    job_id = str(job["id"])
    url = f"/api/jobs/{job_id}/metrics"
    # Past the schema, refused by the point rules: 'step' is reserved.
    bad_point = {"points": [{"metrics": {"step": 1}}]}
    try:
        # Who may not post learns that before anything about the points.
        forged = client.post(url, json=bad_point, headers={"Authorization": "Bearer stj_nope"})
        assert forged.status_code == 401
        assert client.post(url, json=bad_point, headers=bob.headers).status_code == 404
        invalid = client.post(url, json=bad_point, headers={"Authorization": f"Bearer {token}"})
        assert invalid.status_code == 400
        assert "reserved" in invalid.json()["message"]
        unknown = client.post(
            "/api/jobs/job_missing/metrics",
            json={"points": [{"metrics": {"loss": 1}}]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert unknown.status_code == 401
    finally:
        release.touch()
    wait_for(client, alice.headers, job_id, FINAL)
    assert _stored(ctx, job_id) == []
    # A request that arrives while the writer is stopped is refused, not left hanging.
    pipeline = ctx.jobs.pipeline
    pipeline.commits.stop()
    try:
        with pytest.raises(ServiceUnavailable):
            asyncio.run(pipeline.submit(job_id, [], lambda state: None))
    finally:
        pipeline.commits.start()
