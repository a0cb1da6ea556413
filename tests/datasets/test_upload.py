from __future__ import annotations

import json
import os
import stat

from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.datasets.conftest import MAX_UPLOAD_BYTES
from tests.datasets.helpers import (
    MULTIPART_HEADERS,
    assert_nothing_kept,
    blob_path,
    md5,
    multipart,
    store_files,
    upload,
    uploaded,
)

JSONL = b"".join(
    json.dumps({"prompt": f"question {i}", "completion": f"answer {i}"}).encode() + b"\n"
    for i in range(50)
)


def _is_utc_z(value: str) -> bool:
    return value.endswith("Z") and "+" not in value


def test_the_spec_curl_form_creates_a_dataset(
    client: TestClient, alice: Account, settings: Settings
) -> None:
    response = upload(client, alice.headers, "my-dataset", JSONL)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("ds-") and len(body["id"]) == 3 + 16
    assert body["name"] == "my-dataset"
    assert body["owner_id"] == alice.user.id
    assert body["version_count"] == 1
    assert _is_utc_z(body["created_at"]) and _is_utc_z(body["updated_at"])
    latest = body["latest_version"]
    assert latest["version"] == "v1.0.0"
    assert latest["id"].startswith("dsv-")
    assert latest["hash"] == md5(JSONL)
    assert latest["size"] == len(JSONL)
    assert latest["filename"] == "dataset.jsonl"
    assert latest["format"] == "jsonl"
    assert latest["record_count"] == 50
    assert latest["preview"][0] == {"prompt": "question 0", "completion": "answer 0"}

    assert client.get(f"/api/datasets/{body['id']}", headers=alice.headers).json() == body

    versions = client.get(f"/api/datasets/{body['id']}/versions", headers=alice.headers)
    assert versions.status_code == 200
    [version] = versions.json()["versions"]
    assert list(versions.json()) == ["versions"]
    assert {k: version[k] for k in ("version", "hash", "size")} == {
        "version": "v1.0.0",
        "hash": md5(JSONL),
        "size": len(JSONL),
    }
    assert _is_utc_z(version["created_at"])

    listing = client.get("/api/datasets", headers=alice.headers).json()
    assert set(listing) == {"items", "total", "limit", "offset"}
    assert listing["total"] == 1
    assert listing["items"][0]["id"] == body["id"]
    assert listing["items"][0]["latest_version"]["version"] == "v1.0.0"
    assert "preview" not in listing["items"][0]["latest_version"]


def test_the_hash_is_the_plain_md5_and_the_blob_sits_in_the_dvc_layout_read_only(
    client: TestClient, alice: Account, settings: Settings
) -> None:
    data = b"line one\r\nline two\r\n"  # CRLF kept: DVC 3 hashes raw bytes
    body = uploaded(client, alice.headers, "crlf", data, filename="notes.txt")
    digest = body["latest_version"]["hash"]
    assert digest == md5(data)
    path = blob_path(settings, digest)
    assert path == settings.artifacts_root / "files" / "md5" / digest[:2] / digest[2:]
    assert store_files(settings) == [path]
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_uploading_under_the_same_name_adds_versions_and_identical_bytes_add_nothing(
    client: TestClient, alice: Account, settings: Settings
) -> None:
    first = uploaded(client, alice.headers, "corpus", b'{"a": 1}\n')
    dataset_id = first["id"]
    second = uploaded(client, alice.headers, "corpus", b'{"a": 2}\n')
    assert second["id"] == dataset_id
    assert second["latest_version"]["version"] == "v1.1.0"
    assert second["version_count"] == 2

    same = upload(client, alice.headers, "corpus", b'{"a": 2}\n')
    assert same.status_code == 200
    assert same.json()["latest_version"] == second["latest_version"]
    assert same.json()["version_count"] == 2

    # Only the latest version counts as "the same": going back to older bytes is a change.
    third = uploaded(client, alice.headers, "corpus", b'{"a": 1}\n')
    assert third["latest_version"]["version"] == "v1.2.0"
    assert third["latest_version"]["hash"] == first["latest_version"]["hash"]

    versions = client.get(f"/api/datasets/{dataset_id}/versions", headers=alice.headers).json()
    assert [v["version"] for v in versions["versions"]] == ["v1.0.0", "v1.1.0", "v1.2.0"]
    assert client.get("/api/datasets", headers=alice.headers).json()["total"] == 1
    assert len(store_files(settings)) == 2


def test_the_same_bytes_under_another_name_make_a_new_dataset_but_one_blob(
    client: TestClient, alice: Account, settings: Settings
) -> None:
    one = uploaded(client, alice.headers, "train", JSONL)
    other = uploaded(client, alice.headers, "train-copy", JSONL)
    assert other["id"] != one["id"]
    assert other["latest_version"]["version"] == "v1.0.0"
    assert other["latest_version"]["hash"] == one["latest_version"]["hash"]
    assert store_files(settings) == [blob_path(settings, md5(JSONL))]


def test_the_name_may_come_after_the_file(client: TestClient, alice: Account) -> None:
    body = multipart(("file", "later.csv", b"a,b\n1,2\n"), ("name", None, b"name-last"))
    response = client.post(
        "/api/datasets", content=body, headers={**alice.headers, **MULTIPART_HEADERS}
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "name-last"
    assert response.json()["latest_version"]["format"] == "csv"


def test_uploads_are_exempt_from_the_json_body_limit_but_nothing_else_is(
    client: TestClient, alice: Account, settings: Settings
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    assert len(data) > settings.max_request_bytes
    body = uploaded(client, alice.headers, "big", data, filename="weights.bin")
    assert body["latest_version"]["size"] == len(data)
    assert body["latest_version"]["format"] == "binary"
    assert blob_path(settings, md5(data)).read_bytes() == data

    big_json = client.post(
        "/api/jobs", headers=alice.headers, json={"name": "x" * len(data), "command": "true"}
    )
    assert big_json.status_code == 413


def test_past_the_upload_limit_is_413_and_nothing_is_kept(
    client: TestClient, alice: Account, ctx: AppContext
) -> None:
    # Just over the limit: the body passes the Content-Length precheck, the count stops it.
    response = upload(client, alice.headers, "huge", b"x" * (MAX_UPLOAD_BYTES + 1))
    assert response.status_code == 413
    assert response.json() == {
        "error": "Payload Too Large",
        "message": f"The file exceeds the upload limit of {MAX_UPLOAD_BYTES} bytes",
        "status": 413,
    }
    assert_nothing_kept(ctx)
    # Far over it: refused from Content-Length alone, before any byte is read.
    response = upload(client, alice.headers, "huge", b"x" * (MAX_UPLOAD_BYTES + 200_000))
    assert response.status_code == 413
    assert_nothing_kept(ctx)
    # Exactly at the limit is fine.
    assert upload(client, alice.headers, "huge", b"x" * MAX_UPLOAD_BYTES).status_code == 201


def test_an_upload_needs_a_token(client: TestClient, ctx: AppContext) -> None:
    response = upload(client, {}, "anonymous", b"data")
    assert response.status_code == 401
    assert_nothing_kept(ctx)
