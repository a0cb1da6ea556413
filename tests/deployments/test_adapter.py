"""A LoRA adapter deployed on its registered base model, through the built-in backend."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.deployments.helpers import register_model, wait_deployment


def _adapter(tiny_lm: Path, directory: Path, base_model_id: str) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_lm, local_files_only=True)
    config = LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(directory)
    # As a training job on the platform records it: the base is a registered model.
    adapter_config = directory / "adapter_config.json"
    settings = json.loads(adapter_config.read_text())
    adapter_config.write_text(json.dumps({**settings, "base_model_name_or_path": base_model_id}))
    return directory


def test_an_adapter_is_served_on_its_base(
    client: TestClient, alice: Account, tiny_lm: Path, tmp_path: Path
) -> None:
    base_id = register_model(client, alice, tiny_lm, "tiny-gpt2")
    adapter_id = register_model(
        client, alice, _adapter(tiny_lm, tmp_path / "adapter", base_id), "tiny-lora"
    )
    response = client.post(
        "/api/deployments",
        json={"name": "lora", "model_id": adapter_id, "backend": "transformers", "gpu_count": 0},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    deployment_id = response.json()["id"]
    deployment = wait_deployment(
        client, alice, deployment_id, lambda d: d["status"] == "running", "ran"
    )
    job = client.get(
        f"/api/jobs/{deployment['replica_details'][0]['job_id']}", headers=alice.headers
    ).json()
    assert "--base-model" in job["command"] and f"/models/{base_id}" in job["command"]
    assert job["gpus"] == []  # gpu_count 0: the built-in backend on the CPU

    base = f"/api/deployments/{deployment_id}/v1"
    response = client.post(
        f"{base}/chat/completions",
        json={"messages": [{"role": "user", "content": "true or false"}], "max_tokens": 3},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "lora"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    # The replica's own errors come back as the OpenAI API words them.
    response = client.post(
        f"{base}/completions", json={"prompt": "a", "max_tokens": 0}, headers=alice.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "max_tokens must be a positive integer"
    assert client.delete(f"/api/deployments/{deployment_id}", headers=alice.headers).is_success
