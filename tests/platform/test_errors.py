"""Every failure a client can meet comes back in the spec's error format."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.routing import api_router
from spark_trainer.settings import Settings
from tests.conftest import Account


def _is_spec_error(response_json: object, status: int) -> bool:
    return (
        isinstance(response_json, dict)
        and set(response_json) == {"error", "message", "status"}
        and response_json["status"] == status
        and isinstance(response_json["message"], str)
        and bool(response_json["message"])
    )


def test_unknown_route_is_404(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert _is_spec_error(response.json(), 404)


def test_wrong_method_is_405(client: TestClient) -> None:
    response = client.put("/api/auth/login", json={})
    assert response.status_code == 405
    assert _is_spec_error(response.json(), 405)


def test_invalid_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["message"] == "request body is not valid JSON"


def test_missing_field_is_400_naming_it(client: TestClient) -> None:
    response = client.post("/api/auth/login", json={"username": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "Validation Error",
        "message": "password: field required",
        "status": 400,
    }


def test_unknown_field_is_rejected(client: TestClient, admin: Account) -> None:
    response = client.post(
        "/api/users",
        json={"username": "dave", "password": "password-1", "is_admin": True},
        headers=admin.headers,
    )
    assert response.status_code == 400
    assert "is_admin" in response.json()["message"]


def test_bad_query_parameter_is_400(client: TestClient, admin: Account) -> None:
    response = client.get("/api/users", params={"limit": 100000}, headers=admin.headers)
    assert response.status_code == 400
    assert response.json()["message"].startswith("limit:")


def test_oversized_body_is_413(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(max_request_bytes=2048)
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as client:
        big = {"username": "x" * 4000, "password": "y"}
        response = client.post("/api/auth/login", json=big)
        assert response.status_code == 413
        assert _is_spec_error(response.json(), 413)

        def chunks() -> Iterator[bytes]:
            # No Content-Length: the limit is enforced on the bytes as they arrive.
            yield b'{"username": "'
            for _ in range(10):
                yield b"z" * 512
            yield b'", "password": "p"}'

        streamed = client.post(
            "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert _is_spec_error(streamed.json(), 413)
        # Declared or counted, the same error name (not the Python version's phrase).
        assert response.json()["error"] == streamed.json()["error"] == "Payload Too Large"
    ctx.close()


@pytest.fixture
def failing_client(settings: Settings, ctx: AppContext) -> Iterator[TestClient]:
    app = create_app(settings, ctx)
    router = api_router(tags=["test"])

    @router.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: /etc/shadow")

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_internal_error_is_500_without_traceback(failing_client: TestClient) -> None:
    response = failing_client.get("/api/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": "Internal Server Error",
        "message": "An internal error occurred",
        "status": 500,
    }
    assert "Traceback" not in response.text and "shadow" not in response.text


def test_every_response_has_a_request_id(client: TestClient) -> None:
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 16
    assert len(client.get("/nope").headers["X-Request-ID"]) == 16
