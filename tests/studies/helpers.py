"""Objective scripts and waiting on studies, for the HPO tests."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.jobs.helpers import poll

PY = shlex.quote(sys.executable)
ENDED = {"completed", "failed", "cancelled"}

# The quadratic every test optimises: its minimum, 0, is at learning_rate=1e-4, batch_size=64.
# It checks that the command's placeholders and SPARKTRAINER_TRIAL_PARAMS agree, reports a
# few steps (the last is the objective), and behaves badly on request of the test.
OBJECTIVE = """
import json, math, os, sys, time
import sparktrainer

params = json.loads(os.environ["SPARKTRAINER_TRIAL_PARAMS"])
number = int(os.environ["SPARKTRAINER_TRIAL_NUMBER"])
lr, batch_size = float(sys.argv[1]), int(sys.argv[2])
if params != {"learning_rate": lr, "batch_size": batch_size}:
    sys.exit(f"placeholders {sys.argv[1:]} disagree with {params}")
crash = {int(n) for n in os.environ.get("CRASH_TRIALS", "").split(",") if n}
silent = {int(n) for n in os.environ.get("SILENT_TRIALS", "").split(",") if n}
bad = {int(n) for n in os.environ.get("BAD_TRIALS", "").split(",") if n}
if number in crash:
    raise RuntimeError("this trial crashes")
loss = (math.log10(lr) + 4) ** 2 + (math.log2(batch_size) - 6) ** 2
steps = int(os.environ.get("STEPS", "3"))
if number in bad:
    loss, steps = 1000.0, 600
for step in range(steps):
    if number not in silent:
        sparktrainer.log({"loss": loss + (steps - 1 - step)}, step=step)
    time.sleep(float(os.environ.get("STEP_SECONDS", "0")))
open(os.path.join(os.environ["SPARKTRAINER_OUTPUT_DIR"], "done"), "w").close()
"""


def write_objective(directory: Path) -> Path:
    path = directory / "objective.py"
    path.write_text(OBJECTIVE)
    return path


def study_body(script: Path, **fields: Any) -> dict[str, Any]:
    """The spec's body, plus the command and metric a study needs."""
    body: dict[str, Any] = {
        "name": "llama-lr-search",
        "objective": "minimize",
        "search_space": {
            "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
        },
        "n_trials": 100,
        "parallelism": 4,
        "command": f"{PY} {shlex.quote(str(script))} @@learning_rate@@ @@batch_size@@",
        "metric": "loss",
        "gpu_count": 1,
    }
    body.update(fields)
    return body


def create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/hpo/studies", json=body, headers=headers)
    assert response.status_code == 201, response.text
    study: dict[str, Any] = response.json()
    return study


def get(client: TestClient, headers: dict[str, str], study_id: str) -> dict[str, Any]:
    response = client.get(f"/api/hpo/studies/{study_id}", headers=headers)
    assert response.status_code == 200, response.text
    study: dict[str, Any] = response.json()
    return study


def wait_study(
    client: TestClient,
    headers: dict[str, str],
    study_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda s: s["status"] in ENDED,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Polls the study until ``until`` holds (default: it has ended); fails on timeout."""
    return poll(lambda: get(client, headers, study_id), until, timeout, study_id)


def quadratic(params: dict[str, Any]) -> float:
    import math

    return float(
        (math.log10(params["learning_rate"]) + 4) ** 2 + (math.log2(params["batch_size"]) - 6) ** 2
    )


# A quadratic of whatever parameters the trial has, around TARGET (JSON): the optimum is 0
# at TARGET. Reports STEPS values counting down to the objective, SLOW_TRIALS sleep
# STEP_SECONDS between steps, BAD_TRIALS report huge values (for the pruner).
DISTANCE = """
import json, os, time
import sparktrainer

params = json.loads(os.environ["SPARKTRAINER_TRIAL_PARAMS"])
number = int(os.environ["SPARKTRAINER_TRIAL_NUMBER"])
target = json.loads(os.environ["TARGET"])
loss = sum((float(params[k]) - v) ** 2 for k, v in target.items())
steps = int(os.environ.get("STEPS", "1"))
bad = {int(n) for n in os.environ.get("BAD_TRIALS", "").split(",") if n}
pause = float(os.environ.get("STEP_SECONDS", "0"))
if number in bad:
    loss, steps, pause = 1e6, 600, 0.5
for step in range(steps):
    sparktrainer.log({"loss": loss + (steps - 1 - step)}, step=step)
    time.sleep(pause)
open(os.path.join(os.environ["SPARKTRAINER_OUTPUT_DIR"], "done"), "w").close()
"""


def write_distance(directory: Path) -> Path:
    path = directory / "distance.py"
    path.write_text(DISTANCE)
    return path


def distance_body(script: Path, target: dict[str, float], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "xy",
        "objective": "minimize",
        "search_space": {
            "x": {"type": "float", "low": -10, "high": 10},
            "y": {"type": "float", "low": -10, "high": 10},
        },
        "n_trials": 4,
        "parallelism": 2,
        "command": f"{PY} {shlex.quote(str(script))}",
        "metric": "loss",
        "gpu_count": 1,
        "environment": {"TARGET": json.dumps(target)},
    }
    body.update(fields)
    return body
