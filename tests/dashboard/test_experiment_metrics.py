"""``GET /api/experiments/{id}/metrics``: several runs' curves in one request."""

from __future__ import annotations

import shlex
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import PY, submit, wait_for

LOG = """
import sparktrainer
for s in range(40):
    sparktrainer.log({{"loss": {k} / (s + 1), "acc": s}}, step=s)
"""


def _run(client: TestClient, account: Account, experiment_id: str, k: int) -> dict[str, Any]:
    command = f"{PY} -c {shlex.quote(LOG.format(k=k))}"
    job = submit(
        client, account.headers, name=f"run-{k}", command=command, experiment_id=experiment_id
    )
    wait_for(client, account.headers, job["id"], {"completed"})
    return job


def _experiment(client: TestClient, account: Account, name: str) -> str:
    response = client.post("/api/experiments", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_two_runs_in_one_request(client: TestClient, alice: Account, bob: Account) -> None:
    experiment = _experiment(client, alice, "sweep")
    first, second = _run(client, alice, experiment, 1), _run(client, alice, experiment, 2)
    url = f"/api/experiments/{experiment}/metrics"

    body = client.get(url, params={"name": "loss"}, headers=alice.headers).json()
    assert body["experiment_id"] == experiment
    assert [r["job_id"] for r in body["runs"]] == [first["id"], second["id"]]
    for run, k in zip(body["runs"], (1, 2), strict=True):
        assert run["name"] == f"run-{k}" and run["status"] == "completed"
        (loss,) = run["metrics"]
        assert loss["name"] == "loss" and loss["count"] == 40 and not loss["downsampled"]
        assert loss["steps"] == list(range(40))
        assert loss["values"] == [k / (s + 1) for s in range(40)]

    chosen = client.get(
        url,
        params={"name": ["loss", "acc"], "job_ids": second["id"], "max_points": 10},
        headers=alice.headers,
    ).json()
    (run,) = chosen["runs"]
    assert run["job_id"] == second["id"]
    by_name = {m["name"]: m for m in run["metrics"]}
    assert by_name["acc"]["downsampled"] and len(by_name["acc"]["steps"]) <= 10
    # Each bucket keeps its extremes: the first and last values survive downsampling.
    assert min(by_name["acc"]["values"]) == 0 and max(by_name["acc"]["values"]) == 39

    zoomed = client.get(
        url, params={"name": "loss", "step_min": 10, "step_max": 12}, headers=alice.headers
    ).json()
    assert [r["metrics"][0]["steps"] for r in zoomed["runs"]] == [[10, 11, 12]] * 2

    # Bob sees neither the experiment nor, through it, Alice's runs.
    assert client.get(url, params={"name": "loss"}, headers=bob.headers).status_code == 404


def test_bad_requests(client: TestClient, alice: Account) -> None:
    experiment = _experiment(client, alice, "one")
    other = _experiment(client, alice, "two")
    stray = submit(client, alice.headers, command="true", experiment_id=other)
    url = f"/api/experiments/{experiment}/metrics"
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 400),
        ({"name": "loss", "max_points": 1}, 400),
        ({"name": "loss", "job_ids": stray["id"]}, 404),
        ({"name": "loss", "job_ids": [f"job-{i}" for i in range(51)]}, 400),
    ]
    for params, status in cases:
        response = client.get(url, params=params, headers=alice.headers)
        assert response.status_code == status, (params, response.text)
        assert set(response.json()) == {"error", "message", "status"}
    missing = client.get(
        url, params={"name": "loss", "job_ids": stray["id"]}, headers=alice.headers
    )
    assert stray["id"] in missing.json()["message"]


def test_job_history_says_where_a_stream_resumes(client: TestClient, alice: Account) -> None:
    experiment = _experiment(client, alice, "resume")
    job = _run(client, alice, experiment, 1)
    history = client.get(
        f"/api/jobs/{job['id']}/metrics", params={"max_points": 10}, headers=alice.headers
    ).json()
    # 40 points of two metrics each: one event id per logged point.
    assert history["last_seq"] == 40
    with client.stream(
        "GET",
        f"/api/jobs/{job['id']}/stream",
        params={"access_token": alice.token, "after": history["last_seq"]},
    ) as response:
        received = "".join(response.iter_text())
    assert 'data: {"step"' not in received and "event: end" in received
