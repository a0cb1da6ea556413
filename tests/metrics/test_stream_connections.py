"""A stream subscriber holds no database connection once its history is sent."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from tests.conftest import Account
from tests.jobs.helpers import FINAL, blocker, submit, wait_for, wait_until

SUBSCRIBERS = 30


def test_live_subscribers_hold_no_database_connection(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    job = submit(client, alice.headers, command=blocker(release))
    job_id = str(job["id"])
    wait_for(client, alice.headers, job_id, {"running"})
    url = f"/api/jobs/{job_id}/metrics"
    first = {"points": [{"step": 0, "metrics": {"loss": 1.0}}]}
    assert client.post(url, json=first, headers=alice.headers).status_code == 200
    stream = f"/ws/jobs/{job_id}/stream?access_token={alice.token}&ids=true&batch=true"
    try:
        with contextlib.ExitStack() as stack:
            sockets = [
                stack.enter_context(client.websocket_connect(stream)) for _ in range(SUBSCRIBERS)
            ]
            for socket in sockets:
                assert json.loads(socket.receive_text()) == [
                    {"id": 1, "data": {"step": 0, "loss": 1.0}}
                ]
            # More subscribers than a handful of connections: had each kept one, the pool
            # would show it (the engine's own loops take one now and then, briefly).
            wait_until(lambda: ctx.engine.pool.checkedout() <= 2, what="connections back")  # type: ignore[attr-defined]
            second = {"points": [{"step": 1, "metrics": {"loss": 0.5}}]}
            assert client.post(url, json=second, headers=alice.headers).status_code == 200
            for socket in sockets:
                assert json.loads(socket.receive_text()) == [
                    {"id": 2, "data": {"step": 1, "loss": 0.5}}
                ]
            wait_until(lambda: ctx.engine.pool.checkedout() <= 2, what="connections back")  # type: ignore[attr-defined]
    finally:
        release.touch()
    wait_for(client, alice.headers, job_id, FINAL)
