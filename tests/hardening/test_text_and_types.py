"""Items 5 and 13: one rule for text (no control characters) and strict integer types.

On PostgreSQL a NUL in any text field was a 500 from the driver; ``true`` and ``"4"``
were accepted as GPU counts. Each is now a 400 in the spec's error JSON, naming the
field, and nothing is written.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account

NUL = "a\u0000b"

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("job name", "/api/jobs", {"name": NUL, "command": "true", "gpu_count": 1}, "name"),
    (
        "job command",
        "/api/jobs",
        {"name": "j", "command": f"echo {NUL}", "gpu_count": 4},
        "command",
    ),
    (
        "job environment",
        "/api/jobs",
        {"name": "j", "command": "true", "gpu_count": 1, "environment": {"K": NUL}},
        "environment",
    ),
    ("experiment name", "/api/experiments", {"name": NUL}, "name"),
    ("experiment tags", "/api/experiments", {"name": "e", "tags": {"k": NUL}}, "tags"),
    ("experiment tag key", "/api/experiments", {"name": "e", "tags": {NUL: "v"}}, "tags"),
    ("API key name", "/api/auth/api-keys", {"name": NUL}, "name"),
    ("escape sequence", "/api/experiments", {"name": "x\u001b[2J"}, "name"),
]


def _assert_400_naming(response: Any, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "message", "status"} and body["status"] == 400
    assert field in body["message"], body


@pytest.mark.parametrize(("what", "path", "body", "field"), CASES, ids=[c[0] for c in CASES])
def test_control_characters_in_text_fields_are_400(
    client: TestClient, alice: Account, what: str, path: str, body: dict[str, Any], field: str
) -> None:
    _assert_400_naming(client.post(path, json=body, headers=alice.headers), field)
    # Nothing was written.
    assert client.get("/api/jobs", headers=alice.headers).json()["total"] == 0
    assert client.get("/api/experiments", headers=alice.headers).json()["total"] == 0
    assert client.get("/api/auth/api-keys", headers=alice.headers).json() == []


def test_control_characters_in_path_and_query_are_400(client: TestClient, alice: Account) -> None:
    _assert_400_naming(
        client.get("/api/experiments", params={"name": NUL}, headers=alice.headers), "name"
    )
    _assert_400_naming(client.get("/api/jobs/job-%00", headers=alice.headers), "job_id")


def test_tabs_and_newlines_stay_allowed(client: TestClient, alice: Account) -> None:
    response = client.post(
        "/api/experiments",
        json={"name": "multi", "description": "line one\n\tline two\r\n"},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("gpu_count", [True, "4", 1.0, "1"])
def test_gpu_count_must_be_a_json_integer(
    client: TestClient, alice: Account, gpu_count: Any
) -> None:
    response = client.post(
        "/api/jobs",
        json={"name": "strict", "command": "true", "gpu_count": gpu_count},
        headers=alice.headers,
    )
    _assert_400_naming(response, "gpu_count")
    assert client.get("/api/jobs", headers=alice.headers).json()["total"] == 0
