from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.models import Tier
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.services import require_redis


def _exhaust(client: TestClient, headers: dict[str, str], limit: int) -> None:
    started = time.time()
    for i in range(limit):
        response = client.get("/api/auth/me", headers=headers)
        assert response.status_code == 200, i
        assert response.headers["X-RateLimit-Limit"] == str(limit)
        assert response.headers["X-RateLimit-Remaining"] == str(limit - i - 1)
        reset = int(response.headers["X-RateLimit-Reset"])
        assert started <= reset <= time.time() + 61


def _assert_blocked(client: TestClient, headers: dict[str, str], limit: int) -> None:
    blocked = client.get("/api/auth/me", headers=headers)
    assert blocked.status_code == 429
    assert blocked.json()["status"] == 429
    assert blocked.json()["error"] == "Too Many Requests"
    assert blocked.headers["X-RateLimit-Limit"] == str(limit)
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    retry_after = int(blocked.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert int(blocked.headers["X-RateLimit-Reset"]) >= int(time.time())


@pytest.mark.parametrize("tier", [Tier.STANDARD, Tier.PREMIUM])
def test_limit_is_exact_at_the_boundary(
    client: TestClient, make_account: Callable[..., Account], tier: Tier
) -> None:
    limit = 100 if tier == Tier.STANDARD else 1000
    account = make_account(tier=tier)
    _exhaust(client, account.headers, limit)
    _assert_blocked(client, account.headers, limit)
    # The limit is per user: someone else is unaffected.
    other = make_account()
    assert client.get("/api/auth/me", headers=other.headers).status_code == 200


def test_unauthenticated_requests_carry_no_rate_headers(client: TestClient) -> None:
    assert "X-RateLimit-Limit" not in client.get("/healthz").headers


@pytest.mark.redis
def test_redis_limit_is_shared_between_two_app_instances(
    settings_factory: Callable[..., Settings], make_account: Callable[..., Account]
) -> None:
    redis_url = require_redis()
    settings = settings_factory(redis_url=redis_url, rate_limit_standard_per_minute=20)
    first_ctx, second_ctx = AppContext.build(settings), AppContext.build(settings)
    account = make_account()
    with (
        TestClient(create_app(settings, first_ctx)) as first,
        TestClient(create_app(settings, second_ctx)) as second,
    ):
        for i in range(20):
            target = first if i % 2 == 0 else second
            response = target.get("/api/auth/me", headers=account.headers)
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Remaining"] == str(19 - i)
        _assert_blocked(first, account.headers, 20)
        _assert_blocked(second, account.headers, 20)
        ready = first.get("/readyz")
        assert ready.json()["backends"]["redis"] == redis_url.replace("redis://", "redis://", 1)
        assert {k: v for k, v in ready.json().items() if k != "backends"} == {
            "status": "ready",
            "database": True,
            "redis": True,
            "celery": True,
            "workers": {},
        }
    first_ctx.close()
    second_ctx.close()


@pytest.mark.redis
def test_readyz_is_503_when_redis_is_down(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(redis_url="redis://127.0.0.1:1/0")
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as client:
        response = client.get("/readyz")
    ctx.close()
    assert response.status_code == 503
    body = response.json()
    assert body["backends"]["redis"] == "redis://127.0.0.1:1/0"
    del body["backends"]
    assert body == {
        "status": "not ready",
        "database": True,
        "redis": False,
        "celery": True,
        "workers": {},
    }
