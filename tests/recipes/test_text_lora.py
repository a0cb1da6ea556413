"""The spec's complete workflow, for real: a tiny GPT-2 fine-tuned with LoRA by
``python -m spark_trainer.recipes.text_lora --config config.yaml``.

Through the HTTP API of a live server (the job fetches its registered base model through
the API with its own token, so the server must listen on a real port): upload the base
model and a JSONL dataset, create an experiment, submit the recipe, watch its metrics on
the SSE stream while it runs, cancel it (it saves a checkpoint), resubmit it (it resumes
past that checkpoint and completes), and find the adapter registered as a model with
lineage to the dataset version.

SQLite only: this is the suite's one slow training path (two recipe processes of ~10 s
each); the API calls it makes are covered on both backends by the registry, dataset and
job tests.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import wait_until
from tests.live_server import bound_socket, serving
from tests.recipes.helpers import model_files, sse_metrics

COMMAND = "python -m spark_trainer.recipes.text_lora --config config.yaml"
SENTENCES = [
    "the model learns to answer questions about science",
    "a question about history and mathematics",
    "yes because the answer is true therefore",
]
CANCEL_AFTER_STEP = 12  # checkpoints every 5 steps: at least checkpoint-10 exists by then


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with bound_socket() as sock:
        yield sock


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], listener: socket.socket) -> Settings:
    port = listener.getsockname()[1]
    # A grace period that a CPU step plus a checkpoint fit in on a busy 2-core machine. The
    # test polls as alice (standard tier) while the recipe trains: on a slow machine that
    # passed the 100 requests a minute, and a 429 then answered a later read.
    return settings_factory(
        public_url=f"http://127.0.0.1:{port}",
        kill_grace_seconds=20.0,
        rate_limit_standard_per_minute=100_000,
    )


@pytest.fixture
def api(settings: Settings, ctx: AppContext, listener: socket.socket) -> Iterator[httpx.Client]:
    with (
        serving(create_app(settings, ctx), listener=listener),
        httpx.Client(base_url=settings.api_url, timeout=60) as client,
    ):
        yield client


def _config(base_model: str, max_steps: int) -> str:
    return f"""\
base_model: {base_model}
dataset:
  format: text          # the job's SPARKTRAINER_DATASET_PATH (submitted with dataset_id)
lora: {{r: 8, alpha: 16, dropout: 0.0}}
training:
  max_steps: {max_steps}
  batch_size: 4
  learning_rate: 0.005
  lr_scheduler: constant
  seed: 1
  eval_split: 0.1
  eval_steps: 5
  checkpoint_steps: 5
  max_seq_length: 32
