"""The spec's complete training workflow, steps 1-3, with real files and a real job, then
the model it produced: listed with its lineage, tagged, downloaded."""

from __future__ import annotations

import hashlib
import json
import shlex

from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, PY, logs, submit, wait_for, wait_until

TRAIN = """
import json, os, pathlib, sparktrainer
records = [json.loads(line) for line in open(os.environ["SPARKTRAINER_DATASET_PATH"])]
out = pathlib.Path(os.environ["SPARKTRAINER_OUTPUT_DIR"])
(out / "adapter").mkdir()
(out / "adapter" / "weights.bin").write_bytes(b"\\x00\\x01" * 1000)
(out / "config.json").write_text(json.dumps({"records": len(records)}))
print(oct(os.stat(os.environ["SPARKTRAINER_DATASET_PATH"]).st_mode & 0o777))
sparktrainer.log({"loss": 0.25, "accuracy": 0.9}, step=len(records))
"""

DATASET = b"".join(
    json.dumps({"instruction": f"q{i}", "output": f"a{i}"}).encode() + b"\n" for i in range(7)
)


def _upload(client: TestClient, account: Account, data: bytes) -> dict[str, object]:
    response = client.post(
        "/api/datasets",
        data={"name": "my-dataset"},
        files={"file": ("dataset.jsonl", data, "application/jsonl")},
        headers=account.headers,
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, object] = response.json()
    return body


def _train(
    client: TestClient, account: Account, experiment_id: str, dataset_id: str, **extra: object
) -> dict[str, object]:
    job = submit(
        client,
        account.headers,
        name="llama-training",
        command=f"{PY} -c {shlex.quote(TRAIN)}",
        gpu_count=4,
        experiment_id=experiment_id,
        dataset_id=dataset_id,
        **extra,
    )
    done = wait_for(client, account.headers, str(job["id"]), FINAL)
    assert done["status"] == "completed", logs(client, account.headers, str(job["id"]), "stderr")
    return done


def _models(client: TestClient, account: Account, **params: str) -> list[dict[str, object]]:
    response = client.get("/api/models", params=params, headers=account.headers)
    assert response.status_code == 200
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_complete_training_workflow(client: TestClient, alice: Account, bob: Account) -> None:
    dataset = _upload(client, alice, DATASET)
    experiment = client.post(
        "/api/experiments",
        json={"name": "llama-finetune", "description": "Fine-tuning experiment"},
        headers=alice.headers,
    ).json()
    job = _train(client, alice, str(experiment["id"]), str(dataset["id"]))
    # The job reads the stored blob in place, which is read-only (root ignores file modes,
    # so the mode is what is checked, not a failed write).
    assert logs(client, alice.headers, str(job["id"])) == "0o444\n"
    assert job["dataset_version_id"] is not None

    wait_until(lambda: len(_models(client, alice)) == 1, what="the model to be registered")
    [model] = _models(client, alice)
    assert str(model["id"]).startswith("model-")
    assert model["name"] == "llama-training"
    assert model["version"] == 1
    assert model["file_count"] == 2
    assert model["total_size"] == 2000 + len(json.dumps({"records": 7}))
    assert model["metrics"] == {"loss": 0.25, "accuracy": 0.9}

    detail = client.get(f"/api/models/{model['id']}", headers=alice.headers).json()
    assert [f["path"] for f in detail["files"]] == ["adapter/weights.bin", "config.json"]
    weights = detail["files"][0]
    assert weights["hash"] == hashlib.md5(b"\x00\x01" * 1000, usedforsecurity=False).hexdigest()
    lineage = detail["lineage"]
    assert lineage["job"] == {"id": job["id"], "name": "llama-training", "status": "completed"}
    assert lineage["experiment"] == {"id": experiment["id"], "name": "llama-finetune"}
    assert lineage["dataset"]["dataset_id"] == dataset["id"]
    assert lineage["dataset"]["version"] == "v1.0.0"
    assert lineage["dataset"]["hash"] == hashlib.md5(DATASET, usedforsecurity=False).hexdigest()

    tagged = client.post(
        f"/api/models/{model['id']}/tag", json={"tag": "production"}, headers=alice.headers
    )
    assert tagged.status_code == 200
    assert tagged.json()["tags"] == ["production"]
    assert [m["id"] for m in _models(client, alice, tag="production")] == [model["id"]]

    download = client.get(
        f"/api/models/{model['id']}/files/adapter/weights.bin", headers=alice.headers
    )
    assert download.status_code == 200
    assert download.content == b"\x00\x01" * 1000
    assert download.headers["content-length"] == "2000"

    # Bob sees none of it.
    assert _models(client, bob) == []
    assert _models(client, bob, tag="production") == []
    for path in (
        f"/api/models/{model['id']}",
        f"/api/models/{model['id']}/files/config.json",
    ):
        assert client.get(path, headers=bob.headers).status_code == 404
    assert (
        client.post(
            f"/api/models/{model['id']}/tag", json={"tag": "mine"}, headers=bob.headers
        ).status_code
        == 404
    )


