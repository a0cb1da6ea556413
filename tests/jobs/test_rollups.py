"""Downsampling a long history from the rollup blocks kept at ingest: exact extremes."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from spark_trainer.context import AppContext
from spark_trainer.metrics import store
from spark_trainer.metrics.rows import Rows
from spark_trainer.models import MetricRollup
from tests.conftest import Account
from tests.jobs.helpers import FINAL, submit, wait_for

POINTS = 20_000


def test_downsampled_buckets_keep_exact_extremes(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    job = submit(client, alice.headers, command="true")
    wait_for(client, alice.headers, job["id"], FINAL)
    rng = random.Random(9)
    values = [rng.uniform(-1, 1) for _ in range(POINTS)]
    values[12_345] = 99.0  # a spike and a dip that a mean would hide
    values[3_210] = -99.0
    rows = [
        (job["id"], i + 1, "loss", i, value, 1_700_000_000.0 + i) for i, value in enumerate(values)
    ]
    # In several batches, so blocks are merged across transactions as at real ingest.
    for start in range(0, POINTS, 3_000):
        with ctx.engine.begin() as conn:
            store.write_batch(conn, Rows.of(rows[start : start + 3_000]), [])
    with ctx.engine.connect() as conn:
        blocks = conn.scalar(select(func.count()).select_from(MetricRollup))
    assert blocks == -(-POINTS // 128)

    series = client.get(
        f"/api/jobs/{job['id']}/metrics",
        params={"name": "loss", "max_points": 10},
        headers=alice.headers,
    ).json()["metrics"][0]
    assert series["downsampled"] is True
    assert series["count"] == POINTS
    assert 2 <= len(series["steps"]) <= 10
    assert series["steps"] == sorted(series["steps"])
    # Each bucket is (its first step, its min), (its last step, its max): both exact.
    pairs = list(zip(series["steps"][::2], series["steps"][1::2], strict=True))
    for (first, last), vmin, vmax in zip(
        pairs, series["values"][::2], series["values"][1::2], strict=True
    ):
        assert vmin == min(values[first : last + 1])
        assert vmax == max(values[first : last + 1])
    assert (pairs[0][0], pairs[-1][1]) == (0, POINTS - 1)
    assert 99.0 in series["values"] and -99.0 in series["values"]
