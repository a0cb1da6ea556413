"""How metric points reach the database: a small group as one INSERT, a larger one by
COPY (PostgreSQL), each point stored once; a point for a job that does not exist is
refused by the database, and a deleted job's points go with it (on PostgreSQL through
the statement-level triggers of migration 0024, on SQLite through the foreign key)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from spark_trainer.context import AppContext
from spark_trainer.db.migrate import alembic_config
from spark_trainer.metrics import store
from spark_trainer.metrics.frames import Frame
from spark_trainer.metrics.rows import Rows
from spark_trainer.models import MetricPoint, MetricRollup, MetricSummary
from tests.conftest import Account
from tests.jobs.helpers import FINAL, submit, wait_for
from tests.jobs.test_metrics import _running_job_with_token

# Groups of up to this many rows are inserted in one statement, larger ones copied.
SMALL = store.INSERT_MAX_ROWS
# The points go to the driver directly (COPY, executemany), so its own error may arrive.
REFUSED = (IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)
FOREIGN_KEY = "(?i)foreign key"


def _points(steps: range, metrics: tuple[str, ...]) -> list[dict[str, object]]:
    return [
        {"step": step, "metrics": {name: step + index / 10 for index, name in enumerate(metrics)}}
        for step in steps
    ]


def _stored(ctx: AppContext, job_id: str) -> list[tuple[str, int, float]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(MetricPoint.name, MetricPoint.step, MetricPoint.value)
            .where(MetricPoint.job_id == job_id)
            .order_by(MetricPoint.name, MetricPoint.step)
        ).all()
    return [(name, step, value) for name, step, value in rows]


def _expected(steps: range, metrics: tuple[str, ...]) -> list[tuple[str, int, float]]:
    return sorted(
        (name, step, step + index / 10) for step in steps for index, name in enumerate(metrics)
    )


def _counts(ctx: AppContext, job_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """Each series' count in its summary, and summed over its rollup blocks."""
    with ctx.engine.connect() as conn:
        summaries = conn.execute(
            select(MetricSummary.name, MetricSummary.count).where(MetricSummary.job_id == job_id)
        ).all()
        rollups = conn.execute(
            select(MetricRollup.name, func.sum(MetricRollup.count))
            .where(MetricRollup.job_id == job_id)
            .group_by(MetricRollup.name)
        ).all()
    return {n: int(c) for n, c in summaries}, {n: int(c) for n, c in rollups}


def _rows(job_id: str, count: int) -> Rows:
    return Rows.of((job_id, seq, "loss", seq, seq / 2, 1.0) for seq in range(1, count + 1))


