from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import FINAL, blocker, submit, wait_for


@pytest.mark.parametrize("path", ["/api/gpus", "/api/metrics"])
def test_requires_authentication(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json() == {
        "error": "Unauthorized",
        "message": "Missing Authorization header",
        "status": 401,
    }


def test_lists_the_virtual_gpus_with_the_jobs_holding_them(
    client: TestClient,
    alice: Account,
    bob: Account,
    admin: Account,
    settings: Settings,
    tmp_path: Path,
) -> None:
    release = tmp_path / "go"
    job = submit(client, alice.headers, command=blocker(release), gpu_count=2)
    running = wait_for(client, alice.headers, job["id"], {"running"})

    rows = client.get("/api/gpus", headers=alice.headers).json()
    assert [row["id"] for row in rows] == [0, 1, 2, 3]
    held = set(running["gpus"])
    for row in rows:
        assert row["in_use"] == (row["id"] in held)
        assert row["job_id"] == (job["id"] if row["id"] in held else None)
        assert row["virtual"] is True
        assert row["node"] == settings.node_name
        # Virtual GPUs: the configured size (80GB by default) and zero readings, with
        # "virtual" saying they come from no device.
        assert row["memory_total"] == 80 * 1024**3
        assert (row["memory_used"], row["utilization"]) == (0, 0.0)
        assert (row["temperature"], row["power_usage"]) == (0.0, 0.0)
    assert set(rows[0]) == {
        "id",
        "name",
        "memory_total",
        "memory_used",
        "utilization",
        "temperature",
        "power_usage",
        "uuid",
        "node",
        "virtual",
        "in_use",
        "job_id",
    }

    # Bob sees the GPUs taken, not whose job took them; an admin sees everything.
    bob_rows = client.get("/api/gpus", headers=bob.headers).json()
    assert [r["in_use"] for r in bob_rows] == [r["in_use"] for r in rows]
    assert all(r["job_id"] is None for r in bob_rows)
    admin_rows = client.get("/api/gpus", headers=admin.headers).json()
    assert [r["job_id"] for r in admin_rows] == [r["job_id"] for r in rows]

    release.touch()
    wait_for(client, alice.headers, job["id"], FINAL)
    assert not any(r["in_use"] for r in client.get("/api/gpus", headers=alice.headers).json())


def test_system_metrics_match_the_spec(client: TestClient, alice: Account) -> None:
    response = client.get("/api/metrics", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"timestamp", "cpu_percent", "memory_percent", "disk_usage", "network_io"}
    assert set(body["network_io"]) == {"bytes_sent", "bytes_recv"}
    assert body["timestamp"].endswith("Z")
    datetime.fromisoformat(body["timestamp"])
    for key in ("cpu_percent", "memory_percent", "disk_usage"):
        assert 0.0 <= body[key] <= 100.0
    assert all(isinstance(v, int) and v >= 0 for v in body["network_io"].values())
