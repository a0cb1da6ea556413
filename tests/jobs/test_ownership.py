from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, submit, wait_for


def test_another_user_gets_404_everywhere(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    job = submit(client, alice.headers, command="echo secret")
    wait_for(client, alice.headers, job["id"], FINAL)
    job_id = job["id"]
    for method, path in (
        ("GET", f"/api/jobs/{job_id}"),
        ("GET", f"/api/jobs/{job_id}/logs"),
        ("GET", f"/api/jobs/{job_id}/metrics"),
        ("GET", f"/api/jobs/{job_id}/stream"),
        ("POST", f"/api/jobs/{job_id}/cancel"),
    ):
        response = client.request(method, path, headers=bob.headers)
        assert response.status_code == 404, (method, path)
        assert response.json() == {
            "error": "Not Found",
            "message": f"Job '{job_id}' not found",
            "status": 404,
        }
    # Exactly what a job that does not exist looks like.
    missing = client.get("/api/jobs/job-0000000000000000", headers=bob.headers)
    assert missing.status_code == 404
    assert client.get("/api/jobs", headers=bob.headers).json()["total"] == 0

    assert client.get(f"/api/jobs/{job_id}", headers=admin.headers).status_code == 200
    assert client.get("/api/jobs", headers=admin.headers).json()["total"] == 1
    assert client.get(f"/api/jobs/{job_id}/logs", headers=alice.headers).text == "secret\n"
