"""Item 6: Redis goes away mid-job (a private Redis this test starts and stops).

A metrics POST used to answer 500 after its points were stored, so a client that retried
stored them twice. Now, while Redis is down, every request answers 503 in the spec's
error JSON and accepts nothing; once it is back, the retries succeed and each point is
stored exactly once.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import httpx

from tests.hardening.conftest import PrivateRedis, StartServer
from tests.jobs.helpers import PY, blocker, wait_until

TOKEN_SCRIPT = "import os,sys; open(sys.argv[1],'w').write(os.environ['SPARKTRAINER_JOB_TOKEN'])"
STEPS = 60
STOP_AT, RESTART_AFTER_503S = 20, 5


def _assert_error_json(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {
        "error": "Service Unavailable",
        "message": response.json()["message"],
        "status": status,
    }


def test_metrics_posts_during_a_redis_outage(
    start_server: StartServer, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    server = start_server(SPARKTRAINER_REDIS_URL=private_redis.url)
    admin = server.login()
    token_file, release = tmp_path / "token", tmp_path / "go"
    command = blocker(
        release, before=f"{PY} -c {shlex.quote(TOKEN_SCRIPT)} {shlex.quote(str(token_file))}"
    )
    job = httpx.post(
        f"{server.base}/api/jobs",
        json={"name": "outage", "command": command, "gpu_count": 1},
        headers=admin,
    ).json()
    wait_until(lambda: token_file.exists() and token_file.read_text() != "", 60, "job token")
    job_token = {"Authorization": f"Bearer {token_file.read_text()}"}
    url = f"{server.base}/api/jobs/{job['id']}/metrics"

    statuses: list[int] = []
    unavailable = 0
    with httpx.Client(timeout=30) as client:
        for step in range(STEPS):
            if step == STOP_AT:
                private_redis.stop()
            while True:  # a client that retries until its point is accepted
                body: dict[str, Any] = {"points": [{"step": step, "metrics": {"loss": step}}]}
                response = client.post(url, json=body, headers=job_token)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    break
                _assert_error_json(response, 503)
                unavailable += 1
                if private_redis.proc is None:
                    # Any request needs the rate limiter's store: 503, not 500.
                    listed = client.get(f"{server.base}/api/jobs", headers=admin)
                    _assert_error_json(listed, 503)
                    if unavailable == RESTART_AFTER_503S:
                        private_redis.start()
                time.sleep(0.05)
    assert set(statuses) == {200, 503}, statuses
    assert unavailable >= RESTART_AFTER_503S

    release.touch()

    def ended() -> bool:
        status = httpx.get(f"{server.base}/api/jobs/{job['id']}", headers=admin).json()
        return bool(status["status"] == "completed")

    wait_until(ended, 60, "the job to complete")

    def history() -> list[int]:
        response = httpx.get(f"{url}", params={"name": "loss"}, headers=admin)
        assert response.status_code == 200, response.text
        series = response.json()["metrics"]
        return series[0]["steps"] if series else []

    # Every point once: none lost to the outage, none stored twice by a retry.
    wait_until(lambda: len(history()) >= STEPS, 30, "every point stored")
    assert history() == list(range(STEPS))
