"""Submitting real jobs and waiting on them, for the job engine's tests."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

FINAL = {"completed", "failed", "cancelled"}
PY = shlex.quote(sys.executable)


def submit(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "test-job", "gpu_count": 1, **fields}
    response = client.post("/api/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def get(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def poll(
    fetch: Callable[[], dict[str, Any]],
    until: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Fetches until ``until`` holds of what came back, and returns that; fails on timeout
    with the last one fetched."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not so after {timeout}s: {value}")
        time.sleep(0.05)


def wait_for(
    client: TestClient,
    headers: dict[str, str],
    job_id: str,
    statuses: set[str],
    timeout: float = 30.0,
) -> dict[str, Any]:
    return poll(
        lambda: get(client, headers, job_id),
        lambda job: job["status"] in statuses,
        timeout,
        f"{job_id} {statuses}",
    )


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def blocker(release: Path, *, before: str = "") -> str:
    """A command that runs until ``release`` exists (``before`` runs first)."""
    wait = f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done"
    return f"{before}; {wait}" if before else wait


def logs(client: TestClient, headers: dict[str, str], job_id: str, stream: str = "stdout") -> str:
    response = client.get(f"/api/jobs/{job_id}/logs", params={"stream": stream}, headers=headers)
    assert response.status_code == 200, response.text
    return response.text