def test_small_and_large_groups_store_every_point_once(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    job, token, release = _running_job_with_token(client, alice, tmp_path)
    job_id = str(job["id"])
    url = f"/api/jobs/{job_id}/metrics"
    headers = {"Authorization": f"Bearer {token}"}
    # 20 rows: one INSERT; 1,000 points of 2 metrics, 2,000 rows: COPY.
    small, large = range(0, 20), range(20, 1020)
    assert len(small) <= SMALL < 2 * len(large)
    try:
        for steps, metrics in ((small, ("loss",)), (large, ("loss", "acc"))):
            answer = client.post(url, json={"points": _points(steps, metrics)}, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == len(steps)
        expected = sorted(_expected(small, ("loss",)) + _expected(large, ("loss", "acc")))
        assert _stored(ctx, job_id) == expected
        assert _counts(ctx, job_id) == ({"loss": 1020, "acc": 1000}, {"loss": 1020, "acc": 1000})

        # Both sent again (a client retrying after a lost answer): every point is already
        # stored, so the optimistic write is refused and the careful one leaves them out.
        for steps, metrics in ((small, ("loss",)), (large, ("loss", "acc"))):
            answer = client.post(url, json={"points": _points(steps, metrics)}, headers=headers)
            assert answer.status_code == 200, answer.text
        # A group mixing stored and new points stores the new ones once.
        answer = client.post(
            url, json={"points": _points(range(1010, 1030), ("loss",))}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        expected = sorted(expected + _expected(range(1020, 1030), ("loss",)))
        assert _stored(ctx, job_id) == expected
        assert _counts(ctx, job_id) == ({"loss": 1030, "acc": 1000}, {"loss": 1030, "acc": 1000})
    finally:
        release.touch()
    wait_for(client, alice.headers, job_id, FINAL)


@pytest.mark.parametrize("count", [1, SMALL + 1])
def test_points_for_a_missing_job_are_refused_by_the_database(
    client: TestClient, ctx: AppContext, alice: Account, count: int
) -> None:
    rows = _rows("job_missing", count)
    with pytest.raises(REFUSED, match=FOREIGN_KEY), ctx.engine.begin() as conn:
        store.write_batch(conn, rows, [])
    # The pipeline's own way (on PostgreSQL its pipelined write, then the careful one).
    with pytest.raises(REFUSED, match=FOREIGN_KEY):
        ctx.jobs.pipeline._write(rows, {})
    with ctx.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(MetricPoint)) == 0

    # Over HTTP the job's absence is the spec's error before any point is numbered.
    missing = client.post(
        "/api/jobs/job_missing/metrics",
        json={"points": [{"metrics": {"loss": 1.0}}]},
        headers=alice.headers,
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"] == "Not Found"


def test_deleting_a_job_deletes_its_points(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    kept, deleted = (submit(client, alice.headers, command="true")["id"] for _ in range(2))
    for job_id in (kept, deleted):
        wait_for(client, alice.headers, job_id, FINAL)
        with ctx.engine.begin() as conn:
            store.write_batch(conn, _rows(job_id, SMALL + 1), [])
    with ctx.engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": deleted})
    assert _stored(ctx, deleted) == []
    assert len(_stored(ctx, kept)) == SMALL + 1
    # Through the owner's deletion too: users -> jobs -> points.
    with ctx.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": alice.user.id})
    with ctx.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(MetricPoint)) == 0


def _migrate(ctx: AppContext, revision: str, *, up: bool) -> None:
    config = alembic_config()
    with ctx.engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(config, revision)


def _point_checks(ctx: AppContext) -> tuple[list[str], list[str]]:
    """metric_points' foreign keys, and the triggers that stand in for one."""
    with ctx.engine.connect() as conn:
        keys = [str(fk["name"]) for fk in inspect(conn).get_foreign_keys("metric_points")]
        triggers = (
            list(
                conn.scalars(
                    text(
                        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
                        " AND tgrelid IN ('metric_points'::regclass, 'jobs'::regclass)"
                        " ORDER BY tgname"
                    )
                )
            )
            if ctx.engine.dialect.name == "postgresql"
            else []
        )
    return keys, triggers


def test_the_migration_upgrades_and_downgrades(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    job_id = submit(client, alice.headers, command="true")["id"]
    wait_for(client, alice.headers, job_id, FINAL)
    postgres = ctx.engine.dialect.name == "postgresql"
    triggers = [
        "jobs_id_updated",
        "jobs_metric_points_deleted",
        "jobs_metric_points_truncated",
        "metric_points_job_inserted",
        "metric_points_job_updated",
    ]
    sqlite_key = [] if postgres else ["fk_metric_points_job_id_jobs"]
    assert _point_checks(ctx) == (sqlite_key, triggers if postgres else [])
    _migrate(ctx, "0023", up=False)
    try:
        assert _point_checks(ctx) == (["fk_metric_points_job_id_jobs"], [])
        with pytest.raises(REFUSED, match=FOREIGN_KEY), ctx.engine.begin() as conn:
            store.write_batch(conn, _rows("job_missing", 1), [])
        with ctx.engine.begin() as conn:
            store.write_batch(conn, _rows(job_id, 3), [])
    finally:
        _migrate(ctx, "head", up=True)
    assert _point_checks(ctx) == (sqlite_key, triggers if postgres else [])
    # Points stored before the upgrade are still checked against, and deleted with, their job.
    assert len(_stored(ctx, job_id)) == 3
    with ctx.engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": job_id})
    assert _stored(ctx, job_id) == []


def test_a_frame_is_encoded_when_read() -> None:
    frame = Frame(7, 3, '"loss": 0.5, "lr": 0.001')
    assert frame.data == '{"step": 3, "loss": 0.5, "lr": 0.001}'
    assert frame.sse == b'id: 7\ndata: {"step": 3, "loss": 0.5, "lr": 0.001}\n\n'
    assert frame.with_id == '{"id": 7, "data": {"step": 3, "loss": 0.5, "lr": 0.001}}'
    assert Frame.of(8, '{"step": 4}').sse == b'id: 8\ndata: {"step": 4}\n\n'
