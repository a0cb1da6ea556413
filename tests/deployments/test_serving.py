"""A real deployment of the tiny model with the built-in backend, end to end.

Two replica processes serve it behind the proxied endpoint; one is SIGKILLed and comes
back while requests keep succeeding; it scales to one and back; deleting it ends the
processes and frees the GPUs.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.deployments.helpers import get_deployment, register_model, wait_deployment
from tests.jobs.helpers import FINAL, get

SERVER_MODULE = "spark_trainer.deployments.server"


def _server_pid(client: TestClient, account: Account, job_id: str) -> int:
    """The replica's server process: the job's process (the shim) runs it."""
    shim = get(client, account.headers, job_id)
    assert shim["status"] == "running"
    job_pid = _job_pid(client, account, job_id)
    for child in psutil.Process(job_pid).children(recursive=True):
        if SERVER_MODULE in " ".join(child.cmdline()):
            return child.pid
    raise AssertionError(f"no server process under job {job_id}")


def _job_pid(client: TestClient, account: Account, job_id: str) -> int:
    # The API does not show pids; the job's shim is the process whose command line
    # names the job's directory.
    marker = f"/jobs/{job_id}/"
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or []):
            return int(process.info["pid"])
    raise AssertionError(f"no process for job {job_id}")


class Endpoint:
    def __init__(self, client: TestClient, account: Account, deployment_id: str) -> None:
        self.client = client
        self.headers = account.headers
        self.base = f"/api/deployments/{deployment_id}/v1"

    def complete(self, prompt: str = "the model learns", max_tokens: int = 4) -> tuple[str, Any]:
        response = self.client.post(
            f"{self.base}/completions",
            json={"prompt": prompt, "max_tokens": max_tokens, "temperature": 0},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "text_completion"
        assert isinstance(body["choices"][0]["text"], str)
        assert body["usage"]["completion_tokens"] >= 1
        return response.headers["x-replica-id"], body

    def stream(self) -> tuple[str, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        done = False
        with self.client.stream(
            "POST",
            f"{self.base}/chat/completions",
            json={
                "messages": [{"role": "user", "content": "a question about science"}],
                "max_tokens": 6,
                "stream": True,
            },
            headers=self.headers,
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            replica = response.headers["x-replica-id"]
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    break
                events.append(json.loads(data))
        assert done, events
        return replica, events


def _replica_jobs(deployment: dict[str, Any]) -> set[str]:
    return {r["job_id"] for r in deployment["replica_details"]}


def _running(replicas: int) -> Any:
    def check(d: dict[str, Any]) -> bool:
        details = d["replica_details"]
        return (
            d["status"] == "running"
            and len(details) == replicas
            and all(r["health"] == "healthy" for r in details)
        )

    return check


def test_deploy_serve_kill_scale_and_delete(
    client: TestClient, alice: Account, bob: Account, tiny_lm: Path
) -> None:
    model_id = register_model(client, alice, tiny_lm, "tiny-gpt2")
    response = client.post(
        "/api/deployments",
        json={"name": "tiny", "model_id": model_id, "backend": "transformers", "replicas": 2},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    deployment_id = created["id"]
    assert created["status"] == "pending" and created["replicas"] == 2
    assert created["endpoint"].endswith(f"/api/deployments/{deployment_id}/v1/completions")
    assert created["requests_per_second"] == 0

    deployment = wait_deployment(client, alice, deployment_id, _running(2), "ran 2 replicas")
    replica_jobs = _replica_jobs(deployment)
    assert len(replica_jobs) == 2
    assert len({r["port"] for r in deployment["replica_details"]}) == 2
    held = {g["id"]: g for g in client.get("/api/gpus", headers=alice.headers).json()}
    holders = {g.get("job_id") for g in held.values()} - {None}
    assert holders == replica_jobs  # each replica holds its GPU

    endpoint = Endpoint(client, alice, deployment_id)
    # Plain completions: generated text, answered by both replica processes.
    served_by = {endpoint.complete()[0] for _ in range(8)}
    assert served_by == replica_jobs
    # Streaming: the chunks come through as server-sent events.
    replica, events = endpoint.stream()
    assert replica in replica_jobs
    assert events[0]["choices"][0]["delta"] == {"role": "assistant"}
    pieces = [e["choices"][0]["delta"].get("content") for e in events[1:-1]]
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert events[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    assert get_deployment(client, alice, deployment_id)["requests_per_second"] > 0

    # Only the owner (or a deployment key of hers) may call it.
    models = client.get(f"{endpoint.base}/models", headers=bob.headers)
    assert models.status_code == 404
    assert client.get(f"{endpoint.base}/models").status_code == 401
    key = client.post(
        f"/api/deployments/{deployment_id}/keys", json={"name": "app"}, headers=alice.headers
    ).json()["key"]
    models = client.get(f"{endpoint.base}/models", headers={"Authorization": f"Bearer {key}"})
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "tiny"

    # SIGKILL one replica's server: it is restarted, and no request fails meanwhile.
    victim = deployment["replica_details"][0]
    os.kill(_server_pid(client, alice, victim["job_id"]), signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        endpoint.complete()
        deployment = get_deployment(client, alice, deployment_id)
        slot = deployment["replica_details"][0]
        if slot["restart_count"] == 1 and _running(2)(deployment):
            break
        assert time.monotonic() < deadline, deployment
    assert slot["job_id"] != victim["job_id"] and slot["port"] == victim["port"]
    assert slot["last_exit"] == "killed by signal 9 (SIGKILL)"
    assert slot["last_exit_code"] == 137
    assert get(client, alice.headers, victim["job_id"])["status"] == "failed"
    served_by = {endpoint.complete()[0] for _ in range(8)}
    assert served_by == _replica_jobs(deployment)

    # Scale to one and back, answering all along.
    before = deployment["replica_details"]
    response = client.patch(
        f"/api/deployments/{deployment_id}", json={"replicas": 1}, headers=alice.headers
    )
    assert response.status_code == 200 and response.json()["replicas"] == 1
    deadline = time.monotonic() + 60
    while not _running(1)(deployment := get_deployment(client, alice, deployment_id)):
        endpoint.complete()
        assert time.monotonic() < deadline, deployment
    assert get(client, alice.headers, before[1]["job_id"])["status"] == "cancelled"
    client.patch(f"/api/deployments/{deployment_id}", json={"replicas": 2}, headers=alice.headers)
    deadline = time.monotonic() + 90
    while not _running(2)(deployment := get_deployment(client, alice, deployment_id)):
        endpoint.complete()
        assert time.monotonic() < deadline, deployment
    served_by = {endpoint.complete()[0] for _ in range(8)}
    assert served_by == _replica_jobs(deployment)

    # Delete: every replica stops, its processes are gone, and the GPUs are free.
    final_jobs = _replica_jobs(deployment)
    pids = [_job_pid(client, alice, job_id) for job_id in final_jobs]
    response = client.delete(f"/api/deployments/{deployment_id}", headers=alice.headers)
    assert response.status_code == 200 and response.json()["status"] == "stopping"
    stopped = wait_deployment(
        client, alice, deployment_id, lambda d: d["status"] == "stopped", "stopped", 30
    )
    assert all(r["health"] == "stopped" and r["port"] is None for r in stopped["replica_details"])
    for job_id in final_jobs:
        assert get(client, alice.headers, job_id)["status"] in FINAL
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    gpus = client.get("/api/gpus", headers=alice.headers).json()
    assert all(not g["in_use"] and g["job_id"] is None for g in gpus), gpus
    assert endpoint.client.get(f"{endpoint.base}/models", headers=alice.headers).status_code == 404
