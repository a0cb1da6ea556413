"""With Redis configured, a stream subscriber on one API process sees the points of a job
that another process runs."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from spark_trainer.app import create_app
from spark_trainer.context import AppContext
from spark_trainer.metrics.bus import RedisBus
from spark_trainer.settings import Settings
from tests.conftest import Account
from tests.jobs.helpers import PY, submit, wait_until
from tests.services import require_redis

SCRIPT = """
import os, sys, time
import sparktrainer
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
for step in range(5):
    sparktrainer.log({"loss": step / 10}, step=step)
"""


@pytest.mark.redis
def test_points_cross_processes_through_redis(
    settings_factory: Callable[..., Settings],
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    redis_url = require_redis()
    runner_settings = settings_factory(redis_url=redis_url)
    # The second API process shares the database and Redis but has no GPUs of its own.
    viewer_settings = settings_factory(
        redis_url=redis_url, gpus=0, node_name="viewer", data_dir=tmp_path / "viewer"
    )
    runner_ctx, viewer_ctx = AppContext.build(runner_settings), AppContext.build(viewer_settings)
    assert isinstance(viewer_ctx.bus, RedisBus)
    alice = make_account()
    go = tmp_path / "go"
    with (
        TestClient(create_app(runner_settings, runner_ctx)) as runner,
        TestClient(create_app(viewer_settings, viewer_ctx)) as viewer,
    ):
        command = f"{PY} -c {shlex.quote(SCRIPT)} {shlex.quote(str(go))}"
        job = submit(runner, alice.headers, command=command)
        wait_until(
            lambda: (
                runner.get(f"/api/jobs/{job['id']}", headers=alice.headers).json()["status"]
                == "running"
            ),
            what="the job to start",
        )
        received = ""
        with viewer.stream(
            "GET", f"/api/jobs/{job['id']}/stream", headers=alice.headers
        ) as response:
            for chunk in response.iter_text():
                received += chunk
                if not go.exists():
                    go.touch()  # the viewer is subscribed; now the job logs
                if "event: end" in received:
                    break
    data = [json.loads(line[6:]) for line in received.splitlines() if line.startswith("data: ")]
    assert [d["step"] for d in data[:-1]] == [0, 1, 2, 3, 4]
    assert data[-1]["status"] == "completed"
