"""HPO studies end to end: real Optuna on the app's database, trials as real jobs."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from fastapi.testclient import TestClient
from sqlalchemy import select

from spark_trainer.context import AppContext
from spark_trainer.models import Job
from spark_trainer.settings import Settings
from spark_trainer.studies.storage import storage_url
from tests.conftest import Account
from tests.jobs.helpers import get as get_job
from tests.studies.helpers import create, quadratic, study_body, wait_study, write_objective


def _times(job: dict[str, Any]) -> tuple[datetime, datetime]:
    return (
        datetime.fromisoformat(job["started_at"]),
        datetime.fromisoformat(job["finished_at"]),
    )


def _most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(f, -1) for _, f in intervals])
    running = most = 0
    for _, delta in edges:  # an end sorts before a start at the same instant
        running += delta
        most = max(most, running)
    return most


def test_a_study_finds_the_optimum_with_at_most_parallelism_trials_running(
    client: TestClient, ctx: AppContext, alice: Account, settings: Settings, tmp_path: Path
) -> None:
    script = write_objective(tmp_path)
    body = study_body(script, n_trials=12, parallelism=3, sampler="grid", seed=7)
    body["search_space"]["learning_rate"] = {"type": "categorical", "choices": [1e-5, 1e-4, 1e-3]}
    study = create(client, alice.headers, body)
    assert study["status"] == "pending"
    assert study["n_trials"] == 0
    assert study["n_trials_requested"] == 12
    study = wait_study(client, alice.headers, study["id"])
    assert study["status"] == "completed", study
    assert study["n_trials"] == 12
    trials = study["trials"]
    assert [t["number"] for t in trials] == list(range(12))
    assert {t["state"] for t in trials} == {"COMPLETE"}
    for trial in trials:  # each value is the last one the trial reported
        assert math.isclose(trial["value"], quadratic(trial["params"]), abs_tol=1e-9)
    best = min(trials, key=lambda t: t["value"])
    assert study["best_value"] == best["value"]
    assert study["best_params"] == best["params"]
    assert study["best_params"] == {"learning_rate": 1e-4, "batch_size": 64}
    assert study["best_value"] == 0
    # The grid sampler visits each of the 12 points once.
    assert len({tuple(sorted(t["params"].items())) for t in trials}) == 12
    assert set(study["parameter_importance"]) == {"learning_rate", "batch_size"}

    jobs = [get_job(client, alice.headers, t["job_id"]) for t in trials]
    assert {j["status"] for j in jobs} == {"completed"}
    assert all(j["experiment_id"] == study["experiment_id"] for j in jobs)
    with ctx.session_factory() as session:
        rows = session.execute(
            select(Job.kind, Job.parent_id, Job.params).where(
                Job.id.in_([t["job_id"] for t in trials])
            )
        ).all()
    assert {(kind, parent) for kind, parent, _ in rows} == {("trial", study["id"])}
    assert sorted(map(str, (params for _, _, params in rows))) == sorted(
        str(t["params"]) for t in trials
    )
    assert _most_at_once([_times(j) for j in jobs]) <= 3

    runs = client.get(
        f"/api/experiments/{study['experiment_id']}/runs",
        params={"sort": "metric:loss"},
        headers=alice.headers,
    ).json()
    assert runs["total"] == 12
    assert runs["items"][0]["id"] == best["job_id"]

    # Optuna itself sees the same trials: a plain load_study, no flags.
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=storage_url(settings))
    assert [(t.number, t.params, t.value) for t in loaded.trials] == [
        (t["number"], t["params"], t["value"]) for t in trials
    ]
    assert loaded.best_params == study["best_params"]
    assert loaded.trials[0].user_attrs["sparktrainer_job_id"] == trials[0]["job_id"]


def test_failed_and_silent_trials_are_fail_and_the_study_completes(
    client: TestClient, alice: Account, tmp_path: Path
) -> None:
    script = write_objective(tmp_path)
    body = study_body(
        script,
        n_trials=4,
        parallelism=2,
        environment={"CRASH_TRIALS": "1", "SILENT_TRIALS": "2"},
        metric_value="best",
    )
    study = wait_study(client, alice.headers, create(client, alice.headers, body)["id"])
    assert study["status"] == "completed", study
    states = {t["number"]: (t["state"], t["reason"]) for t in study["trials"]}
    assert states[0] == ("COMPLETE", None)
    assert states[1] == ("FAIL", "exited with code 1")
    assert states[2] == ("FAIL", "reported no value of 'loss'")
    assert states[3] == ("COMPLETE", None)
    # "best": the smallest value reported, the last of the countdown.
    first = study["trials"][0]
    assert math.isclose(first["value"], quadratic(first["params"]), abs_tol=1e-9)
