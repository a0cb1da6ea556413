"""Uploading datasets the way curl -F does, and looking inside the artifact store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx2
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from spark_trainer.context import AppContext
from spark_trainer.models import Dataset, DatasetVersion
from spark_trainer.settings import Settings

BOUNDARY = "sparktrainer-test-boundary"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def upload(
    client: TestClient,
    headers: dict[str, str],
    name: str,
    data: bytes,
    filename: str = "dataset.jsonl",
) -> httpx2.Response:
    """``curl -F "name=<name>" -F "file=@<filename>"``."""
    return client.post(
        "/api/datasets",
        headers=headers,
        data={"name": name},
        files={"file": (filename, data, "application/jsonl")},
    )


def uploaded(
    client: TestClient, headers: dict[str, str], name: str, data: bytes, **kw: Any
) -> dict[str, Any]:
    response = upload(client, headers, name, data, **kw)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (field name, file name or None, content) parts,
    in the order given."""
    out = bytearray()
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


MULTIPART_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def store_files(settings: Settings) -> list[Path]:
    """Every file under the artifact store, blobs and temporary files alike."""
    return sorted(p for p in settings.artifacts_root.rglob("*") if p.is_file())


def blob_path(settings: Settings, digest: str) -> Path:
    return settings.artifacts_root / "files" / "md5" / digest[:2] / digest[2:]


def assert_nothing_kept(ctx: AppContext) -> None:
    """No dataset, no version, and no file in the store, not even a temporary one."""
    with ctx.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 0
        assert session.scalar(select(func.count()).select_from(DatasetVersion)) == 0
    assert store_files(ctx.settings) == []
