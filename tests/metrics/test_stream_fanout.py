"""Fan-out of a job's stream to many subscribers: every point to each, once, in order, in
few writes, each write encoded once for all of them."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.jobs.subscription import Batch, job_messages
from spark_trainer.metrics import hub
from spark_trainer.metrics.frames import Frame, encode_message, end_payload, sse_of
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import PY
from tests.live_server import port_of, serving

SUBSCRIBERS = 200
POINTS = 600

# Waits for a "go" file, then logs POINTS points as fast as it can, and exits.
SCRIPT = """
import os, sys, time
import sparktrainer
go, points = sys.argv[1], int(sys.argv[2])
while not os.path.exists(go):
    time.sleep(0.02)
for step in range(points):
    sparktrainer.log({"loss": step / 1000}, step=step)
"""


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    # Two hundred subscriptions in a moment, each counted like any request.
    return settings_factory(rate_limit_standard_per_minute=100_000)


@pytest.fixture
def live_server(settings: Settings, ctx: AppContext) -> Iterator[str]:
    with serving(create_app(settings, ctx)) as server:
        yield f"http://127.0.0.1:{port_of(server)}"


async def _sse_body(port: int, path: str, opened: asyncio.Future[None]) -> bytes:
    """The body of one SSE response up to its end event, de-chunked (raw HTTP/1.1);
    ``opened`` is set once the stream's first bytes arrived."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        body = b""
        while b"event: end" not in body:
            size = int((await reader.readline()).split(b";")[0], 16)
            assert size, f"the stream ended without its end event: {body[-200:]!r}"
            body += (await reader.readexactly(size + 2))[:-2]
            if not opened.done():
                opened.set_result(None)
        return body
    finally:
        writer.close()


def _events(body: bytes) -> list[dict[str, str]]:
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields and not block.startswith(":"):
            events.append(fields)
    return events


def test_two_hundred_sse_subscribers_each_get_every_point_once_in_order(
    live_server: str, alice: Account, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = f"{PY} -c {shlex.quote(SCRIPT)} {shlex.quote(str(go))} {POINTS}"
    with httpx.Client(base_url=live_server, headers=alice.headers, timeout=30) as http:
        created = http.post("/api/jobs", json={"name": "fan-out", "command": command})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        port = int(live_server.rsplit(":", 1)[1])
        path = f"/api/jobs/{job_id}/stream?access_token={alice.token}"

        async def run() -> list[bytes]:
            loop = asyncio.get_running_loop()
            opened = [loop.create_future() for _ in range(SUBSCRIBERS)]
            readers = [asyncio.ensure_future(_sse_body(port, path, o)) for o in opened]
            await asyncio.wait_for(asyncio.gather(*opened), 60)
            await asyncio.to_thread(go.touch)
            return await asyncio.wait_for(asyncio.gather(*readers), 120)

        bodies = asyncio.run(run())
        status = http.get(f"/api/jobs/{job_id}").json()["status"]
    assert status == "completed"
    expected = [
        {"id": str(step + 1), "data": json.dumps({"step": step, "loss": step / 1000})}
        for step in range(POINTS)
    ]
    for body in bodies:
        events = _events(body)
        assert events[0] == {"retry": "2000"}
        assert events[1:-1] == expected
        assert events[-1]["event"] == "end"
        assert json.loads(events[-1]["data"])["status"] == "completed"


def test_points_published_together_reach_each_subscriber_in_one_shared_write(
    ctx: AppContext,
) -> None:
    """Whatever arrives between two ticks goes to each of 200 subscribers as one write, the
    same bytes object for all of them (joined once), every point once and in order."""
    job_id = "fan-out-job"
    rounds = [list(range(1, 301)), list(range(301, 311)), [311]]

    lasts = [seqs[-1] for seqs in rounds]
    arrivals = [0 for _ in rounds]

    async def subscriber(batches: list[Batch], arrived: list[asyncio.Event]) -> None:
        async for batch in job_messages(ctx, job_id, 0):
            batches.append(batch)
            if batch.chunks and batch.chunks[-1].last in lasts:
                index = lasts.index(batch.chunks[-1].last)
                arrivals[index] += 1
                if arrivals[index] == SUBSCRIBERS:
                    arrived[index].set()
            if batch.end is not None:
                return

    async def run() -> list[list[Batch]]:
        ctx.hub.bind(asyncio.get_running_loop())
        arrived = [asyncio.Event() for _ in rounds]
        received: list[list[Batch]] = [[] for _ in range(SUBSCRIBERS)]
        tasks = [asyncio.ensure_future(subscriber(b, arrived)) for b in received]
        await asyncio.sleep(0)  # each task's first step subscribes it
        assert ctx.hub.subscriber_count(job_id) == SUBSCRIBERS
        for seqs, done in zip(rounds, arrived, strict=True):
            # One publish per point, all before the loop runs again: the next tick takes
            # them together.
            for seq in seqs:
                ctx.hub.publish(job_id, [Frame.of(seq, encode_message(seq, {"x": 1.0}))])
            await asyncio.wait_for(done.wait(), 30)
        ctx.hub.finish(job_id, end_payload("completed", 0, None))
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        return received

    received = asyncio.run(run())
    assert ctx.hub.subscriber_count(job_id) == 0
    for batches in received:
        writes = [sse_of(b.chunks) for b in batches[:-1]]
        assert len(writes) == len(rounds)
        assert [[int(e["id"]) for e in _events(w)] for w in writes] == rounds
        assert batches[-1].end is not None and json.loads(batches[-1].end)["status"] == "completed"
    for index in range(len(rounds)):
        first = sse_of(received[0][index].chunks)
        assert all(sse_of(b[index].chunks) is first for b in received)


def test_a_quiet_stream_pings_every_subscriber(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "KEEPALIVE_SECONDS", 0.2)
    job_id = "quiet-job"

    async def first_keepalive() -> Batch:
        async for batch in job_messages(ctx, job_id, 0):
            if batch.keepalive:
                return batch
        raise AssertionError("the stream ended without a keep-alive")

    async def run() -> list[Batch]:
        ctx.hub.bind(asyncio.get_running_loop())
        return await asyncio.wait_for(asyncio.gather(*(first_keepalive() for _ in range(20))), 30)

    assert all(batch.keepalive for batch in asyncio.run(run()))
    assert ctx.hub.subscriber_count(job_id) == 0
