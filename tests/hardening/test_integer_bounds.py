"""Item 4: every integer parameter has a bound, and a number past it is a 400.

``offset`` of 2**63 on a list endpoint, or ``step_min`` on job metrics, was a 500 from
the database; ``after`` or ``Last-Event-ID`` past BIGINT opened a stream and cut it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.conftest import Account
from tests.jobs.helpers import blocker, submit, wait_for

HUGE = [2**63, 10**30, -(2**63) - 1]


def _integer_query_parameters(client: TestClient) -> list[tuple[str, str, str]]:
    spec = client.get("/openapi.json").json()
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                types = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", [])]
                if parameter["in"] == "query" and "integer" in types:
                    found.append((method.upper(), path, parameter["name"]))
    return found


def test_every_integer_query_parameter_is_bounded(client: TestClient, admin: Account) -> None:
    parameters = _integer_query_parameters(client)
    names = {(path, name) for _, path, name in parameters}
    # The ones the audit hit are among them.
    assert ("/api/jobs", "offset") in names
    assert ("/api/jobs/{job_id}/metrics", "step_min") in names
    assert ("/api/jobs/{job_id}/stream", "after") in names
    for method, path, name in parameters:
        url = path.replace("{", "").replace("}", "")  # any id: validation comes first
        for value in HUGE:
            response = client.request(method, url, params={name: value}, headers=admin.headers)
            assert response.status_code == 400, (method, path, name, value, response.text)
            assert name in response.json()["message"]


@pytest.mark.parametrize(
    "path",
    ["/api/jobs", "/api/experiments", "/api/datasets", "/api/models", "/api/users"],
)
def test_the_largest_offset_is_an_empty_page(client: TestClient, admin: Account, path: str) -> None:
    response = client.get(path, params={"offset": 2**31 - 1}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def test_stream_cursors_past_bigint_are_400(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    release = tmp_path / "go"
    job = submit(client, alice.headers, command=blocker(release))
    wait_for(client, alice.headers, job["id"], {"running"})
    url = f"/api/jobs/{job['id']}/stream"
    for value in ("9223372036854775808", "-1", "abc"):
        response = client.get(url, headers={**alice.headers, "Last-Event-ID": value})
        assert response.status_code == 400, response.text
        assert "Last-Event-ID" in response.json()["message"]
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(
            f"/ws/jobs/{job['id']}/stream?after={2**63}&access_token={alice.token}"
        ) as socket,
    ):
        socket.receive_text()
    assert refused.value.code == 1008
    release.touch()
    wait_for(client, alice.headers, job["id"], {"completed"})
