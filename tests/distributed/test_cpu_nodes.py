"""A worker without GPUs in distributed mode is a CPU node: jobs that need no GPU wait for
some node to be up (saying so), then run there. Real processes: an API process, a worker,
PostgreSQL and a private Redis."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.distributed.cluster import STALE_SECONDS, PrivateRedis, Worker, cluster_env
from tests.jobs.helpers import FINAL, wait_until
from tests.runtime.servers import Server


def test_a_worker_without_gpus_registers_a_cpu_node_and_runs_jobs_without_gpus(
    tmp_path: Path, postgres_url: str, redis_server: PrivateRedis
) -> None:
    env = cluster_env(redis_server.url, STALE_SECONDS)
    api = Server(tmp_path / "api", postgres_url, SPARKTRAINER_NODE_NAME="api", **env)
    worker = Worker(tmp_path / "cpu1", postgres_url, "cpu1", None, **env)
    try:
        api.start()
        job_id = api.submit("echo ran on a cpu node", gpu_count=0)
        # The API process runs no jobs: until a worker is up, nothing can take it.
        wait_until(
            lambda: api.get(f"/api/jobs/{job_id}")["pending_reason"] == "no node is up",
            what="the pending reason",
        )
        metrics = httpx.get(f"{api.base}/metrics").text
        assert 'sparktrainer_queue_depth{reason="no_node_up"} 1.0' in metrics, metrics

        worker.start()
        done = api.wait(job_id, FINAL, timeout=90)
        assert done["status"] == "completed", done
        assert (done["node"], done["gpus"]) == ("cpu1", [])
        logs = httpx.get(
            f"{api.base}/api/jobs/{job_id}/logs", params={"stream": "stdout"}, headers=api.headers
        )
        assert logs.text == "ran on a cpu node\n", logs.text

        ready = httpx.get(f"{api.base}/readyz").json()
        assert ready["workers"] == {"cpu1": "live"}, ready
        assert (
            'sparktrainer_gpus{node="cpu1",state="up"} 0.0' in httpx.get(f"{api.base}/metrics").text
        )
        refused = api.post("/api/jobs", {"name": "gpu", "command": "true", "gpu_count": 1})
        assert refused.status_code == 400, refused.text
    finally:
        worker.signal(signal.SIGKILL)
        api.kill()
