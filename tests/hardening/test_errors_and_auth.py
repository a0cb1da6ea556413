"""Items 8, 10, 11, 12 and 14: error answers, limits and who is asking.

8: a 500 keeps X-Request-ID and the rate-limit headers, and the connection stays open.
10: WebSocket streams count against the same per-user limit as HTTP.
11: X-Forwarded-For counts only from configured proxies (the login limiter held).
12: an unauthenticated metrics POST cannot tell whether a job id exists.
14: X-RateLimit-Remaining is exact under concurrency on Redis (one atomic operation).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.deps import CurrentUser
from spark_trainer.models import Job
from spark_trainer.routing import api_router
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.hardening.conftest import StartServer
from tests.hardening.wire import read_response
from tests.jobs.helpers import blocker, submit, wait_for, wait_until
from tests.live_server import port_of, serving
from tests.services import require_redis


@pytest.fixture
def failing_server(settings: Settings, ctx: AppContext) -> Iterator[int]:
    """A real server whose app has one extra route that fails after authenticating."""
    router = api_router(tags=["test"])

    @router.get("/api/fails")
    async def fails(user: CurrentUser) -> None:
        raise RuntimeError(f"a bug, hit by {user.id}")

    app = create_app(settings, ctx)
    app.include_router(router)
    with serving(app, start_timeout=30) as server:
        yield port_of(server)


def _exchange(sock: socket.socket, request: bytes) -> tuple[str, str]:
    sock.sendall(request)
    head, body = read_response(sock)
    return head.decode().lower(), body.decode()


def test_a_500_keeps_its_headers_and_the_connection(failing_server: int, alice: Account) -> None:
    request = (
        f"GET {{path}} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {alice.token}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", failing_server), timeout=30) as sock:
        head, body = _exchange(sock, request.format(path="/api/fails").encode())
        assert head.startswith("http/1.1 500"), head
        assert body == (
            '{"error":"Internal Server Error","message":"An internal error occurred","status":500}'
        )
        assert "x-request-id: " in head
        assert "x-ratelimit-remaining: " in head and "x-ratelimit-limit: " in head
        assert "connection: close" not in head
        # The same connection serves the next request.
        head, _ = _exchange(sock, request.format(path="/api/auth/me").encode())
        assert head.startswith("http/1.1 200"), head


def test_websockets_count_against_the_rate_limit(
    settings_factory: Callable[..., Settings], make_account: Callable[..., Account]
) -> None:
    settings = settings_factory(rate_limit_standard_per_minute=10)
    ctx = AppContext.build(settings)
    try:
        with TestClient(create_app(settings, ctx)) as client:
            alice = make_account()
            job = submit(client, alice.headers, command="true")

            def ended() -> bool:
                with ctx.session_factory() as session:
                    return session.get_one(Job, job["id"]).status == "completed"

            wait_until(ended, 30, "the job to end")  # read from the database: not counted
            me = client.get("/api/auth/me", headers=alice.headers)
            left = int(me.headers["X-RateLimit-Remaining"])
            url = f"/ws/jobs/{job['id']}/stream?access_token={alice.token}"
            for _ in range(left):
                with client.websocket_connect(url) as ws:
                    assert '"event": "end"' in ws.receive_text()
            # The next connection of the minute is refused like the next request.
            with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(url) as ws:
                ws.receive_text()
            assert refused.value.code == 1008
            assert "Rate limit" in refused.value.reason
            assert client.get("/api/auth/me", headers=alice.headers).status_code == 429
    finally:
        ctx.close()


def test_forwarded_for_does_not_dodge_the_login_limiter(start_server: StartServer) -> None:
    server = start_server(SPARKTRAINER_LOGIN_ATTEMPTS_PER_MINUTE="3")
    statuses = []
    for i in range(6):
        response = httpx.post(
            f"{server.base}/api/auth/login",
            json={"username": "admin", "password": "wrong-password"},
            headers={"X-Forwarded-For": f"10.0.0.{i}"},
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429, 429]


def test_forwarded_for_counts_from_a_configured_proxy(start_server: StartServer) -> None:
    server = start_server(
        SPARKTRAINER_LOGIN_ATTEMPTS_PER_MINUTE="3", SPARKTRAINER_TRUSTED_PROXIES="127.0.0.1"
    )
    statuses = [
        httpx.post(
            f"{server.base}/api/auth/login",
            json={"username": "admin", "password": "wrong-password"},
            headers={"X-Forwarded-For": f"10.0.0.{i}"},
        ).status_code
        for i in range(6)
    ]
    # Each forwarded client is a client of its own behind the trusted proxy.
    assert statuses == [401] * 6


def test_an_unauthenticated_metrics_post_cannot_probe_job_ids(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    job = submit(client, alice.headers, command=blocker(release))
    wait_for(client, alice.headers, job["id"], {"running"})
    body = {"points": [{"step": 1, "metrics": {"x": 1}}]}
    answers = []
    for job_id in (job["id"], "job-0000000000000000"):
        for headers in ({}, {"Authorization": "Bearer stj_forged"}, {"Authorization": "x"}):
            response = client.post(f"/api/jobs/{job_id}/metrics", json=body, headers=headers)
            assert response.status_code == 401, response.text
            answers.append((str(headers), response.json()))
    # The same answers whether the job exists or not.
    assert answers[:3] == answers[3:]
    release.touch()
    wait_for(client, alice.headers, job["id"], {"completed"})


def test_rate_limit_remaining_is_exact_under_concurrency_on_redis(
    settings_factory: Callable[..., Settings], make_account: Callable[..., Account]
) -> None:
    settings = settings_factory(redis_url=require_redis())
    ctx = AppContext.build(settings)
    try:
        with TestClient(create_app(settings, ctx)) as client:
            account = make_account()
            ctx.limiter.storage.reset()

            def remaining(_: int) -> int:
                response = client.get("/api/auth/me", headers=account.headers)
                assert response.status_code == 200, response.text
                return int(response.headers["X-RateLimit-Remaining"])

            with ThreadPoolExecutor(8) as pool:
                seen = list(pool.map(remaining, range(60)))
        # 60 concurrent requests of a 100 limit: each saw its own count, none twice.
        assert sorted(seen) == list(range(40, 100))
    finally:
        ctx.close()
