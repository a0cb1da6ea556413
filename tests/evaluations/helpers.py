"""Registering models and datasets through the API, and waiting on evaluations."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, PY, submit, wait_for, wait_until

COPY = """
import os, shutil, sys
shutil.copytree(sys.argv[1], os.environ["SPARKTRAINER_OUTPUT_DIR"], dirs_exist_ok=True)
"""


def register_model(
    client: TestClient, account: Account, source: Path, name: str = "tiny-lm"
) -> dict[str, Any]:
    """Registers the files of ``source`` as a model, the platform's way: a job writes them
    to its output directory and the registry records them when it completes."""
    job = submit(
        client,
        account.headers,
        name=name,
        gpu_count=0,
        command=f"{PY} -c {shlex.quote(COPY)} {shlex.quote(str(source))}",
    )
    done = wait_for(client, account.headers, job["id"], FINAL)
    assert done["status"] == "completed", done
    found: list[dict[str, Any]] = []

    def registered() -> bool:
        items = client.get("/api/models", params={"name": name}, headers=account.headers)
        found[:] = [m for m in items.json()["items"] if m["source_job_id"] == job["id"]]
        return bool(found)

    wait_until(registered, what="the model to be registered")
    return found[0]


def upload(
    client: TestClient, account: Account, name: str, filename: str, data: bytes
) -> dict[str, Any]:
    response = client.post(
        "/api/datasets",
        data={"name": name},
        files={"file": (filename, data, "application/octet-stream")},
        headers=account.headers,
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def create(client: TestClient, account: Account, **body: Any) -> dict[str, Any]:
    response = client.post("/api/evaluations", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_finished(
    client: TestClient, account: Account, evaluation_id: str, timeout: float = 120.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/evaluations/{evaluation_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in FINAL:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{evaluation_id} still {body['status']} after {timeout}s")
        time.sleep(0.2)