def test_a_tag_names_one_version_and_moves(client: TestClient, alice: Account) -> None:
    dataset = _upload(client, alice, DATASET)
    experiment = client.post(
        "/api/experiments", json={"name": "tags"}, headers=alice.headers
    ).json()
    for _ in range(2):
        _train(client, alice, str(experiment["id"]), str(dataset["id"]), model_name="llama")
    wait_until(lambda: len(_models(client, alice, name="llama")) == 2, what="two versions")
    newer, older = _models(client, alice, name="llama")
    assert (newer["version"], older["version"]) == (2, 1)

    client.post(f"/api/models/{older['id']}/tag", json={"tag": "production"}, headers=alice.headers)
    moved = client.post(
        f"/api/models/{newer['id']}/tag", json={"tag": "production"}, headers=alice.headers
    )
    assert moved.json()["tags"] == ["production"]
    assert client.get(f"/api/models/{older['id']}", headers=alice.headers).json()["tags"] == []
    assert [m["id"] for m in _models(client, alice, tag="production")] == [newer["id"]]

    removed = client.delete(f"/api/models/{newer['id']}/tag/production", headers=alice.headers)
    assert removed.status_code == 200 and removed.json()["tags"] == []
    assert _models(client, alice, tag="production") == []
    assert (
        client.delete(
            f"/api/models/{newer['id']}/tag/production", headers=alice.headers
        ).status_code
        == 404
    )
    bad = client.post(
        f"/api/models/{newer['id']}/tag", json={"tag": "has space"}, headers=alice.headers
    )
    assert bad.status_code == 400


def test_register_a_completed_job_by_hand(client: TestClient, alice: Account) -> None:
    job = submit(
        client,
        alice.headers,
        command='echo weights > "$SPARKTRAINER_OUTPUT_DIR/model.bin"',
        name="made elsewhere #1",
    )
    wait_for(client, alice.headers, job["id"], FINAL)
    wait_until(lambda: len(_models(client, alice)) == 1, what="automatic registration")
    assert _models(client, alice)[0]["name"] == "made-elsewhere-1"

    response = client.post(
        "/api/models", json={"job_id": job["id"], "name": "hand-made"}, headers=alice.headers
    )
    assert response.status_code == 201
    assert (response.json()["name"], response.json()["version"]) == ("hand-made", 1)

    no_output = submit(client, alice.headers, command="true")
    wait_for(client, alice.headers, no_output["id"], FINAL)
    refused = client.post("/api/models", json={"job_id": no_output["id"]}, headers=alice.headers)
    assert refused.status_code == 400
    failed = submit(client, alice.headers, command='echo x > "$SPARKTRAINER_OUTPUT_DIR/m"; exit 1')
    wait_for(client, alice.headers, failed["id"], FINAL)
    assert (
        client.post("/api/models", json={"job_id": failed["id"]}, headers=alice.headers).status_code
        == 409
    )
    assert len(_models(client, alice)) == 2
