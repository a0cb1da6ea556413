"""MMLU through the API on the tiny model, and both public data layouts, checked against
log-likelihoods computed by the test itself."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spark_trainer.evaluations.run import evaluate
from spark_trainer.evaluations.spec import PREDICTIONS_FILE, ModelFiles, RunSpec, StoredFile
from spark_trainer.models import Benchmark
from tests.conftest import Account
from tests.evaluations.conftest import SUBJECTS
from tests.evaluations.helpers import create, jsonl, register_model, upload, wait_finished

EXPECTED = {"mathematics": 1.0, "physics": 0.5, "computer_science": 0.0}


def test_mmlu_evaluation_runs_as_a_job(
    client: TestClient, alice: Account, bob: Account, tiny_lm: Path, mmlu_questions: dict[str, Any]
) -> None:
    model = register_model(client, alice, tiny_lm)
    data = upload(
        client,
        alice,
        "mmlu-mini",
        "mmlu.jsonl",
        jsonl(mmlu_questions["dev"] + mmlu_questions["test"]),
    )
    created = create(
        client,
        alice,
        model_id=model["id"],
        benchmark="mmlu",
        config={
            "subjects": list(EXPECTED),
            "num_shots": 1,
            "dataset_id": data["id"],
            "batch_size": 4,
        },
    )
    assert created["id"].startswith("eval-")
    assert created["status"] in {"pending", "running"}
    assert (created["model_id"], created["benchmark"], created["results"]) == (
        model["id"],
        "mmlu",
        None,
    )
    done = wait_finished(client, alice, created["id"])
    assert done["status"] == "completed", done
    results = done["results"]
    assert results["subjects"] == EXPECTED
    assert results["overall_accuracy"] == 0.5
    assert results["counts"]["physics"] == {"correct": 1, "total": 2}
    assert set(results["per_subject"]) == set(SUBJECTS)
    assert (done["score_name"], done["score"]) == ("accuracy", 0.5)
    assert (done["questions_done"], done["questions_total"]) == (6, 6)

    # The job is an ordinary job of alice's: CPU-only here, with its progress metrics.
    job = client.get(f"/api/jobs/{done['job_id']}", headers=alice.headers).json()
    assert (job["status"], job["gpu_count"]) == ("completed", 0)
    metrics = client.get(f"/api/jobs/{done['job_id']}/metrics", headers=alice.headers).json()
    series = {m["name"]: m["values"] for m in metrics["metrics"]}
    assert series["questions_done"][-1] == 6

    # Its results file is not mistaken for a model.
    names = [m["name"] for m in client.get("/api/models", headers=alice.headers).json()["items"]]
    assert names == ["tiny-lm"]
    detail = client.get(f"/api/models/{model['id']}", headers=alice.headers).json()
    assert [
        (e["id"], e["benchmark"], e["score_name"], e["score"]) for e in detail["evaluations"]
    ] == [(created["id"], "mmlu", "accuracy", 0.5)]

    listed = client.get("/api/evaluations", headers=alice.headers).json()
    assert [e["id"] for e in listed["items"]] == [created["id"]]
    # Bob sees none of it.
    assert client.get(f"/api/evaluations/{created['id']}", headers=bob.headers).status_code == 404
    assert client.get("/api/evaluations", headers=bob.headers).json()["total"] == 0
    assert client.get("/api/leaderboard", headers=bob.headers).json()["items"] == []
    assert client.get(f"/api/models/{model['id']}", headers=bob.headers).status_code == 404


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([row["question"], *row["choices"], "ABCD"[row["answer"]]])
    return buffer.getvalue().encode()


def _archive(path: Path, questions: dict[str, Any], kind: str) -> Path:
    files: dict[str, bytes] = {}
    for split in ("dev", "test"):
        for subject in SUBJECTS:
            rows = [r for r in questions[split] if r["subject"] == subject]
            files[f"data/{split}/{subject}_{split}.csv"] = _csv(rows)
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz") as archive:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def _parquet(path: Path, questions: dict[str, Any]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = questions["dev"] + questions["test"]
    # The Hub layout: answer as an index, choices as a list column.
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("layout", ["tar.gz", "zip", "parquet"])
def test_both_layouts_score_the_same(
    layout: str, tmp_path: Path, tiny_lm: Path, mmlu_questions: dict[str, Any]
) -> None:
    source = tmp_path / f"mmlu.{layout}"
    if layout == "parquet":
        _parquet(source, mmlu_questions)
    else:
        _archive(source, mmlu_questions, layout)
    spec = RunSpec(
        evaluation_id="eval-test",
        benchmark=Benchmark.MMLU,
        config={"subjects": list(EXPECTED), "num_shots": 1, "batch_size": 3},
        model=ModelFiles(files={f.name: str(f) for f in tiny_lm.iterdir()}),
        datasets={"questions": StoredFile(path=str(source))},
    )
    out = tmp_path / "out"
    results = evaluate(spec, workdir=tmp_path, out=out, progress=lambda total: lambda done: None)
    assert results["subjects"] == EXPECTED
    assert json.loads((out / "results.json").read_text())["overall_accuracy"] == 0.5
    scored = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    for row, expected in zip(scored, mmlu_questions["logprobs"], strict=True):
        assert row["logprobs"] == pytest.approx(expected, abs=1e-4)


def test_a_lora_adapter_is_scored_over_its_base(
    tmp_path: Path, tiny_lm: Path, mmlu_questions: dict[str, Any]
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tests.evaluations.reference import letter_logprobs, prompt

    base = AutoModelForCausalLM.from_pretrained(tiny_lm, local_files_only=True)
    config = LoraConfig(
        r=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False
    )
    adapter_dir = tmp_path / "adapter"
    get_peft_model(base, config).save_pretrained(adapter_dir)

    questions = mmlu_questions["test"]
    shots = {r["subject"]: r for r in mmlu_questions["dev"]}
    expected = letter_logprobs(
        tiny_lm, [prompt(q["subject"], [shots[q["subject"]]], q) for q in questions], adapter_dir
    )
    source = tmp_path / "mmlu.jsonl"
    source.write_bytes(jsonl(mmlu_questions["dev"] + questions))
    spec = RunSpec(
        evaluation_id="eval-test",
        benchmark=Benchmark.MMLU,
        config={"num_shots": 1},
        model=ModelFiles(files={f.name: str(f) for f in adapter_dir.iterdir()}),
        base_model=ModelFiles(files={f.name: str(f) for f in tiny_lm.iterdir()}),
        datasets={"questions": StoredFile(path=str(source))},
    )
    out = tmp_path / "out"
    results = evaluate(spec, workdir=tmp_path, out=out, progress=lambda total: lambda done: None)
    scored = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    for row, want in zip(scored, expected, strict=True):
        assert row["logprobs"] == pytest.approx(want, abs=1e-4)
    # Without subjects, every subject in the data is reported under its own name.
    assert set(results["subjects"]) == set(SUBJECTS)
    base_scores = mmlu_questions["logprobs"]
    assert any(
        row["logprobs"] != pytest.approx(b, abs=1e-3)
        for row, b in zip(scored, base_scores, strict=True)
    ), "the adapter changed nothing: the test would not tell adapter from base"


@pytest.mark.parametrize("keeps_logits", [True, False])
def test_scoring_reads_the_same_logprobs_with_or_without_logits_to_keep(
    keeps_logits: bool, tiny_lm: Path, mmlu_questions: dict[str, Any]
) -> None:
    """The scorer asks the model for the answer positions' logits only where its forward
    takes ``logits_to_keep`` (transformers' causal LMs), else it picks them out of the
    full logits: a model of either kind scores the same."""
    from spark_trainer.evaluations.scorers import mmlu
    from spark_trainer.evaluations.scorers.lm import LoadedLM
    from tests.evaluations.reference import prompt

    lm = LoadedLM.load(tiny_lm)
    assert lm.keeps_logits, "the tiny GPT-2 takes logits_to_keep"
    lm = dataclasses.replace(lm, keeps_logits=keeps_logits)
    shots = {r["subject"]: r for r in mmlu_questions["dev"]}
    prompts = [prompt(q["subject"], [shots[q["subject"]]], q) for q in mmlu_questions["test"]]
    # A batch of 4 over prompts of different lengths: rows padded on the right.
    got = list(mmlu.lm_scorer(lm, 4)(prompts))
    for row, expected in zip(got, mmlu_questions["logprobs"], strict=True):
        assert list(row) == pytest.approx(expected, abs=1e-4)
