from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from spark_trainer.errors import Unauthorized
from spark_trainer.identity import tokens
from spark_trainer.kit.time import utcnow
from tests.conftest import PASSWORD, Account


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, object]:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_answers_the_spec_shape_and_the_token_works(
    client: TestClient, alice: Account
) -> None:
    body = login(client, "alice")
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    me = client.get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["id"] == alice.user.id
    assert "password_hash" not in me.json()


def test_wrong_password_and_unknown_user_get_the_same_401(
    client: TestClient, alice: Account
) -> None:
    wrong = client.post("/api/auth/login", json={"username": "alice", "password": "nope-nope"})
    unknown = client.post("/api/auth/login", json={"username": "mallory", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "error": "Unauthorized",
            "message": "Invalid username or password",
            "status": 401,
        }
    )


def test_login_attempts_are_limited(client: TestClient, ctx: AppContext, alice: Account) -> None:
    limit = ctx.settings.login_attempts_per_minute
    for _ in range(limit):
        assert (
            client.post(
                "/api/auth/login", json={"username": "alice", "password": "bad"}
            ).status_code
            == 401
        )
    blocked = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1


def test_refresh_rotates_and_reuse_revokes_the_family(client: TestClient, alice: Account) -> None:
    first = login(client, "alice")
    second = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert client.get("/api/auth/me", headers=bearer(rotated["access_token"])).status_code == 200

    # The spent token comes back (stolen, replayed): refused, and the family dies with it.
    replay = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["error"] == "Unauthorized"
    after = client.post("/api/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status_code == 401

    # Another login starts a fresh family that still works.
    fresh = login(client, "alice")
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code
        == 200
    )


def test_access_token_is_not_a_refresh_token(client: TestClient, alice: Account) -> None:
    pair = login(client, "alice")
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": pair["access_token"]}).status_code
        == 401
    )
    assert client.get("/api/auth/me", headers=bearer(pair["refresh_token"])).status_code == 401


def test_logout_revokes_the_refresh_family(client: TestClient, alice: Account) -> None:
    pair = login(client, "alice")
    assert (
        client.post("/api/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code
        == 204
    )
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_expired_and_alg_none_tokens_are_rejected(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    now = utcnow()
    claims = {
        "sub": alice.user.id,
        "typ": "access",
        "iss": "sparktrainer",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
        "jti": "abc",
    }
    forged = jwt.encode(claims, "some-other-key-" + "y" * 32, algorithm="HS256")
    alg_none = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."
    expired = tokens.encode_token(
        key=ctx.tokens.key,
        subject=alice.user.id,
        token_type="access",
        now=now - timedelta(hours=2),
        ttl_seconds=3600,
        jti="old",
    )
    hs384 = jwt.encode(claims, ctx.tokens.key, algorithm="HS384")
    no_exp = jwt.encode(
        {k: v for k, v in claims.items() if k != "exp"}, ctx.tokens.key, algorithm="HS256"
    )
    for bad in (forged, alg_none, expired, hs384, no_exp, "not-a-jwt"):
        response = client.get("/api/auth/me", headers=bearer(bad))
        assert response.status_code == 401, bad
        assert response.json()["status"] == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/auth/me", headers=bearer(expired)).json()["message"] == (
        "Token has expired"
    )
    # The genuine article passes, so the rejections above are about the token alone.
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 200


def test_missing_and_malformed_authorization_header(client: TestClient) -> None:
    assert client.get("/api/auth/me").json() == {
        "error": "Unauthorized",
        "message": "Missing Authorization header",
        "status": 401,
    }
    response = client.get("/api/auth/me", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert response.status_code == 401


def test_disabled_user_is_rejected_everywhere(
    client: TestClient, admin: Account, alice: Account
) -> None:
    pair = login(client, "alice")
    key = client.post("/api/auth/api-keys", json={"name": "ci"}, headers=alice.headers).json()
    response = client.patch(
        f"/api/users/{alice.user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False

    assert client.get("/api/auth/me", headers=alice.headers).status_code == 401
    assert client.get("/api/auth/me", headers=bearer(key["key"])).status_code == 401
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    assert (
        client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).status_code
        == 401
    )


def test_api_key_lifecycle(client: TestClient, alice: Account, bob: Account) -> None:
    created = client.post("/api/auth/api-keys", json={"name": "laptop"}, headers=alice.headers)
    assert created.status_code == 201
    body = created.json()
    secret = body["key"]
    assert secret.startswith("stk_")
    assert body["prefix"] == secret[:10]

    me = client.get("/api/auth/me", headers=bearer(secret))
    assert me.status_code == 200
    assert me.json()["username"] == "alice"

    listed = client.get("/api/auth/api-keys", headers=alice.headers).json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0]
    assert listed[0]["last_used_at"] is not None

    # Bob can neither see nor revoke Alice's key.
    assert client.get("/api/auth/api-keys", headers=bob.headers).json() == []
    assert client.delete(f"/api/auth/api-keys/{body['id']}", headers=bob.headers).status_code == 404

    assert (
        client.delete(f"/api/auth/api-keys/{body['id']}", headers=alice.headers).status_code == 204
    )
    assert client.get("/api/auth/me", headers=bearer(secret)).status_code == 401
    assert client.get("/api/auth/me", headers=bearer("stk_" + "A" * 43)).status_code == 401


def test_token_of_a_deleted_user_is_rejected(client: TestClient, ctx: AppContext) -> None:
    token = tokens.encode_token(
        key=ctx.tokens.key,
        subject="user-doesnotexist00",
        token_type="access",
        now=utcnow(),
        ttl_seconds=60,
        jti="x",
    )
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401


def test_access_token_expiry_is_enforced_to_the_second(ctx: AppContext, alice: Account) -> None:
    token = tokens.encode_token(
        key=ctx.tokens.key,
        subject=alice.user.id,
        token_type="access",
        now=utcnow() - timedelta(seconds=59),
        ttl_seconds=60,
        jti="edge",
    )
    assert tokens.decode_token(token, key=ctx.tokens.key, expected_type="access")
    time.sleep(1.1)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.decode_token(token, key=ctx.tokens.key, expected_type="access")
