"""A point sent again (a retried POST, a metrics line read again) is stored once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from spark_trainer.context import AppContext
from spark_trainer.db.migrate import alembic_config
from spark_trainer.metrics.pipeline import FileTailer, MetricsPipeline
from spark_trainer.models import Job, MetricPoint, MetricSummary
from tests.conftest import Account
from tests.jobs.helpers import FINAL, blocker, submit, wait_for


def _stored(ctx: AppContext, job_id: str, name: str) -> list[tuple[int, float]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(MetricPoint.step, MetricPoint.value)
            .where(MetricPoint.job_id == job_id, MetricPoint.name == name)
            .order_by(MetricPoint.step, MetricPoint.value)
        ).all()
    return [(step, value) for step, value in rows]


def _summary_count(ctx: AppContext, job_id: str, name: str) -> int | None:
    with ctx.engine.connect() as conn:
        return conn.scalar(
            select(MetricSummary.count).where(
                MetricSummary.job_id == job_id, MetricSummary.name == name
            )
        )


def test_a_retried_metrics_post_stores_each_point_once(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    job = submit(client, alice.headers, command=blocker(release))
    wait_for(client, alice.headers, job["id"], {"running"})
    url = f"/api/jobs/{job['id']}/metrics"
    body = {
        "points": [
            {"step": step, "metrics": {"loss": 1 / (step + 1), "acc": step / 100}}
            for step in range(100)
        ]
    }
    try:
        for _ in range(2):  # the answer to the first was lost: the client sends it again
            answer = client.post(url, json=body, headers=alice.headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == 100
        ctx.jobs.pipeline.flush()
        # A retry that reaches the server while the first copy is still queued, a point
        # repeated within one request, and a new value at a step already logged.
        again: list[dict[str, Any]] = [
            *body["points"][50:],
            {"step": 100, "metrics": {"loss": 0.5}},
        ]
        again += [again[-1], {"step": 7, "metrics": {"loss": -1.0}}]
        for _ in range(2):
            answer = client.post(url, json={"points": again}, headers=alice.headers)
            assert answer.status_code == 200, answer.text
        ctx.jobs.pipeline.flush()
    finally:
        release.touch()

    expected = sorted([(s, 1 / (s + 1)) for s in range(100)] + [(100, 0.5), (7, -1.0)])
    assert _stored(ctx, job["id"], "loss") == expected
    assert _stored(ctx, job["id"], "acc") == [(s, s / 100) for s in range(100)]
    assert _summary_count(ctx, job["id"], "loss") == 102
    assert _summary_count(ctx, job["id"], "acc") == 100
    history = client.get(url, params={"name": "loss"}, headers=alice.headers).json()
    assert history["metrics"][0]["count"] == 102
    wait_for(client, alice.headers, job["id"], FINAL)


def test_metrics_lines_read_again_after_a_restart_are_stored_once(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    job = submit(client, alice.headers, command="true")
    wait_for(client, alice.headers, job["id"], FINAL)
    metrics_file = tmp_path / "metrics.jsonl"
    metrics_file.write_text(
        "".join(
            json.dumps({"step": step, "metrics": {"loss": step * 0.5}, "ts": 1.7e9 + step}) + "\n"
            for step in range(50)
        )
    )

    def read_whole_file() -> None:
        # A fresh pipeline and tailer each time, as in a newly started server process.
        pipeline = MetricsPipeline(ctx.engine, ctx.bus)
        tailer = FileTailer(pipeline)
        tailer.follow(job["id"], metrics_file)
        tailer.drain(job["id"])
        pipeline.flush()

    read_whole_file()
    # The recorded offset is lost (say, restored from an older backup): every line is read
    # again from the start.
    with ctx.engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job["id"]).values(metrics_offset=0))
    read_whole_file()

    assert _stored(ctx, job["id"], "loss") == [(s, s * 0.5) for s in range(50)]
    assert _summary_count(ctx, job["id"], "loss") == 50


def test_the_migration_removes_points_stored_twice(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    job = submit(client, alice.headers, command="true")
    wait_for(client, alice.headers, job["id"], FINAL)
    config = alembic_config()
    with ctx.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0012")
    try:
        with ctx.engine.begin() as conn:
            # Before the natural key, a retried point was a second row with its own seq.
            for seq, step in [(1, 0), (2, 1), (3, 0), (4, 1), (5, 1)]:
                conn.execute(
                    MetricPoint.__table__.insert().values(
                        job_id=job["id"], seq=seq, name="loss", step=step, value=0.25, wall_time=1.0
                    )
                )
    finally:
        with ctx.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    with ctx.engine.connect() as conn:
        seqs = conn.scalars(
            select(MetricPoint.seq).where(MetricPoint.job_id == job["id"]).order_by("seq")
        ).all()
        assert seqs == [1, 2]
        assert conn.scalar(select(func.count()).select_from(MetricPoint)) == 2
