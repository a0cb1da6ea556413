"""The programs SparkTrainer launches as jobs import neither the web stack nor the ORM.

Each runs in every job it starts, so what it imports is start-up time (and memory) spent
before the job does anything: FastAPI, Starlette and SQLAlchemy are the API server's.
Checked in a fresh interpreter, as a job would start it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVER_ONLY = ("fastapi", "starlette", "sqlalchemy")
JOB_PROGRAMS = [
    "spark_trainer.evaluations.run",
    "spark_trainer.deployments.server",
    "spark_trainer.recipes.text_lora.main",
]


@pytest.mark.parametrize("program", JOB_PROGRAMS)
def test_a_job_program_imports_no_server_module(program: str) -> None:
    probe = f"import json, sys, {program}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert program in loaded
    assert [m for m in loaded if m.split(".")[0] in SERVER_ONLY] == []
