"""The recipe stops before training with a message naming what is wrong, in stderr and in
the job's status_reason; and jobs find SparkTrainer's interpreter first on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Account
from tests.jobs.helpers import FINAL, logs, submit, wait_for

COMMAND = "python -m spark_trainer.recipes.text_lora --config config.yaml"
GOOD_DATA = '{"text": "the model learns"}\n'


def _run(tmp_path: Path, config: str, data: str = GOOD_DATA) -> subprocess.CompletedProcess[str]:
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "data.jsonl").write_text(data)
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "config.json").write_text("{}")
    reason = tmp_path / "reason.txt"
    env = {**os.environ, "SPARKTRAINER_REASON_FILE": str(reason)}
    env.pop("SPARKTRAINER_DATASET_PATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "spark_trainer.recipes.text_lora", "--config", "config.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    # The same line goes to stderr and to the reason file the server reads.
    assert done.stderr.strip().endswith(reason.read_text().strip())
    return done


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("dataset: {path: data.jsonl}\n", "missing required key 'base_model'"),
        ("base_model: ./model\ntraining: {learning_rate: fast}\n", "key 'training.learning_rate'"),
        ("base_model: ./model\ntraining: {batch_size: 0}\n", "key 'training.batch_size'"),
        ("base_model: ./model\nlora: {rank: 8}\n", "unknown key 'lora.rank'"),
        ("base_model: ./model\ntraining: {precision: fp8}\n", "key 'training.precision'"),
        ("base_model: [unclosed\n", "not valid YAML"),
        ("- a list\n", "must be a YAML mapping"),
        ("base_model: ./model\n", "no dataset: set dataset.path"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, config: str, message: str) -> None:
    done = _run(tmp_path, config)
    assert message in done.stderr


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        ('{"text": "ok"}\n{"txt": "typo"}\n', "text", "line 2: missing field 'text'"),
        (
            '{"instruction": "a", "output": "b"}\n\n{"instruction": "c"}\n',
            "auto",
            "line 3: missing field 'output'",
        ),
        ('{"messages": [{"role": "user"}]}\n', "chat", "line 1: messages[0] needs string"),
        ('{"text": "ok"}\nnot json\n', "text", "line 2: invalid JSON"),
        ('{"text": 5}\n', "text", "line 1: field 'text' must be a string"),
    ],
)
def test_dataset_errors_name_the_field_and_line(
    tmp_path: Path, data: str, fmt: str, message: str
) -> None:
    config = f"base_model: ./model\ndataset: {{path: data.jsonl, format: {fmt}}}\n"
    assert message in _run(tmp_path, config, data).stderr


def test_a_missing_base_model_is_named(tmp_path: Path) -> None:
    config = "base_model: ./no-such-model\ndataset: {path: data.jsonl}\n"
    assert "base model directory './no-such-model' not found" in _run(tmp_path, config).stderr
    config = "base_model: ./data.jsonl\ndataset: {path: data.jsonl}\n"
    assert "not a Hugging Face model directory" in _run(tmp_path, config).stderr


def test_the_reason_reaches_the_job_and_python_is_the_servers(
    client: TestClient, alice: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's own PATH without its virtual environment: jobs must still find it.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (tmp_path / "config.yaml").write_text("dataset: {path: data.jsonl}\n")
    failed = submit(client, alice.headers, command=COMMAND, working_dir=str(tmp_path), gpu_count=0)
    probe = submit(
        client,
        alice.headers,
        command="python -c 'import sys, sparktrainer, spark_trainer; print(sys.prefix)'",
        gpu_count=0,
    )
    overridden = submit(
        client,
        alice.headers,
        command='echo "$PATH"',
        environment={"PATH": "/opt/custom/bin:/usr/bin:/bin"},
        gpu_count=0,
    )
    done = wait_for(client, alice.headers, failed["id"], FINAL, timeout=60)
    assert done["status"] == "failed"
    assert done["status_reason"] == (
        "exited with code 2: config.yaml: missing required key 'base_model'"
    )
    assert "missing required key 'base_model'" in logs(
        client, alice.headers, failed["id"], "stderr"
    )
    assert wait_for(client, alice.headers, probe["id"], FINAL)["status"] == "completed"
    assert logs(client, alice.headers, probe["id"]).strip() == sys.prefix
    assert wait_for(client, alice.headers, overridden["id"], FINAL)["status"] == "completed"
    assert logs(client, alice.headers, overridden["id"]) == "/opt/custom/bin:/usr/bin:/bin\n"
    assert json.loads(json.dumps(done["events"]))[-1]["to_status"] == "failed"
