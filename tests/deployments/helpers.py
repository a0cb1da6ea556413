"""Registering the tiny model through a real job, and reading deployments."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, submit, wait_for


def register_model(client: TestClient, account: Account, source: Path, name: str) -> str:
    """Runs a job that writes ``source``'s files as its output; returns the model id."""
    command = f'cp -R {shlex.quote(str(source))}/. "$SPARKTRAINER_OUTPUT_DIR"/'
    job = submit(client, account.headers, name=name, command=command, gpu_count=0)
    assert wait_for(client, account.headers, str(job["id"]), FINAL)["status"] == "completed"
    deadline = time.monotonic() + 10
    while True:
        response = client.get("/api/models", params={"name": name}, headers=account.headers)
        items = response.json()["items"]
        if items:
            return str(items[0]["id"])
        assert time.monotonic() < deadline, "the job's output was never registered"
        time.sleep(0.05)


def get_deployment(client: TestClient, account: Account, deployment_id: str) -> dict[str, Any]:
    response = client.get(f"/api/deployments/{deployment_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_deployment(
    client: TestClient,
    account: Account,
    deployment_id: str,
    predicate: Any,
    what: str,
    timeout: float = 90.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = get_deployment(client, account, deployment_id)
        if predicate(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"deployment never {what} within {timeout}s: {body}")
        time.sleep(0.2)
