"""SSE and WebSocket streams: history, then live points, then the end; SSE resumes by id."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.conftest import Account
from tests.jobs.helpers import FINAL, PY, submit, wait_for, wait_until

# Logs three points, waits for a "go" file, logs two more, exits.
SCRIPT = """
import os, sys, time
import sparktrainer
go = sys.argv[1]
for step in range(3):
    sparktrainer.log({"loss": 1.0 - step / 10, "lr": 0.0001}, step=step * 100)
while not os.path.exists(go):
    time.sleep(0.02)
for step in range(3, 5):
    sparktrainer.log({"loss": 1.0 - step / 10, "lr": 0.0001}, step=step * 100)
"""


def _job(client: TestClient, account: Account, go: Path) -> dict[str, Any]:
    command = f"{PY} -c {shlex.quote(SCRIPT)} {shlex.quote(str(go))}"
    return submit(client, account.headers, command=command)


def _history_count(client: TestClient, account: Account, job_id: str) -> int:
    body = client.get(
        f"/api/jobs/{job_id}/metrics", params={"name": "loss"}, headers=account.headers
    ).json()
    return sum(len(series["steps"]) for series in body["metrics"])


def _parse_sse(raw: str) -> list[dict[str, str]]:
    events = []
    for block in raw.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            events.append(fields)
    return events


EXPECTED = [{"step": s * 100, "loss": 1.0 - s / 10, "lr": 0.0001} for s in range(5)]


def test_sse_history_then_live_then_end(client: TestClient, alice: Account, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = _job(client, alice, go)
    wait_until(lambda: _history_count(client, alice, job["id"]) == 3, what="history")

    with client.stream(
        "GET", f"/api/jobs/{job['id']}/stream", params={"access_token": alice.token}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = ""
        for chunk in response.iter_text():
            received += chunk
            if received.count("data: ") == 3 and not go.exists():
                go.touch()  # the history arrived; now the live points
            if "event: end" in received:
                break
    events = _parse_sse(received)
    assert events[0] == {"retry": "2000"}
    points = [e for e in events if "id" in e]
    assert [json.loads(e["data"]) for e in points] == EXPECTED
    assert [int(e["id"]) for e in points] == [1, 2, 3, 4, 5]
    end = events[-1]
    assert end["event"] == "end"
    assert json.loads(end["data"]) == {
        "event": "end",
        "status": "completed",
        "exit_code": 0,
        "reason": None,
    }


def test_sse_resumes_after_last_event_id(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    go.touch()
    job = _job(client, alice, go)
    wait_for(client, alice.headers, job["id"], FINAL)
    response = client.get(
        f"/api/jobs/{job['id']}/stream", headers={**alice.headers, "Last-Event-ID": "3"}
    )
    events = _parse_sse(response.text)
    assert [int(e["id"]) for e in events if "id" in e] == [4, 5]
    assert [json.loads(e["data"]) for e in events if "id" in e] == EXPECTED[3:]
    assert events[-1]["event"] == "end"


def test_websocket_history_live_end(client: TestClient, alice: Account, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = _job(client, alice, go)
    wait_until(lambda: _history_count(client, alice, job["id"]) == 3, what="history")
    messages = []
    with client.websocket_connect(
        f"/ws/jobs/{job['id']}/stream?access_token={alice.token}"
    ) as socket:
        for _ in range(3):
            messages.append(json.loads(socket.receive_text()))
        go.touch()
        while True:
            message = json.loads(socket.receive_text())
            messages.append(message)
            if message.get("event") == "end":
                break
    assert messages[:-1] == EXPECTED
    assert messages[-1]["status"] == "completed"


def test_websocket_resumes_after_an_id_it_sent(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    go.touch()
    job = _job(client, alice, go)
    wait_for(client, alice.headers, job["id"], FINAL)
    query = f"access_token={alice.token}&after=3&ids=true"
    messages = []
    with client.websocket_connect(f"/ws/jobs/{job['id']}/stream?{query}") as socket:
        while not messages or messages[-1].get("event") != "end":
            messages.append(json.loads(socket.receive_text()))
    assert messages[:-1] == [
        {"id": 4, "data": EXPECTED[3]},
        {"id": 5, "data": EXPECTED[4]},
    ]
    assert messages[-1]["status"] == "completed"


# Logs three points, waits for a "go" file, then logs 200 more as fast as it can.
BURST_SCRIPT = """
import os, sys, time
import sparktrainer
go = sys.argv[1]
for step in range(3):
    sparktrainer.log({"loss": step}, step=step)
while not os.path.exists(go):
    time.sleep(0.02)
for step in range(3, 203):
    sparktrainer.log({"loss": step}, step=step)
"""


def _batched_messages(client: TestClient, url: str) -> list[Any]:
    """Every message until the end, batches of points as their lists."""
    messages: list[Any] = []
    with client.websocket_connect(url) as socket:
        while not messages or not (
            isinstance(messages[-1], dict) and messages[-1].get("event") == "end"
        ):
            messages.append(json.loads(socket.receive_text()))
    return messages


def test_websocket_batches_deliver_every_point_once_in_order(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = f"{PY} -c {shlex.quote(BURST_SCRIPT)} {shlex.quote(str(go))}"
    job = submit(client, alice.headers, command=command)
    wait_until(lambda: _history_count(client, alice, job["id"]) == 3, what="history")
    url = f"/ws/jobs/{job['id']}/stream?access_token={alice.token}&ids=true&batch=true"
    messages: list[Any] = []
    with client.websocket_connect(url) as socket:
        # The stored history comes as one message.
        messages.append(json.loads(socket.receive_text()))
        assert messages[0] == [{"id": i + 1, "data": {"step": i, "loss": i}} for i in range(3)]
        go.touch()
        while not (isinstance(messages[-1], dict) and messages[-1].get("event") == "end"):
            messages.append(json.loads(socket.receive_text()))
    assert messages[-1]["status"] == "completed"
    points = [point for batch in messages[:-1] for point in batch]
    assert [p["id"] for p in points] == list(range(1, 204))
    assert [p["data"]["step"] for p in points] == list(range(203))

    # Resumed after an id it sent: the rest, once each, still batched.
    resumed = _batched_messages(client, f"{url}&after=150")
    assert [p["id"] for batch in resumed[:-1] for p in batch] == list(range(151, 204))
    assert resumed[-1]["event"] == "end"
    # Without ids, a batch holds the bare points.
    bare = _batched_messages(client, f"{url.replace('&ids=true', '')}&after=200")
    assert bare[:-1] == [[{"step": s, "loss": s} for s in range(200, 203)]]


def test_streams_refuse_strangers(
    client: TestClient, alice: Account, bob: Account, tmp_path: Path
) -> None:
    job = submit(client, alice.headers, command="true")
    assert client.get(f"/api/jobs/{job['id']}/stream").status_code == 401
    response = client.get(f"/api/jobs/{job['id']}/stream", params={"access_token": bob.token})
    assert response.status_code == 404
    for query in (f"?access_token={bob.token}", ""):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(f"/ws/jobs/{job['id']}/stream{query}") as socket,
        ):
            socket.receive_text()
        assert refused.value.code == 1008
