from __future__ import annotations

import shlex

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, PY, submit, wait_for


def _create(client: TestClient, account: Account, **body: object) -> dict[str, object]:
    response = client.post("/api/experiments", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def test_create_get_list_with_filters(client: TestClient, alice: Account) -> None:
    spec_body = {
        "name": "llama-7b-finetuning",
        "description": "Fine-tuning Llama-7B on custom dataset",
        "tags": {"model": "llama-7b", "task": "instruction-tuning"},
    }
    created = _create(client, alice, **spec_body)
    assert str(created["id"]).startswith("exp-")
    assert {k: created[k] for k in spec_body} == spec_body
    assert str(created["created_at"]).endswith("Z")
    _create(client, alice, name="mistral-sweep", tags={"model": "mistral"})

    detail = client.get(f"/api/experiments/{created['id']}", headers=alice.headers).json()
    assert detail["run_count"] == 0 and detail["runs_by_status"] == {}

    everything = client.get("/api/experiments", headers=alice.headers).json()
    assert everything["total"] == 2
    assert [e["name"] for e in everything["items"]] == ["mistral-sweep", "llama-7b-finetuning"]
    by_tag = client.get(
        "/api/experiments", params={"tag": "model:llama-7b"}, headers=alice.headers
    ).json()
    assert [e["name"] for e in by_tag["items"]] == ["llama-7b-finetuning"]
    both_tags = client.get(
        "/api/experiments",
        params=[("tag", "model:llama-7b"), ("tag", "task:other")],
        headers=alice.headers,
    ).json()
    assert both_tags["total"] == 0
    by_name = client.get("/api/experiments", params={"name": "sweep"}, headers=alice.headers)
    assert [e["name"] for e in by_name.json()["items"]] == ["mistral-sweep"]
    assert (
        client.get(
            "/api/experiments", params={"tag": "no-colon"}, headers=alice.headers
        ).status_code
        == 400
    )


def test_name_is_unique_per_owner(client: TestClient, alice: Account, bob: Account) -> None:
    _create(client, alice, name="shared-name")
    clash = client.post("/api/experiments", json={"name": "shared-name"}, headers=alice.headers)
    assert clash.status_code == 409
    assert clash.json()["error"] == "Conflict"
    # Another user may use the same name.
    _create(client, bob, name="shared-name")


def test_others_see_nothing(client: TestClient, alice: Account, bob: Account) -> None:
    experiment = _create(client, alice, name="private")
    assert client.get("/api/experiments", headers=bob.headers).json()["total"] == 0
    for path in (
        f"/api/experiments/{experiment['id']}",
        f"/api/experiments/{experiment['id']}/runs",
    ):
        assert client.get(path, headers=bob.headers).status_code == 404
    # Nor can Bob put a run into Alice's experiment.
    response = client.post(
        "/api/jobs",
        json={"name": "x", "command": "true", "experiment_id": experiment["id"]},
        headers=bob.headers,
    )
    assert response.status_code == 404


LOGGER = """
import sys, sparktrainer
lr = float(sys.argv[1])
for step in range(3):
    sparktrainer.log({"loss": lr * (3 - step), "accuracy": step / 10 + lr}, step=step)
"""


def test_runs_side_by_side_sorted_by_a_metric(client: TestClient, alice: Account) -> None:
    experiment = _create(client, alice, name="lr-sweep", metric_goals={"accuracy": "maximize"})
    jobs = {}
    for lr in ("0.3", "0.1", "0.2"):
        job = submit(
            client,
            alice.headers,
            name=f"lr={lr}",
            command=f"{PY} -c {shlex.quote(LOGGER)} {lr}",
            experiment_id=experiment["id"],
            environment={"LR": lr},
        )
        jobs[lr] = job["id"]
    failing = submit(
        client, alice.headers, name="broken", command="exit 2", experiment_id=experiment["id"]
    )
    for job_id in [*jobs.values(), failing["id"]]:
        wait_for(client, alice.headers, job_id, FINAL)

    url = f"/api/experiments/{experiment['id']}/runs"
    by_loss = client.get(url, params={"sort": "metric:loss"}, headers=alice.headers).json()
    assert by_loss["total"] == 4
    # loss is minimized: the smallest best loss first; the run that logged nothing last.
    assert [r["id"] for r in by_loss["items"]] == [
        jobs["0.1"],
        jobs["0.2"],
        jobs["0.3"],
        failing["id"],
    ]
    best = by_loss["items"][0]
    assert best["params"] == {"LR": "0.1"}
    assert best["status"] == "completed"
    assert best["duration_seconds"] is not None and best["duration_seconds"] >= 0
    assert best["metrics"]["loss"]["latest"] == pytest.approx(0.1)
    assert best["metrics"]["loss"]["latest_step"] == 2
    assert best["metrics"]["loss"]["best"] == pytest.approx(0.1)
    assert best["metrics"]["loss"]["max"] == pytest.approx(0.3)
    assert best["metrics"]["loss"]["count"] == 3
    # accuracy is maximized, as the experiment declared.
    assert best["metrics"]["accuracy"]["best"] == pytest.approx(0.3)
    by_accuracy = client.get(url, params={"sort": "metric:accuracy"}, headers=alice.headers).json()
    assert [r["id"] for r in by_accuracy["items"][:3]] == [jobs["0.3"], jobs["0.2"], jobs["0.1"]]
    ascending = client.get(
        url, params={"sort": "metric:accuracy", "order": "asc"}, headers=alice.headers
    ).json()
    assert [r["id"] for r in ascending["items"][:3]] == [jobs["0.1"], jobs["0.2"], jobs["0.3"]]
    assert client.get(url, params={"sort": "bogus"}, headers=alice.headers).status_code == 400
    # The default order, newest first, is read another way (one query, each run's fields
    # repeated on its metrics' rows): every run reads the same as above.
    newest = client.get(url, headers=alice.headers).json()
    assert [r["id"] for r in newest["items"]] == [
        failing["id"],
        jobs["0.2"],
        jobs["0.1"],
        jobs["0.3"],
    ]
    assert sorted(newest["items"], key=lambda r: r["id"]) == sorted(
        by_loss["items"], key=lambda r: r["id"]
    )

    detail = client.get(f"/api/experiments/{experiment['id']}", headers=alice.headers).json()
    assert detail["run_count"] == 4
    assert detail["runs_by_status"] == {"completed": 3, "failed": 1}


def test_unknown_experiment_is_refused_at_submission(client: TestClient, alice: Account) -> None:
    response = client.post(
        "/api/jobs",
        json={"name": "x", "command": "true", "experiment_id": "exp-0000000000000000"},
        headers=alice.headers,
    )
    assert response.status_code == 404
    assert client.get("/api/jobs", headers=alice.headers).json()["total"] == 0
