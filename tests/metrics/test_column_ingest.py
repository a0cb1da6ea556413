"""Points stored from column batches (binary COPY on PostgreSQL, the driver's executemany on
SQLite) read back exactly; a POST with one bad point stores nothing and says which."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from spark_trainer.context import AppContext
from spark_trainer.kit.pagination import MAX_INT64
from spark_trainer.metrics import store
from spark_trainer.metrics.frames import encode_message
from spark_trainer.metrics.pipeline import _number_parsed, encode_point, parse_points
from spark_trainer.metrics.rows import Rows
from spark_trainer.models import MetricPoint, MetricRollup, MetricSummary
from sparktrainer.tracking import _encode
from tests.conftest import Account
from tests.jobs.helpers import FINAL, submit, wait_for
from tests.jobs.test_metrics import _running_job_with_token

# Values a text round trip could bend: extremes, subnormals, negative zero, long mantissas.
AWKWARD = [0.1, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1 / 3, 1e16]


def _finished_job(client: TestClient, account: Account) -> str:
    job = submit(client, account.headers, command="true")
    wait_for(client, account.headers, job["id"], FINAL)
    return str(job["id"])


def _points(ctx: AppContext, job_id: str) -> list[tuple[int, str, int, float, float]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(
                MetricPoint.seq,
                MetricPoint.name,
                MetricPoint.step,
                MetricPoint.value,
                MetricPoint.wall_time,
            )
            .where(MetricPoint.job_id == job_id)
            .order_by(MetricPoint.seq, MetricPoint.name)
        ).all()
    return [(seq, name, step, value, wall) for seq, name, step, value, wall in rows]


def test_a_column_batch_is_stored_exactly(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    first, second = _finished_job(client, alice), _finished_job(client, alice)
    rows = []
    for i, value in enumerate(AWKWARD):
        rows.append((first, i + 1, "loss", i, value, 1_700_000_000.123456 + i))
        rows.append((first, i + 1, "λ/accuracy ✓", i, -value, 1_700_000_000.123456 + i))
    # A second job in the same batch, with the largest step there is.
    rows.append((second, 1, "loss", MAX_INT64, 2.5, 1e-3))
    with ctx.engine.begin() as conn:
        store.write_batch(conn, Rows.of(rows), [(first, len(AWKWARD), 123), (second, 1, None)])

    expected = sorted((row[1:] for row in rows if row[0] == first), key=lambda r: (r[0], r[1]))
    stored = _points(ctx, first)
    assert stored == expected
    if ctx.engine.dialect.name == "postgresql":
        # Equal is not enough for -0.0: binary COPY keeps its sign (SQLite stores an
        # integral REAL as an integer, and reads 0.0 back).
        signs = [math.copysign(1, r[3]) for r in stored]
        assert signs == [math.copysign(1, r[3]) for r in expected]
    assert _points(ctx, second) == [(1, "loss", MAX_INT64, 2.5, 1e-3)]

    with ctx.engine.connect() as conn:
        summary = conn.execute(
            select(
                MetricSummary.count,
                MetricSummary.min,
                MetricSummary.max,
                MetricSummary.latest,
                MetricSummary.latest_step,
            ).where(MetricSummary.job_id == first, MetricSummary.name == "loss")
        ).one()
        blocks = conn.scalars(select(MetricRollup.count).where(MetricRollup.job_id == first)).all()
    assert tuple(summary) == (len(AWKWARD), -1 / 3, AWKWARD[4], AWKWARD[-1], len(AWKWARD) - 1)
    assert sorted(blocks) == [len(AWKWARD), len(AWKWARD)]


def test_points_sent_again_are_stored_once(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    job_id = _finished_job(client, alice)
    batch = [(job_id, seq, "loss", seq, seq / 10, 1.0) for seq in range(1, 6)]
    with ctx.engine.begin() as conn:
        store.write_batch(conn, Rows.of(batch[:3]), [])
    # Steps 1-3 again (a retried POST, under new seqs), and step 4 twice in the batch.
    again = [(job_id, seq + 10, *rest) for _, seq, *rest in batch]
    again.insert(4, (job_id, 99, "loss", 4, 0.4, 1.0))
    with ctx.engine.begin() as conn:
        store.write_batch(conn, Rows.of(again), [])
    assert [(step, value) for _, _, step, value, _ in _points(ctx, job_id)] == [
        (step, step / 10) for step in range(1, 6)
    ]
    with ctx.engine.connect() as conn:
        count = conn.scalar(select(MetricSummary.count).where(MetricSummary.job_id == job_id))
    assert count == 5


def test_a_post_with_one_bad_point_stores_none(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    job, token, release = _running_job_with_token(client, alice, tmp_path)
    url = f"/api/jobs/{job['id']}/metrics"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    good = [{"step": i, "metrics": {"loss": i / 10}} for i in range(1_000)]
    cases = [
        ({"metrics": {"loss": "0.5"}}, "metric 'loss' must be a number"),
        ({"metrics": {"loss": 0.5}, "stpe": 3}, "unknown field 'stpe'"),
        ({"metrics": {"loss": 0.5}, "step": -1}, "'step' must be an integer"),
        ({"metrics": {"a\u0000b": 0.5}}, "control characters"),
        ({"metrics": {}}, "non-empty object"),
        ([1, 2], "must be an object"),
    ]
    for bad, message in cases:
        body = {"points": [*good[:700], bad, *good[700:]]}
        response = client.post(url, content=json.dumps(body), headers=headers)
        assert response.status_code == 400, (bad, response.text)
        answer = response.json()
        assert set(answer) == {"error", "message", "status"}
        assert answer["message"].startswith("points[700]: ")
        assert message in answer["message"], answer
    for raw in (b'{"points": [{"metrics": {"loss": 1e400}}]}', b'{"points": [', b"[]"):
        response = client.post(url, content=raw, headers=headers)
        assert response.status_code == 400, (raw, response.text)
        assert set(response.json()) == {"error", "message", "status"}
    assert _points(ctx, str(job["id"])) == []

    # The same batch without the bad point is stored whole; names lose surrounding spaces
    # as every string of a request body does.
    accepted = client.post(url, json={"points": [*good, {"metrics": {" lr ": 3}}]}, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 1_001
    stored = _points(ctx, str(job["id"]))
    assert [(name, step, value) for _, name, step, value, _ in stored] == [
        *(("loss", i, i / 10) for i in range(1_000)),
        ("lr", 1_000, 3.0),
    ]
    release.touch()


def test_frame_text_is_the_spec_message() -> None:
    cases = [
        (0, {"loss": 0.5}),
        (2**62, {"loss": 5e-324, "lr": -0.0, 'λ "quoted"': 1.7976931348623157e308}),
        (7, {"a\\b": 1e16, "gpu_util": 97.0}),
    ]
    for step, values in cases:
        assert encode_point(step, values) == encode_message(step, values)
    # Parsed points carry their values' text: numbered, it is the same message.
    points = parse_points([{"step": step, "metrics": values} for step, values in cases], now=1.0)
    rows, frames, seq, step = _number_parsed(points, 41, -1)
    assert [frame.data for frame in frames] == [encode_message(*case) for case in cases]
    assert [frame.seq for frame in frames] == [42, 43, 44]
    assert (seq, step, rows.seqs) == (44, 7, [42, 43, 43, 43, 44, 44])
    assert rows.names == [name for _, values in cases for name in values]


def test_the_sdk_line_is_the_json_of_the_point() -> None:
    metrics = {"loss": 0.1, 'λ "x"': -0.0, "big": 1e300, "count": 3}
    line = _encode(metrics, 12, 1_700_000_000.25)
    assert json.loads(line) == {
        "metrics": {"loss": 0.1, 'λ "x"': -0.0, "big": 1e300, "count": 3.0},
        "ts": 1_700_000_000.25,
        "step": 12,
    }
    assert json.loads(_encode({"x": 1.5}, None, 2.0)) == {"metrics": {"x": 1.5}, "ts": 2.0}


def test_one_series_is_folded_as_any_batch() -> None:
    rng = random.Random(3)
    steps = sorted(rng.sample(range(5_000), 1_500))
    rows = Rows.of(
        ("job-1", 10 + i, "loss", step, rng.uniform(-1, 1), 1e9 + rng.random())
        for i, step in enumerate(steps)
    )
    assert store._one_rising_series(rows)
    assert store._fold_one_series(rows) == store._fold(rows)
    rows.append("job-1", 9_999, "loss", 0, 0.0, 0.0)  # a step back: the general way
    assert not store._one_rising_series(rows)
