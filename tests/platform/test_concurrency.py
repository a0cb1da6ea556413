"""Many concurrent requests against a real server: the connection pool must never deadlock
(every worker thread waiting for a connection that a request holds while it waits for a
worker thread to commit)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.live_server import port_of, serving


@pytest.fixture
def live_server(settings: Settings, ctx: AppContext) -> Iterator[str]:
    with serving(create_app(settings, ctx)) as server:
        yield f"http://127.0.0.1:{port_of(server)}"


def test_two_hundred_concurrent_requests_all_complete(live_server: str, admin: Account) -> None:
    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(base_url=live_server, timeout=30, limits=limits) as client:
            responses = await asyncio.gather(
                *(client.get("/api/auth/me", headers=admin.headers) for _ in range(200))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [200] * 200
