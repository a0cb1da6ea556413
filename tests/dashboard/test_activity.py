"""``GET /api/events/stream``: each user hears their own jobs' status changes, live."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spark_trainer.activity.hub import QUEUE_LIMIT, ActivityHub
from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.dashboard.helpers import EventReader
from tests.jobs.helpers import blocker, submit, wait_for
from tests.services import require_redis


def _statuses(events: list[dict[str, Any]], job_id: str) -> list[str]:
    return [e["status"] for e in events if e["job_id"] == job_id and e["type"] == "job.status"]


def _ended(job_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: "completed" in _statuses(events, job_id)


def test_own_jobs_live_others_hidden_admin_sees_all(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    with (
        EventReader(client, alice.token) as alice_events,
        EventReader(client, admin.token) as admin_events,
    ):
        bobs = submit(client, bob.headers, name="bobs-job", command="true")
        alices = submit(client, alice.headers, name="alices-job", command="true")
        events = alice_events.wait_for(_ended(alices["id"]))
        admin_events.wait_for(lambda ev: _ended(bobs["id"])(ev) and _ended(alices["id"])(ev))

    assert alice_events.status_code == 200
    assert {e["job_id"] for e in events} == {alices["id"]}
    submitted, *changes = events
    assert submitted["type"] == "job.submitted"
    assert submitted["status"] == "pending" and submitted["name"] == "alices-job"
    assert submitted["owner_id"] == alice.user.id
    assert [(c["previous_status"], c["status"]) for c in changes] == [
        ("pending", "running"),
        ("running", "completed"),
    ]
    assert changes[-1]["reason"] is None and changes[-1]["at"].endswith("Z")


def test_cancel_and_pending_reason_are_announced(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    with EventReader(client, alice.token) as events:
        holder = submit(client, alice.headers, gpu_count=4, command=blocker(tmp_path / "go"))
        wait_for(client, alice.headers, holder["id"], {"running"})
        waiting = submit(client, alice.headers, gpu_count=2, command="true")
        events.wait_for(
            lambda ev: any(
                e["type"] == "job.pending_reason" and e["job_id"] == waiting["id"] for e in ev
            )
        )
        assert client.post(f"/api/jobs/{waiting['id']}/cancel", headers=alice.headers).is_success
        seen = events.wait_for(lambda ev: "cancelled" in _statuses(ev, waiting["id"]))
        (tmp_path / "go").touch()
    reason = next(e for e in seen if e["type"] == "job.pending_reason")
    assert "needs 2 GPUs" in reason["pending_reason"]
    cancelled = next(e for e in seen if e.get("status") == "cancelled")
    assert cancelled["reason"] == "cancelled by user"


def test_needs_a_credential(client: TestClient) -> None:
    response = client.get("/api/events/stream")
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message", "status"}
    bad = client.get("/api/events/stream", params={"access_token": "nope"})
    assert bad.status_code == 401


@pytest.mark.redis
def test_changes_cross_processes_through_redis(
    settings_factory: Callable[..., Settings],
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    redis_url = require_redis()
    runner_settings = settings_factory(redis_url=redis_url)
    viewer_settings = settings_factory(
        redis_url=redis_url, gpus=0, node_name="viewer", data_dir=tmp_path / "viewer"
    )
    runner_ctx, viewer_ctx = AppContext.build(runner_settings), AppContext.build(viewer_settings)
    alice = make_account()
    with (
        TestClient(create_app(runner_settings, runner_ctx)) as runner,
        TestClient(create_app(viewer_settings, viewer_ctx)) as viewer,
        EventReader(viewer, alice.token) as events,
    ):
        job = submit(runner, alice.headers, command=shlex.join(["true"]))
        seen = events.wait_for(_ended(job["id"]))
    assert _statuses(seen, job["id"]) == ["running", "completed"]


def test_a_reader_too_slow_is_told_to_resync() -> None:
    async def scenario() -> tuple[list[str], bool, list[str]]:
        hub = ActivityHub()
        hub.bind(asyncio.get_running_loop())
        mine = hub.subscribe("user-a", sees_all=False)
        others = hub.subscribe("user-b", sees_all=False)
        for i in range(QUEUE_LIMIT + 5):
            hub.publish({"owner_id": "user-a", "job_id": f"job-{i}"})
        await asyncio.sleep(0)  # the hand-offs run on the loop
        messages, overflowed = mine.take()
        return messages, overflowed, others.take()[0]

    messages, overflowed, others = asyncio.run(scenario())
    # The oldest were dropped, and the reader learns it (the stream sends `resync`).
    assert overflowed and len(messages) == 5
    assert json.loads(messages[-1])["job_id"] == f"job-{QUEUE_LIMIT + 4}"
    assert others == []
