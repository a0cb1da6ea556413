"""Study lifecycle through the API: validation, owners, cancel, pending trials, restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from spark_trainer.studies.storage import storage_url
from tests.conftest import Account
from tests.jobs.helpers import get as get_job
from tests.studies.helpers import create, distance_body, wait_study, write_distance

SPEC_BODY: dict[str, Any] = {
    "name": "llama-lr-search",
    "objective": "minimize",
    "search_space": {
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
        "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    },
    "n_trials": 100,
    "parallelism": 4,
}
# What the fake executor runs: a trial that waits until it is stopped.
SLEEPER = "echo lr=@@learning_rate@@ bs=@@batch_size@@; sleep 60"


@pytest.fixture
def fake_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(executor="fake", rate_limit_standard_per_minute=100_000)


@pytest.fixture
def fake_client(fake_settings: Settings) -> Any:
    ctx = AppContext.build(fake_settings)
    with TestClient(create_app(fake_settings, ctx)) as client:
        yield client
    ctx.close()


def _body(**fields: Any) -> dict[str, Any]:
    body = {**SPEC_BODY, "command": SLEEPER}
    body.update(fields)
    return body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"learning_rate": {"type": "float", "low": 0, "high": 1e-3, "log": True}},
            "search_space.learning_rate.low must be > 0 when log is true",
        ),
        ({"learning_rate": {"type": "normal", "low": 0, "high": 1}}, "search_space.learning_rate"),
        ({"batch_size": {"type": "categorical", "choices": []}}, "search_space.batch_size.choices"),
        (
            {"layers": {"type": "int", "low": 8, "high": 2}},
            "search_space.layers.low must be <= high",
        ),
        ({"bad-name": {"type": "int", "low": 1, "high": 2}}, "search_space.bad-name"),
    ],
)
def test_a_bad_search_space_is_a_400_naming_the_field_and_creates_nothing(
    fake_client: TestClient, alice: Account, change: dict[str, Any], message: str
) -> None:
    body = _body()
    body["search_space"] = {**body["search_space"], **change}
    response = fake_client.post("/api/hpo/studies", json=body, headers=alice.headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"error", "message", "status"}
    assert error["status"] == 400
    assert message in error["message"]
    assert fake_client.get("/api/hpo/studies", headers=alice.headers).json()["total"] == 0
    assert fake_client.get("/api/experiments", headers=alice.headers).json()["total"] == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parallelism": 0}, "parallelism"),
        ({"n_trials": 0}, "n_trials"),
        ({"objective": "sideways"}, "objective"),
        ({"sampler": "annealing"}, "sampler"),
        ({"pruner": "sometimes"}, "pruner"),
        ({"command": "train --lr @@lr@@"}, "command: placeholder @@lr@@ names no parameter"),
        ({"sampler": "grid"}, "search_space.learning_rate: the grid sampler needs a step"),
        ({"gpu_count": 64}, "gpu_count 64 exceeds the largest node"),
        ({"experiment_id": "exp-0000000000000000"}, "Experiment"),
    ],
)
def test_bad_study_fields_are_refused_and_create_nothing(
    fake_client: TestClient, alice: Account, fields: dict[str, Any], message: str
) -> None:
    response = fake_client.post("/api/hpo/studies", json=_body(**fields), headers=alice.headers)
    assert response.status_code in (400, 404), response.text
    assert message in response.json()["message"]
    assert fake_client.get("/api/hpo/studies", headers=alice.headers).json()["total"] == 0
    assert fake_client.get("/api/experiments", headers=alice.headers).json()["total"] == 0


def test_the_spec_body_with_a_command_is_accepted_and_only_its_owner_sees_it(
    fake_client: TestClient, alice: Account, bob: Account
) -> None:
    study = create(fake_client, alice.headers, _body(n_trials=2, parallelism=1))
    assert study["status"] == "pending"
    assert (study["name"], study["n_trials"], study["n_trials_requested"]) == (
        "llama-lr-search",
        0,
        2,
    )
    assert study["best_value"] is None and study["best_params"] is None
    assert study["trials"] == []
    page = fake_client.get("/api/hpo/studies", headers=alice.headers).json()
    assert (page["total"], [s["id"] for s in page["items"]]) == (1, [study["id"]])
    assert {"items", "total", "limit", "offset"} <= set(page)
    for request in (
        lambda: fake_client.get(f"/api/hpo/studies/{study['id']}", headers=bob.headers),
        lambda: fake_client.post(f"/api/hpo/studies/{study['id']}/cancel", headers=bob.headers),
    ):
        response = request()
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "Not Found"
    assert fake_client.get("/api/hpo/studies", headers=bob.headers).json()["total"] == 0
    assert (
        fake_client.get(f"/api/hpo/studies/{study['id']}", headers=alice.headers).status_code == 200
    )
    fake_client.post(f"/api/hpo/studies/{study['id']}/cancel", headers=alice.headers)


def test_cancel_stops_running_and_pending_trials_and_asks_no_more(
    fake_client: TestClient, alice: Account
) -> None:
    # 2 GPUs a trial on 4 GPUs: two trials run, the third waits for GPUs and says so.
    study = create(fake_client, alice.headers, _body(n_trials=10, parallelism=3, gpu_count=2))
    study = wait_study(
        fake_client,
        alice.headers,
        study["id"],
        # The study says running from the controller's pass after a trial started.
        until=lambda s: (
            [t["job_status"] for t in s["trials"]].count("running") == 2
            and len(s["trials"]) == 3
            and s["status"] == "running"
        ),
    )
    waiting = next(t for t in study["trials"] if t["job_status"] == "pending")
    job = get_job(fake_client, alice.headers, waiting["job_id"])
    assert "needs 2 GPUs" in job["pending_reason"], job

    response = fake_client.post(f"/api/hpo/studies/{study['id']}/cancel", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    study = wait_study(
        fake_client,
        alice.headers,
        study["id"],
        until=lambda s: all(t["state"] != "RUNNING" for t in s["trials"]),
    )
    assert study["status"] == "cancelled"
    assert study["status_reason"] == "cancelled by user"
    assert len(study["trials"]) == 3  # no trial asked after the cancel
    for trial in study["trials"]:
        assert (trial["state"], trial["job_status"]) == ("FAIL", "cancelled")
        assert trial["reason"] == "cancelled by user"
    gpus = fake_client.get("/api/gpus", headers=alice.headers).json()
    assert not any(g["in_use"] for g in gpus)
    again = fake_client.post(f"/api/hpo/studies/{study['id']}/cancel", headers=alice.headers)
    assert again.status_code == 409
    assert again.json()["message"] == f"Study '{study['id']}' has already ended (cancelled)"


def test_a_restart_mid_study_adopts_running_trials_and_carries_on(
    settings: Settings, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    body = distance_body(
        write_distance(tmp_path),
        {"x": 1, "y": 1},
        n_trials=5,
        parallelism=2,
        seed=5,
        environment={"TARGET": '{"x": 1, "y": 1}', "STEPS": "4", "STEP_SECONDS": "0.5"},
    )
    with TestClient(create_app(settings, ctx)) as client:
        study = create(client, alice.headers, body)
        before = wait_study(
            client,
            alice.headers,
            study["id"],
            until=lambda s: (
                any(t["job_status"] == "running" for t in s["trials"]) and s["n_trials"] >= 1
            ),
        )
    # The server is down; its trial processes go on. A new server on the same database:
    running = {t["number"]: t["job_id"] for t in before["trials"] if t["job_status"] == "running"}
    assert running
    restarted = AppContext.build(settings)
    try:
        with TestClient(create_app(settings, restarted)) as client:
            study = wait_study(client, alice.headers, study["id"])
    finally:
        restarted.close()
    assert study["status"] == "completed", study
    assert [t["number"] for t in study["trials"]] == [0, 1, 2, 3, 4]
    assert {t["state"] for t in study["trials"]} == {"COMPLETE"}
    for number, job_id in running.items():  # adopted, not run again
        assert study["trials"][number]["job_id"] == job_id
    loaded = optuna.load_study(study_name=study["id"], storage=storage_url(settings))
    assert [(t.number, t.state.name, t.value) for t in loaded.trials] == [
        (t["number"], t["state"], t["value"]) for t in study["trials"]
    ]


def test_get_of_an_unknown_study_is_404(client: TestClient, alice: Account) -> None:
    response = client.get("/api/hpo/studies/study-0000000000000000", headers=alice.headers)
    assert response.status_code == 404
    assert response.json()["message"] == "Study 'study-0000000000000000' not found"
