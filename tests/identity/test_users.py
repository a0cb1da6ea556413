from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, Account


def test_admin_manages_users_over_the_api(client: TestClient, admin: Account) -> None:
    created = client.post(
        "/api/users",
        json={"username": "carol", "password": "s3cret-pass", "tier": "premium"},
        headers=admin.headers,
    )
    assert created.status_code == 201
    carol = created.json()
    assert carol["id"].startswith("user-")
    assert carol["role"] == "user"
    assert carol["tier"] == "premium"
    assert carol["created_at"].endswith("Z")
    assert "password" not in carol and "password_hash" not in carol

    login = client.post("/api/auth/login", json={"username": "carol", "password": "s3cret-pass"})
    assert login.status_code == 200

    page = client.get("/api/users", params={"limit": 1, "offset": 1}, headers=admin.headers)
    assert page.status_code == 200
    assert page.json()["total"] == 2
    assert page.json()["limit"] == 1
    assert page.json()["offset"] == 1
    assert [u["username"] for u in page.json()["items"]] == ["carol"]

    tiered = client.patch(
        f"/api/users/{carol['id']}", json={"tier": "standard"}, headers=admin.headers
    )
    assert tiered.json()["tier"] == "standard"
    assert client.get("/api/users/carol", headers=admin.headers).json()["tier"] == "standard"


def test_duplicate_username_is_a_conflict(
    client: TestClient, admin: Account, alice: Account
) -> None:
    response = client.post(
        "/api/users", json={"username": "alice", "password": "another-pass"}, headers=admin.headers
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": "Conflict",
        "message": "User 'alice' already exists",
        "status": 409,
    }


def test_users_api_is_admin_only(client: TestClient, alice: Account) -> None:
    for method, path, body in (
        ("GET", "/api/users", None),
        ("POST", "/api/users", {"username": "eve", "password": "password1"}),
        ("PATCH", f"/api/users/{alice.user.id}", {"role": "admin"}),
    ):
        response = client.request(method, path, json=body, headers=alice.headers)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "Forbidden"
    assert client.get("/api/auth/me", headers=alice.headers).json()["role"] == "user"


def test_admin_cannot_lock_themselves_out(client: TestClient, admin: Account) -> None:
    response = client.patch(
        f"/api/users/{admin.user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 409
    assert client.get("/api/auth/me", headers=admin.headers).status_code == 200


def test_password_change_revokes_sessions(
    client: TestClient, admin: Account, alice: Account
) -> None:
    pair = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    client.patch(
        f"/api/users/{alice.user.id}", json={"password": "a-brand-new-one"}, headers=admin.headers
    )
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code
        == 401
    )
    assert (
        client.post(
            "/api/auth/login", json={"username": "alice", "password": "a-brand-new-one"}
        ).status_code
        == 200
    )


def test_bad_user_input_names_the_field(client: TestClient, admin: Account) -> None:
    response = client.post(
        "/api/users",
        json={"username": "ok-name", "password": "short", "tier": "gold"},
        headers=admin.headers,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Validation Error"
    assert "password" in body["message"] and "tier" in body["message"]
    assert client.get("/api/users", headers=admin.headers).json()["total"] == 1
