"""POST /api/models registers a model a user already has: files or one archive, paths checked."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from spark_trainer.context import AppContext
from spark_trainer.models import ModelVersion
from tests.conftest import Account
from tests.datasets.helpers import MULTIPART_HEADERS, md5, multipart, store_files

FILES = {
    "config.json": b'{"model_type": "gpt2"}',
    "model.safetensors": b"\x00" * 5000,
    "tokenizer/vocab.json": b'{"a": 0}',
}


def _tar(entries: dict[str, bytes], mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return out.getvalue()


def _post(
    client: TestClient, alice: Account, *parts: tuple[str, str | None, bytes]
) -> dict[str, Any]:
    response = client.post(
        "/api/models", content=multipart(*parts), headers={**alice.headers, **MULTIPART_HEADERS}
    )
    return {"status": response.status_code, "body": response.json()}


def _assert_nothing_kept(ctx: AppContext) -> None:
    with ctx.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 0
    assert store_files(ctx.settings) == []
    spool = ctx.settings.data_dir / "uploads"
    assert not spool.exists() or list(spool.iterdir()) == []


def _check_registered(client: TestClient, alice: Account, body: dict[str, Any]) -> None:
    assert body["name"] == "my-base"
    assert body["source_job_id"] is None
    assert body["lineage"] == {"job": None, "experiment": None, "dataset": None}
    assert {f["path"]: (f["size"], f["hash"]) for f in body["files"]} == {
        path: (len(data), md5(data)) for path, data in FILES.items()
    }
    assert body["total_size"] == sum(len(d) for d in FILES.values())
    got = client.get(f"/api/models/{body['id']}/files/tokenizer/vocab.json", headers=alice.headers)
    assert got.status_code == 200
    assert got.content == FILES["tokenizer/vocab.json"]


def test_upload_as_files(client: TestClient, alice: Account, tmp_path: Path) -> None:
    response = client.post(
        "/api/models",
        headers=alice.headers,
        data={"name": "my-base", "description": "a base model"},
        files=[("file", (path, data, "application/octet-stream")) for path, data in FILES.items()],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    _check_registered(client, alice, body)
    assert (body["version"], body["description"]) == (1, "a base model")
    again = client.post(
        "/api/models",
        headers=alice.headers,
        data={"name": "my-base"},
        files=[("file", ("config.json", b"{}", "application/json"))],
    )
    assert again.status_code == 201
    assert again.json()["version"] == 2


def test_upload_as_tar_and_zip_archives(client: TestClient, alice: Account) -> None:
    entries = {"./" + path: data for path, data in FILES.items()}
    for archive in (_tar(entries), _tar(FILES, "w"), _zip(FILES)):
        result = _post(client, alice, ("name", None, b"my-base"), ("archive", "m.tar.gz", archive))
        assert result["status"] == 201, result
        _check_registered(client, alice, result["body"])


def test_paths_that_leave_the_model_are_refused(
    client: TestClient, alice: Account, ctx: AppContext
) -> None:
    for bad in ("../evil.py", "/etc/passwd", "a/../../b", "a\\b", ""):
        result = _post(
            client,
            alice,
            ("name", None, b"my-base"),
            ("file", "config.json", b"{}"),
            ("file", bad, b"x"),
        )
        assert result["status"] == 400, (bad, result)
        assert "file path" in result["body"]["message"] or "filename" in result["body"]["message"]
    for archive in (_tar({"config.json": b"{}", "../evil.py": b"x"}), _zip({"/abs.py": b"x"})):
        result = _post(client, alice, ("name", None, b"my-base"), ("archive", "m.tar", archive))
        assert result["status"] == 400, result
        assert "file path" in result["body"]["message"]
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w") as tar:
        info = tarfile.TarInfo("weights.bin")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/shadow"
        tar.addfile(info)
    result = _post(client, alice, ("name", None, b"my-base"), ("archive", "m.tar", link.getvalue()))
    assert result["status"] == 400
    assert "link" in result["body"]["message"]
    _assert_nothing_kept(ctx)


def test_bad_uploads_leave_nothing(client: TestClient, alice: Account, ctx: AppContext) -> None:
    big = b"\x01" * 300_000
    body = multipart(("name", None, b"my-base"), ("file", "a.bin", big), ("file", "b.bin", big))
    # Cut off in the second file: the first was already being written to the store.
    cut = client.post(
        "/api/models",
        content=body[: len(body) - 1000],
        headers={**alice.headers, **MULTIPART_HEADERS},
    )
    assert cut.status_code == 400
    assert cut.json()["message"] == "The multipart body ended before its closing boundary"
    for parts in (
        [("file", "a.bin", big)],  # no name
        [("name", None, b"not a name"), ("file", "a.bin", big)],
        [("name", None, b"m"), ("file", "a.bin", big), ("file", "a.bin", big)],
        [("name", None, b"m"), ("file", "a.bin", big), ("archive", "m.tar", _tar(FILES))],
        [("name", None, b"m"), ("archive", "m.tar", b"not an archive at all")],
    ):
        response = client.post(
            "/api/models", content=multipart(*parts), headers={**alice.headers, **MULTIPART_HEADERS}
        )
        assert response.status_code == 400, (parts[0], response.text)
    _assert_nothing_kept(ctx)


def test_json_registration_still_validates(client: TestClient, alice: Account) -> None:
    response = client.post("/api/models", json={"job_id": 5}, headers=alice.headers)
    assert response.status_code == 400
    assert "job_id" in response.json()["message"]
