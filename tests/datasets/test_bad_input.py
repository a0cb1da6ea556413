from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from tests.conftest import Account
from tests.datasets.helpers import MULTIPART_HEADERS, assert_nothing_kept, multipart, upload

FILE = ("file", "data.jsonl", b'{"a": 1}\n')


def _post(client: TestClient, account: Account, body: bytes) -> tuple[int, dict[str, object]]:
    response = client.post(
        "/api/datasets", content=body, headers={**account.headers, **MULTIPART_HEADERS}
    )
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([FILE], "name: field required"),
        ([("name", None, b"no-file")], "file: field required"),
        ([("name", None, b""), FILE], "name: must not be empty"),
        ([("name", None, b"a"), ("name", None, b"b"), FILE], "name: given more than once"),
        ([("name", None, b"two-files"), FILE, FILE], "file: only one file per upload"),
        (
            [("name", None, b"x"), ("tags", None, b"a"), FILE],
            "Unexpected form field 'tags'; expected 'name', 'file'",
        ),
        ([("name", None, b"\xff\xfe"), FILE], "name: not valid UTF-8"),
    ],
)
def test_bad_forms_are_400_and_change_nothing(
    client: TestClient,
    alice: Account,
    ctx: AppContext,
    parts: list[tuple[str, str | None, bytes]],
    message: str,
) -> None:
    status, body = _post(client, alice, multipart(*parts))
    assert status == 400
    assert body["status"] == 400
    assert body["error"] in {"Bad Request", "Validation Error"}
    assert body["message"] == message
    assert_nothing_kept(ctx)


@pytest.mark.parametrize(
    "name", ["has space", "-leading-dash", ".hidden", "../escape", "a/b", "x" * 129, "ünïcode"]
)
def test_invalid_names_are_400(
    client: TestClient, alice: Account, ctx: AppContext, name: str
) -> None:
    response = upload(client, alice.headers, name, b'{"a": 1}\n')
    assert response.status_code == 400
    assert response.json()["error"] == "Validation Error"
    assert response.json()["message"].startswith("name: must be at most 128 letters")
    assert_nothing_kept(ctx)


def test_valid_names(client: TestClient, alice: Account) -> None:
    for name in ("a", "A.b_c-1", "9" * 128):
        assert upload(client, alice.headers, name, b"x").status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data"},  # no boundary
        {},
    ],
)
def test_a_body_that_is_not_multipart_is_400(
    client: TestClient, alice: Account, ctx: AppContext, headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/datasets", content=b"name=x&file=y", headers={**alice.headers, **headers}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad Request",
        "message": "Content-Type must be multipart/form-data (with a boundary)",
        "status": 400,
    }
    assert_nothing_kept(ctx)


def test_a_malformed_multipart_body_is_400(
    client: TestClient, alice: Account, ctx: AppContext
) -> None:
    status, body = _post(client, alice, b"this is not multipart at all\r\n")
    assert status == 400
    assert str(body["message"]).startswith("Malformed multipart body")
    assert_nothing_kept(ctx)
