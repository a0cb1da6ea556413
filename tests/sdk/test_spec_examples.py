"""The spec's Python SDK example (copied verbatim into the README) runs as written.

Only the two placeholders change: the base URL (the test's server is not on 5001) and
``"your-api-key"``. The server has a virtual 4-GPU inventory, so ``gpu_count=4`` runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sparktrainer import SparkTrainerClient
from tests.sdk.conftest import LiveServer
from tests.sdk.test_client import logging_job

README = Path(__file__).resolve().parents[2] / "README.md"


def spec_example() -> str:
    section = README.read_text().split("### Python SDK", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


def run_example(code: str, live_server: LiveServer) -> str:
    code = code.replace('"http://localhost:5001"', repr(live_server.url))
    code = code.replace('"your-api-key"', repr(live_server.api_key))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_python_example_runs_as_written(live_server: LiveServer) -> None:
    code = spec_example()
    assert 'client.jobs.create(\n    name="my-training-job"' in code  # it is the spec's
    assert run_example(code, live_server) == ""  # `python train.py` finds no train.py
    client = SparkTrainerClient(base_url=live_server.url, api_key=live_server.api_key)
    job = next(j for j in client.jobs.list(limit=200).items if j.name == "my-training-job")
    detail = client.jobs.get(job.id)
    assert detail.gpu_count == 4 and sorted(detail.gpus) == [0, 1, 2, 3]
    assert detail.status == "failed"  # the stream ended because the job ended


def test_python_example_prints_each_step(live_server: LiveServer) -> None:
    # The same code with a command that logs metrics: each point is printed as it comes.
    code = spec_example().replace('"python train.py"', repr(logging_job(3)))
    assert run_example(code, live_server).splitlines() == [
        "Step 0: loss=1.0",
        "Step 1: loss=0.5",
        f"Step 2: loss={1 / 3}",
    ]
