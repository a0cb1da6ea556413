"""Many concurrent requests against a real server: the connection pool must never deadlock
(every worker thread waiting for a connection that a request holds while it waits for a
worker thread to commit)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from tests.conftest import Account


@pytest.fixture
def live_server(settings: Settings, ctx: AppContext) -> Iterator[str]:
    config = uvicorn.Config(
        create_app(settings, ctx), host="127.0.0.1", port=0, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def test_two_hundred_concurrent_requests_all_complete(live_server: str, admin: Account) -> None:
    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(base_url=live_server, timeout=30, limits=limits) as client:
            responses = await asyncio.gather(
                *(client.get("/api/auth/me", headers=admin.headers) for _ in range(200))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [200] * 200
