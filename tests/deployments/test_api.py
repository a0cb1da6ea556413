"""Creating deployments through the API: bad input, missing backends, the real job."""

from __future__ import annotations

import os
import shlex
import stat
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from spark_trainer.deployments.proxy import RequestRate
from tests.conftest import Account
from tests.deployments.helpers import get_deployment, register_model, wait_deployment
from tests.jobs.helpers import FINAL, get, wait_for

SPEC_FIELDS = {
    "id",
    "name",
    "model_id",
    "backend",
    "status",
    "endpoint",
    "replicas",
    "requests_per_second",
}


@pytest.fixture
def model_id(client: TestClient, alice: Account, tiny_lm: Path) -> str:
    return register_model(client, alice, tiny_lm, "tiny-gpt2")


def _create(client: TestClient, account: Account, **body: object) -> tuple[int, dict[str, object]]:
    response = client.post("/api/deployments", json=body, headers=account.headers)
    return response.status_code, response.json()


def test_bad_requests_name_the_field_and_create_nothing(
    client: TestClient, alice: Account, bob: Account, model_id: str
) -> None:
    base = {"name": "prod", "model_id": model_id, "backend": "transformers", "replicas": 1}
    status, body = _create(client, alice, **{**base, "backend": "sglang"})
    assert status == 400 and "backend" in str(body["message"]), body
    assert body["error"] == "Validation Error" and body["status"] == 400
    status, body = _create(client, alice, **{**base, "replicas": 0})
    assert status == 400 and "replicas" in str(body["message"]), body
    status, body = _create(client, alice, **{**base, "gpu_count": 99})
    assert status == 400 and "gpu_count" in str(body["message"]), body
    status, body = _create(client, alice, **{**base, "model_id": "model-0000000000000000"})
    assert status == 404 and body["message"] == "Model 'model-0000000000000000' not found"
    # Someone else's model does not exist for bob.
    status, body = _create(client, bob, **base)
    assert status == 404 and body["message"] == f"Model '{model_id}' not found"
    for account in (alice, bob):
        listed = client.get("/api/deployments", headers=account.headers).json()
        assert listed["total"] == 0 and listed["items"] == []


def test_a_missing_backend_executable_fails_the_deployment_at_once(
    client: TestClient, alice: Account, ctx: AppContext, model_id: str
) -> None:
    jobs_before = client.get("/api/jobs", headers=alice.headers).json()["total"]
    status, body = _create(
        client, alice, name="prod", model_id=model_id, backend="vllm", replicas=2, gpu_count=2
    )
    assert status == 201, body
    assert body.keys() >= SPEC_FIELDS
    assert body["status"] == "failed"
    assert body["status_reason"] == f"vllm is not installed on node {ctx.settings.node_name}"
    assert body["replica_details"] == []
    # Nothing was started, and nothing is going to be.
    assert client.get("/api/jobs", headers=alice.headers).json()["total"] == jobs_before
    assert get_deployment(client, alice, str(body["id"]))["status"] == "failed"


FAKE_BACKEND = """#!/bin/sh
# Stands in for a serving backend: records its arguments, then waits to be stopped.
printf '%s\\n' "$0" "$@" > "{argv}.$$"
exec sleep 600
"""


@pytest.mark.parametrize(
    ("backend", "executable"),
    [("vllm", "vllm"), ("tgi", "text-generation-launcher"), ("triton", "tritonserver")],
)
def test_external_backends_run_their_real_command_on_the_models_files(
    client: TestClient,
    alice: Account,
    ctx: AppContext,
    model_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    executable: str,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / executable
    fake.write_text(FAKE_BACKEND.replace("{argv}", str(tmp_path / "argv")))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    status, body = _create(
        client, alice, name="prod", model_id=model_id, backend=backend, replicas=1, gpu_count=2
    )
    assert status == 201, body
    deployment_id = str(body["id"])
    body = wait_deployment(
        client,
        alice,
        deployment_id,
        lambda d: d["replica_details"] and d["replica_details"][0]["job_id"],
        "submitted a replica",
    )
    replica = body["replica_details"][0]
    job = wait_for(client, alice.headers, replica["job_id"], {"running"})
    assert len(job["gpus"]) == 2
    model_dir = ctx.settings.data_dir / "deployments" / "models" / model_id
    port = str(replica["port"])
    expected = {
        "vllm": ["vllm", "serve", str(model_dir), "--served-model-name", "prod",
                 "--host", "127.0.0.1", "--port", port, "--tensor-parallel-size", "2"],
        "tgi": ["text-generation-launcher", "--model-id", str(model_dir),
                "--hostname", "127.0.0.1", "--port", port, "--num-shard", "2"],
        "triton": ["tritonserver", "--model-repository",
                   str(ctx.settings.data_dir / "deployments" / deployment_id / "triton"),
                   "--http-address", "127.0.0.1", "--http-port", port,
                   "--allow-grpc=false", "--allow-metrics=false"],
    }[backend]  # fmt: skip
    assert job["command"] == shlex.join(expected)
    # The backend really ran with those arguments, on the model's files.
    recorded = wait_file(tmp_path, "argv.")
    assert recorded[1:] == expected[1:]
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert body["status"] in ("pending", "starting")  # a backend that never answers /health

    response = client.delete(f"/api/deployments/{deployment_id}", headers=alice.headers)
    assert response.status_code == 200 and response.json()["status"] == "stopping"
    wait_deployment(client, alice, deployment_id, lambda d: d["status"] == "stopped", "stopped")
    assert get(client, alice.headers, replica["job_id"])["status"] in FINAL


def wait_file(directory: Path, prefix: str) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for path in directory.glob(f"{prefix}*"):
            lines = path.read_text().splitlines()
            if lines:
                return lines
        time.sleep(0.05)
    raise AssertionError("the backend never ran")


def test_requests_per_second_counts_every_api_process(
    client: TestClient, alice: Account, ctx: AppContext, model_id: str
) -> None:
    """Each API process counts its own requests and adds them to the database about once
    a second; any process reads the sum (plus its own counts not yet written)."""
    status, body = _create(client, alice, name="rated", model_id=model_id, backend="vllm")
    assert status == 201, body
    deployment_id = str(body["id"])
    first, second = RequestRate(ctx.session_factory), RequestRate(ctx.session_factory)
    assert first.hit(deployment_id) == 0.0  # a process's first request: flush now
    for _ in range(29):
        assert first.hit(deployment_id) is None  # …and no other until that one is done
    for _ in range(20):
        second.hit(deployment_id)
    first.flush()
    # Once flushed, the next request schedules the next flush, at most a second later.
    delay = first.hit(deployment_id)
    assert delay is not None and 0.0 <= delay <= 1.0
    with ctx.session_factory() as session:
        assert second.rate(session, deployment_id) == 5.0  # 30 written + its own 20, over 10 s
        assert first.rate(session, deployment_id) == 3.1  # the second's are not written yet
    second.flush()
    first.flush()
    with ctx.session_factory() as session:
        assert RequestRate(ctx.session_factory).rate(session, deployment_id) == 5.1
    # The API's own process reads the same figure.
    assert get_deployment(client, alice, deployment_id)["requests_per_second"] == 5.1