"""


def _wait(api: httpx.Client, headers: dict[str, str], job_id: str, timeout: float) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/api/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in {"completed", "failed", "cancelled"}:
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{job_id} still {job['status']}"
        time.sleep(0.2)


def _stderr(api: httpx.Client, headers: dict[str, str], job_id: str) -> str:
    return api.get(f"/api/jobs/{job_id}/logs", params={"stream": "stderr"}, headers=headers).text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_complete_training_workflow(
    api: httpx.Client, alice: Account, tiny_lm: Path, tmp_path: Path
) -> None:
    headers = alice.headers
    # A base model the user already has, uploaded as files.
    base = api.post(
        "/api/models", headers=headers, data={"name": "tiny-gpt2"}, files=model_files(tiny_lm)
    )
    assert base.status_code == 201, base.text
    base_id = base.json()["id"]

    # 1. Upload dataset
    lines = "".join(json.dumps({"text": SENTENCES[i % 3]}) + "\n" for i in range(60))
    dataset = api.post(
        "/api/datasets",
        headers=headers,
        data={"name": "my-dataset"},
        files={"file": ("dataset.jsonl", lines.encode(), "application/jsonl")},
    )
    assert dataset.status_code == 201, dataset.text
    dataset_version = dataset.json()["latest_version"]

    # 2. Create experiment
    experiment = api.post(
        "/api/experiments",
        headers=headers,
        json={"name": "llama-finetune", "description": "Fine-tuning experiment"},
    )
    assert experiment.status_code == 201, experiment.text

    # 3. Submit training job: config.yaml lives in the job's working_dir.
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text(_config(base_id, max_steps=10_000))
    submission = {
        "name": "llama-training",
        "command": COMMAND,
        "gpu_count": 1,
        "working_dir": str(project),
        "dataset_id": dataset.json()["id"],
        "experiment_id": experiment.json()["id"],
    }
    first = api.post("/api/jobs", headers=headers, json=submission)
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]

    # 4. Monitor progress (SSE) while it runs, then cancel it.
    seen: list[dict] = []  # type: ignore[type-arg]
    with api.stream(
        "GET", f"/api/jobs/{first_id}/stream", headers=headers, timeout=httpx.Timeout(120)
    ) as stream:
        for point in sse_metrics(stream):
            seen.append(point)
            if point["step"] >= CANCEL_AFTER_STEP and "loss" in point:
                break
    assert seen, _stderr(api, headers, first_id)
    assert api.get(f"/api/jobs/{first_id}", headers=headers).json()["status"] == "running"
    trained = [p for p in seen if "loss" in p]
    assert {"loss", "lr", "epoch", "tokens_per_second"} <= set(trained[-1])
    assert trained[-1]["tokens_per_second"] > 0
    assert any("eval_loss" in p for p in seen)
    cancel = api.post(f"/api/jobs/{first_id}/cancel", headers=headers)
    assert cancel.status_code == 200, cancel.text
    cancelled = _wait(api, headers, first_id, timeout=60)
    assert cancelled["status"] == "cancelled", cancelled
    checkpoints = sorted(int(p.name.split("-")[1]) for p in (project / "checkpoints").iterdir())
    saved_at = checkpoints[-1]
    assert saved_at >= CANCEL_AFTER_STEP, (checkpoints, _stderr(api, headers, first_id))
    # Saved on SIGTERM: not one of the every-5-steps checkpoints unless by chance.
    assert (project / "checkpoints" / f"checkpoint-{saved_at}" / "trainer_state.json").is_file()

    # Resubmitted: resumes past the checkpoint and runs to the end.
    (project / "config.yaml").write_text(_config(base_id, max_steps=saved_at + 25))
    second = api.post("/api/jobs", headers=headers, json=submission)
    assert second.status_code == 201
    second_id = second.json()["id"]
    done = _wait(api, headers, second_id, timeout=240)
    assert done["status"] == "completed", (done, _stderr(api, headers, second_id))
    history = api.get(
        f"/api/jobs/{second_id}/metrics", params={"name": "loss"}, headers=headers
    ).json()["metrics"][0]
    assert history["steps"][0] == saved_at + 1
    assert history["steps"][-1] == saved_at + 25
    first_losses = [p["loss"] for p in trained[:3]]
    last_losses = history["values"][-3:]
    assert sum(last_losses) / 3 < sum(first_losses) / 3 - 0.2, (first_losses, last_losses)

    # The adapter is registered as a model, with lineage to the dataset version: by the
    # job-end event's handler, so shortly after the job reads "completed".
    def registered() -> dict:  # type: ignore[type-arg]
        response = api.get("/api/models", params={"name": "llama-training"}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    wait_until(lambda: registered()["total"] == 1, what="the adapter to be registered")
    models = registered()
    found = api.get(f"/api/models/{models['items'][0]['id']}", headers=headers)
    assert found.status_code == 200, found.text
    model = found.json()
    assert model["source_job_id"] == second_id
    assert model["lineage"]["dataset"] == {
        "dataset_id": dataset.json()["id"],
        "name": "my-dataset",
        "version": dataset_version["version"],
        "hash": dataset_version["hash"],
    }
    assert model["lineage"]["experiment"]["id"] == experiment.json()["id"]
    files = {f["path"] for f in model["files"]}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "sparktrainer.json",
    } <= files
    assert "eval_loss" in model["metrics"]
    adapter = api.get(f"/api/models/{model['id']}/files/adapter_config.json", headers=headers)
    assert adapter.status_code == 200, adapter.text
    assert adapter.json()["base_model_name_or_path"] == base_id
    assert adapter.json()["fan_in_fan_out"] is True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dataset_named_by_id_in_the_config(
    api: httpx.Client, alice: Account, bob: Account, tiny_lm: Path, tmp_path: Path
) -> None:
    """``dataset.id`` in the config: the job fetches the owner's dataset with its own token
    (no ``dataset_id`` in the submission); another user's job cannot read it."""
    lines = "".join(json.dumps({"text": SENTENCES[i % 3]}) + "\n" for i in range(12))
    dataset = api.post(
        "/api/datasets",
        headers=alice.headers,
        data={"name": "by-id"},
        files={"file": ("data.jsonl", lines.encode(), "application/jsonl")},
    )
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    config = f"""\
base_model: {tiny_lm}
dataset: {{id: {dataset_id}, version: v1.0.0}}
training: {{max_steps: 2, batch_size: 4, checkpoint_steps: 100, max_seq_length: 32}}
"""
    submission = {"name": "by-id", "command": COMMAND, "gpu_count": 0}

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.yaml").write_text(config)
    bobs = api.post(
        "/api/jobs", headers=bob.headers, json={**submission, "working_dir": str(foreign)}
    )
    assert bobs.status_code == 201, bobs.text
    failed = _wait(api, bob.headers, bobs.json()["id"], timeout=60)
    assert failed["status"] == "failed"
    assert failed["status_reason"] == (
        f"exited with code 2: key 'dataset.id': dataset '{dataset_id}' not found"
    )

    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text(config)
    job = api.post(
        "/api/jobs", headers=alice.headers, json={**submission, "working_dir": str(project)}
    )
    assert job.status_code == 201, job.text
    done = _wait(api, alice.headers, job.json()["id"], timeout=120)
    assert done["status"] == "completed", (done, _stderr(api, alice.headers, done["id"]))
    cached = project / ".sparktrainer" / "datasets" / dataset_id / "v1.0.0.jsonl"
    assert cached.read_text() == lines
