"""``client.hpo`` and ``sparktrainer hpo`` against a live server: small studies run to the
end, then their errors."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from sparktrainer import SparkTrainerClient
from sparktrainer.errors import ConflictError, NotFoundError, ValidationError
from tests.sdk.conftest import LiveServer
from tests.sdk.test_cli import run

TRIAL = (
    f"{sys.executable} -c "
    "\"import sys, sparktrainer; sparktrainer.log({'loss': (float(sys.argv[1]) - 1) ** 2})\" "
    "@@x@@"
)


@pytest.fixture
def client(live_server: LiveServer) -> SparkTrainerClient:
    return SparkTrainerClient(base_url=live_server.url, api_key=live_server.api_key)


def test_hpo_create_get_list_cancel(client: SparkTrainerClient) -> None:
    study = client.hpo.create(
        name="sdk-grid",
        search_space={"x": {"type": "categorical", "choices": [0, 1, 3]}},
        n_trials=3,
        parallelism=3,
        command=TRIAL,
        sampler="grid",
        gpu_count=0,
    )
    assert study.status == "pending"
    deadline = time.monotonic() + 90
    while study.status not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, study
        time.sleep(0.3)
        study = client.hpo.get(study.id)
    assert study.status == "completed", study
    assert study.n_trials == 3
    assert study.best_params == {"x": 1}
    assert study.best_value == 0
    assert sorted(t.value for t in study.trials if t.value is not None) == [0, 1, 4]
    page = client.hpo.list(limit=100)
    assert study.id in [s.id for s in page.items]
    with pytest.raises(ConflictError):
        client.hpo.cancel(study.id)
    with pytest.raises(NotFoundError):
        client.hpo.get("study-0000000000000000")
    with pytest.raises(ValidationError) as error:
        client.hpo.create(
            name="bad",
            search_space={"x": {"type": "float", "low": 0, "high": 1, "log": True}},
            n_trials=1,
            command=TRIAL,
        )
    assert "search_space.x.low must be > 0 when log is true" in str(error.value)


def test_hpo_cli_create_get_list_cancel(live_server: LiveServer, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    run(
        config, "login", "--url", live_server.url, "--username", "admin",
        "--password", live_server.admin_password,
    )  # fmt: skip
    spec = tmp_path / "study.json"
    spec.write_text(
        json.dumps(
            {
                "name": "cli-study",
                "search_space": {"x": {"type": "categorical", "choices": [2]}},
                "n_trials": 1,
                "command": TRIAL,
                "gpu_count": 0,
            }
        )
    )
    created = json.loads(run(config, "hpo", "create", str(spec), "-o", "json").stdout)
    assert created["status"] == "pending"
    deadline = time.monotonic() + 90
    study = created
    while study["status"] != "completed":
        assert time.monotonic() < deadline, study
        time.sleep(0.3)
        study = json.loads(run(config, "hpo", "get", created["id"], "-o", "json").stdout)
    assert study["best_params"] == {"x": 2}
    listed = json.loads(run(config, "hpo", "list", "-o", "json").stdout)
    assert created["id"] in [s["id"] for s in listed]
    assert created["id"] in run(config, "hpo", "list").stdout  # the table
    refused = run(config, "hpo", "cancel", created["id"], check=False)
    assert refused.returncode == 1
    assert "has already ended" in refused.stderr
