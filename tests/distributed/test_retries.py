"""``max_retries`` on submission: what it accepts, and what a job shows before any retry.
(The retry itself needs a lost node: see test_cluster's partition test.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, submit, wait_for


@pytest.mark.parametrize("value", [-1, 11, "1", 1.5, None])
def test_bad_max_retries_are_400_and_create_nothing(
    client: TestClient, alice: Account, value: object
) -> None:
    body = {"name": "x", "command": "true", "max_retries": value}
    response = client.post("/api/jobs", json=body, headers=alice.headers)
    assert response.status_code == 400
    assert "max_retries" in response.json()["message"]
    assert client.get("/api/jobs", headers=alice.headers).json()["total"] == 0


def test_a_job_shows_its_retries_and_restarts(client: TestClient, alice: Account) -> None:
    plain = submit(client, alice.headers, command="true")
    assert (plain["max_retries"], plain["restarts"]) == (0, 0)
    retried = submit(client, alice.headers, command="true", max_retries=3)
    assert (retried["max_retries"], retried["restarts"]) == (3, 0)
    done = wait_for(client, alice.headers, retried["id"], FINAL)
    assert (done["status"], done["max_retries"], done["restarts"]) == ("completed", 3, 0)
