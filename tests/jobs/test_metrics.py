"""Metric history, downsampling, and ingestion over HTTP with a job's own token."""

from __future__ import annotations

import shlex
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from spark_trainer.context import AppContext
from spark_trainer.models import MetricPoint
from tests.conftest import Account
from tests.jobs.helpers import FINAL, PY, blocker, submit, wait_for, wait_until

# Prints the job's token (to a file only the test reads), then waits to be released.
TOKEN_SCRIPT = "import os,sys; open(sys.argv[1],'w').write(os.environ['SPARKTRAINER_JOB_TOKEN'])"


def _running_job_with_token(
    client: TestClient, account: Account, tmp_path: Path
) -> tuple[dict[str, object], str, Path]:
    token_file, release = tmp_path / "token", tmp_path / "go"
    command = blocker(
        release, before=f"{PY} -c {shlex.quote(TOKEN_SCRIPT)} {shlex.quote(str(token_file))}"
    )
    job = submit(client, account.headers, command=command)
    wait_for(client, account.headers, str(job["id"]), {"running"})
    wait_until(lambda: token_file.exists() and token_file.read_text() != "", what="token")
    return job, token_file.read_text(), release


def test_ingest_with_the_job_token(client: TestClient, alice: Account, tmp_path: Path) -> None:
    job, token, release = _running_job_with_token(client, alice, tmp_path)
    assert token.startswith("stj_")
    url = f"/api/jobs/{job['id']}/metrics"
    accepted = client.post(
        url,
        json={"points": [{"step": 5, "metrics": {"loss": 0.5}}, {"metrics": {"loss": 0.4}}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"accepted": 2, "last_seq": 2}
    # The owner may report too; a step left out continues from the last one.
    assert client.post(
        url, json={"points": [{"metrics": {"loss": 0.3}}]}, headers=alice.headers
    ).json() == {"accepted": 1, "last_seq": 3}

    for bad in (
        {"points": []},
        {"points": [{"metrics": {}}]},
        {"points": [{"metrics": {"x": "a"}}]},
    ):
        response = client.post(url, json=bad, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 400, bad
    reserved = client.post(url, json={"points": [{"metrics": {"step": 1}}]}, headers=alice.headers)
    assert reserved.status_code == 400
    assert "reserved" in reserved.json()["message"]
    forged = client.post(
        url, json={"points": [{"metrics": {"x": 1}}]}, headers={"Authorization": "Bearer stj_x"}
    )
    assert forged.status_code == 401

    release.touch()
    wait_for(client, alice.headers, str(job["id"]), FINAL)
    history = client.get(url, headers=alice.headers).json()
    assert history["metrics"][0]["steps"] == [5, 6, 7]
    assert history["metrics"][0]["values"] == [0.5, 0.4, 0.3]
    # After the job ends, its token is worthless and no point is accepted.
    late = client.post(
        url, json={"points": [{"metrics": {"x": 1}}]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert late.status_code == 401
    assert (
        client.post(
            url, json={"points": [{"metrics": {"x": 1}}]}, headers=alice.headers
        ).status_code
        == 409
    )


def test_job_token_is_only_good_for_its_own_job(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    _, token, release = _running_job_with_token(client, alice, tmp_path / "a")
    other = submit(client, alice.headers, command=blocker(tmp_path / "b-go"))
    wait_for(client, alice.headers, other["id"], {"running"})
    response = client.post(
        f"/api/jobs/{other['id']}/metrics",
        json={"points": [{"metrics": {"x": 1}}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    # Nor is it a user credential.
    assert client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    release.touch()
    (tmp_path / "b-go").touch()


def test_history_filters_and_downsampling_keep_spikes(
    client: TestClient, ctx: AppContext, alice: Account
) -> None:
    job = submit(client, alice.headers, command="true")
    wait_for(client, alice.headers, job["id"], FINAL)
    rows = []
    for step in range(10_000):
        value = 1.0 if step != 7_777 else 50.0  # one spike
        rows.append(
            {
                "job_id": job["id"],
                "seq": step + 1,
                "name": "loss",
                "step": step,
                "value": value,
                "wall_time": 1_700_000_000.0 + step,
            }
        )
        rows.append(
            {
                "job_id": job["id"],
                "seq": step + 1,
                "name": "lr",
                "step": step,
                "value": 0.1,
                "wall_time": 1_700_000_000.0 + step,
            }
        )
    with ctx.engine.begin() as conn:
        conn.execute(insert(MetricPoint), rows)

    url = f"/api/jobs/{job['id']}/metrics"
    whole = client.get(url, params={"name": "loss"}, headers=alice.headers).json()
    assert [s["name"] for s in whole["metrics"]] == ["loss"]
    assert whole["metrics"][0]["count"] == 10_000
    assert whole["metrics"][0]["downsampled"] is False
    assert len(whole["metrics"][0]["steps"]) == 10_000

    ranged = client.get(
        url, params={"name": "loss", "step_min": 100, "step_max": 199}, headers=alice.headers
    ).json()["metrics"][0]
    assert ranged["steps"] == list(range(100, 200))

    small = client.get(
        url, params={"name": "loss", "max_points": 100}, headers=alice.headers
    ).json()["metrics"][0]
    assert small["downsampled"] is True
    assert small["count"] == 10_000
    assert len(small["steps"]) <= 100
    assert max(small["values"]) == 50.0  # the spike survives
    assert small["steps"] == sorted(small["steps"])
    spike_at = small["steps"][small["values"].index(50.0)]
    assert abs(spike_at - 7_777) <= 10_000 / 50

    names = [s["name"] for s in client.get(url, headers=alice.headers).json()["metrics"]]
    assert names == ["loss", "lr"]
