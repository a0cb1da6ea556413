"""The deployment endpoint as the app serves it: ahead of the app's middleware and router
(``DeploymentProxy.dispatch``), with what they would have done for it, and through them
where CORS is configured and the request has an ``Origin``.

The replicas are small real HTTP servers that answer what they were sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from httpx2 import ASGITransport, AsyncClient, Response

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.deployments.stub_replicas import Deployed

AppWith = Callable[..., AsyncClient]


@pytest.fixture
def app_with(settings_factory: Callable[..., Settings]) -> Iterator[AppWith]:
    """A client of an app on the test's database with settings of its own, on the test's
    event loop (the proxy's pooled connections belong to one loop). The app's lifespan
    does not run: its supervisor would take the replicas, which have no job, out."""
    contexts: list[AppContext] = []

    def make(**overrides: object) -> AsyncClient:
        settings = settings_factory(**overrides)
        contexts.append(AppContext.build(settings))
        app = create_app(settings, contexts[-1])
        return AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver")

    yield make
    for context in contexts:
        context.close()


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(2):
        yield b"x" * 1000


@pytest.fixture
def one(replicas: Callable[[str], int], deploy: Callable[[dict[str, int]], Deployed]) -> str:
    return deploy({"one": replicas("one")}).id


def _assert_error(response: Response, status: int, error: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": error, "message": message, "status": status}
    assert len(response.headers["x-request-id"]) == 16


async def test_a_call_reaches_a_replica_as_sent_without_the_credential(
    app_with: AppWith, alice: Account, one: str
) -> None:
    client = app_with()
    response = await client.post(
        f"/api/deployments/{one}/v1/completions?n=1&note=a%20b",
        content=b'{"prompt": "hi"}',
        headers={**alice.headers, "Content-Type": "application/json", "X-Request-ID": "mine"},
    )
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert echoed["replica"] == "one"
    assert echoed["method"] == "POST"
    assert echoed["target"] == "/v1/completions?n=1&note=a%20b"
    assert echoed["body"] == '{"prompt": "hi"}'
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["x-request-id"] == "mine"
    assert "authorization" not in echoed["headers"]
    # The API server's own request id and length; not the replica's Server and Date (the
    # API server writes its own).
    assert len(response.headers["x-request-id"]) == 16
    assert response.headers["content-length"] == str(len(response.content))
    assert "server" not in response.headers and "date" not in response.headers

    models = await client.get(f"/api/deployments/{one}/v2/models", headers=alice.headers)
    assert models.status_code == 200
    assert models.json()["method"] == "GET" and models.json()["target"] == "/v2/models"


async def test_refusals_are_the_spec_errors(
    app_with: AppWith, alice: Account, bob: Account, one: str
) -> None:
    client = app_with()
    base = f"/api/deployments/{one}/v1"
    missing = await client.get(f"{base}/models")
    _assert_error(missing, 401, "Unauthorized", "Missing Authorization header")
    assert missing.headers["www-authenticate"] == "Bearer"
    _assert_error(
        await client.get(f"{base}/models", headers={"Authorization": "Basic YWxpY2U6cA=="}),
        401,
        "Unauthorized",
        "Authorization header must be 'Bearer <token>'",
    )
    # Someone else's deployment, like one that does not exist, is not found.
    _assert_error(
        await client.get(f"{base}/models", headers=bob.headers),
        404,
        "Not Found",
        f"Deployment '{one}' not found",
    )
    _assert_error(
        await client.get("/api/deployments/dep_nothing/v1/models", headers=alice.headers),
        404,
        "Not Found",
        "Deployment 'dep_nothing' not found",
    )
    _assert_error(
        await client.get(f"{base}/models?tag=a%01b", headers=alice.headers),
        400,
        "Validation Error",
        "tag: must not contain control characters (found U+0001)",
    )
    # Methods the endpoint has no route for are the router's answer.
    _assert_error(
        await client.put(f"{base}/models", headers=alice.headers),
        405,
        "Method Not Allowed",
        "Method not allowed on this route",
    )


async def test_a_body_over_the_limit_is_refused_before_any_replica_sees_it(
    app_with: AppWith, alice: Account, one: str
) -> None:
    client = app_with(max_request_bytes=1024)
    url = f"/api/deployments/{one}/v1/completions"
    message = "Request body exceeds the limit of 1024 bytes"
    declared = await client.post(url, content=b"x" * 1025, headers=alice.headers)
    _assert_error(declared, 413, "Payload Too Large", message)
    # Without a Content-Length the body is counted as it arrives.
    streamed = await client.post(url, content=_chunks(), headers=alice.headers)
    _assert_error(streamed, 413, "Payload Too Large", message)
    within = await client.post(url, content=b"x" * 1024, headers=alice.headers)
    assert within.status_code == 200


async def test_a_cross_origin_call_goes_through_the_cors_middleware(
    app_with: AppWith, alice: Account, one: str
) -> None:
    client = app_with(cors_origins=["http://ui.example"])
    response = await client.get(
        f"/api/deployments/{one}/v1/models",
        headers={**alice.headers, "Origin": "http://ui.example"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["replica"] == "one"
    assert response.headers["access-control-allow-origin"] == "http://ui.example"
    assert len(response.headers["x-request-id"]) == 16
    refused = await client.get(
        f"/api/deployments/{one}/v1/models", headers={"Origin": "http://ui.example"}
    )
    _assert_error(refused, 401, "Unauthorized", "Missing Authorization header")
    assert refused.headers["access-control-allow-origin"] == "http://ui.example"
    # Refused by the proxy itself (the credential is checked there): the same answer.
    invalid = await client.get(
        f"/api/deployments/{one}/v1/models",
        headers={"Authorization": "Bearer not-a-token", "Origin": "http://ui.example"},
    )
    assert invalid.status_code == 401 and invalid.json()["error"] == "Unauthorized"
    assert invalid.headers["www-authenticate"] == "Bearer"
    assert invalid.headers["access-control-allow-origin"] == "http://ui.example"
